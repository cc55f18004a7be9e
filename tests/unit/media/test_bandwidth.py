"""Hints follow the weakest subscriber and a lasting loss, not single reports."""

from __future__ import annotations

from media import bandwidth as bw
from media.bandwidth import BandwidthMonitor


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def monitor():
    hints = []
    clock = Clock()
    return BandwidthMonitor(lambda pid, h: hints.append((pid, h)), clock=clock), hints, clock


def test_publisher_cap_follows_the_weakest_subscriber_and_only_material_changes():
    m, hints, _ = monitor()
    m.remb("pub", "fast", 2_000_000)
    m.remb("pub", "slow", 400_000)
    assert hints[-1] == ("pub", {"max_bitrate": 400_000})
    n = len(hints)
    m.remb("pub", "slow", 420_000)  # 5 %: not material
    assert len(hints) == n
    m.remb("pub", "slow", 1_500_000)
    assert hints[-1] == ("pub", {"max_bitrate": 1_500_000})


def test_cap_has_a_floor_and_stale_estimates_expire():
    m, hints, clock = monitor()
    m.remb("pub", "tiny", 10_000)
    assert hints[-1][1]["max_bitrate"] == bw.MIN_BITRATE
    clock.t += bw.ESTIMATE_TTL + 1
    m.remb("pub", "good", 1_000_000)  # "tiny" has not reported for a while: it no longer counts
    assert hints[-1] == ("pub", {"max_bitrate": 1_000_000})


def test_audio_only_after_lasting_loss_once_and_again_after_recovery():
    m, hints, _ = monitor()
    m.loss("sub", 0.5)
    assert hints == []  # one bad report is not enough
    for _ in range(bw.LOSS_REPORTS):
        m.loss("sub", 0.5)
    assert hints == [("sub", {"audio_only": True, "reason": "loss"})]
    for _ in range(5):
        m.loss("sub", 0.4)
    assert len(hints) == 1  # not repeated while it lasts
    for _ in range(10):
        m.loss("sub", 0.0)
    for _ in range(bw.LOSS_REPORTS + 2):
        m.loss("sub", 0.5)
    assert len(hints) == 2


def test_forget_drops_a_participant_everywhere():
    m, hints, _ = monitor()
    m.remb("pub", "sub", 300_000)
    m.loss("sub", 0.5)
    m.forget("sub")
    m.forget("pub")
    assert m.loss_of("sub") is None
    m.remb("pub", "other", 2_000_000)
    assert hints[-1] == ("pub", {"max_bitrate": 2_000_000})
