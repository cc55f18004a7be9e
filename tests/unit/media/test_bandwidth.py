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
    m, hints, clock = monitor()
    m.remb("pub", "fast", 2_000_000)
    m.remb("pub", "slow", 400_000)
    assert hints[-1] == ("pub", {"max_bitrate": 400_000})  # down: at once
    n = len(hints)
    m.remb("pub", "slow", 420_000)  # 5 %: not material
    assert len(hints) == n
    clock.t += bw.UP_INTERVAL
    m.remb("pub", "slow", 1_500_000)  # up: one bounded step
    assert hints[-1] == ("pub", {"max_bitrate": int(400_000 * bw.UP_STEP)})


def test_cap_has_a_floor_and_stale_estimates_expire():
    m, hints, clock = monitor()
    m.remb("pub", "tiny", 10_000)
    assert hints[-1][1]["max_bitrate"] == bw.MIN_BITRATE
    clock.t += bw.ESTIMATE_TTL + 1
    m.remb("pub", "good", 1_000_000)  # "tiny" has not reported for a while: it no longer counts
    assert hints[-1] == ("pub", {"max_bitrate": int(bw.MIN_BITRATE * bw.UP_STEP)})


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


# -- the way down and back up, on a simulated clock -------------------------------------------


def run(events, until_t):
    """Feed (t, subscriber, bps) REMBs — bps None: only some other RTCP packet (a tick) — and
    tick every 0.1 s up to `until_t`; the (t, cap) hints the publisher got."""
    m, hints, clock = monitor()
    out = []
    events = sorted(events, key=lambda e: e[0])
    i = 0
    for step in range(int(until_t * 10) + 1):
        clock.t = step / 10
        while i < len(events) and events[i][0] <= clock.t + 1e-9:
            _, sub, bps = events[i]
            if bps is not None:
                m.remb("pub", sub, bps)
            i += 1
        m.tick()
        while len(out) < len(hints):
            out.append((clock.t, hints[len(out)][1]["max_bitrate"]))
    return m, out


def remb_every(sub, start, stop, bps, period=0.5):
    """A REMB every `period` s; bps a number or a function of time."""
    n = int(round((stop - start) / period))
    return [
        (start + k * period, sub, bps(start + k * period) if callable(bps) else bps)
        for k in range(n)
    ]


def assert_ramp(hints):
    """Every rise is at most UP_STEP and at least UP_INTERVAL after the hint before it."""
    for (t0, a), (t1, b) in zip(hints, hints[1:], strict=False):
        if b > a:
            assert b <= a * bw.UP_STEP + 1, hints
            assert t1 - t0 >= bw.UP_INTERVAL - 1e-6, hints


def test_a_capped_link_hints_down_at_once_and_the_lifted_cap_ramps_back_up():
    # 0–5 s clean (1.2 Mbit/s), 5–15 s a 300 kbit/s cap (REMB 255k), then clean again
    def remb(t):
        return 1_200_000 if t < 5 or t >= 15 else 255_000

    _, hints = run(remb_every("party", 0, 40, remb), 40)
    assert hints[0] == (0.0, 1_200_000)
    down = [(t, c) for t, c in hints if 5 <= t < 15]
    assert down == [(5.0, 255_000)]  # once, at the first low REMB, no flapping
    up = [(t, c) for t, c in hints if t >= 15]
    assert up[0][0] == 15.0 and up[0][1] == int(255_000 * bw.UP_STEP)
    assert up[-1][1] == 1_200_000 and up[-1][0] <= 15 + 6  # back at the estimate within ~6 s
    assert_ramp(hints)


def test_a_receiver_that_stops_reporting_no_longer_holds_the_cap_down():
    # the only subscriber reports 200k then goes silent (audio-only, left video, link cut);
    # other RTCP keeps arriving (ticks): the cap expires and ramps back to MAX_BITRATE
    events = remb_every("party", 0, 3, 200_000) + [(t / 10, "x", None) for t in range(0, 400)]
    _, hints = run(events, 40)
    assert hints[0] == (0.0, 200_000)
    assert hints[-1][1] == bw.MAX_BITRATE
    first_up = next(t for t, c in hints if c > 200_000)
    assert 2.5 + bw.ESTIMATE_TTL <= first_up <= 2.5 + bw.ESTIMATE_TTL + bw.TICK_INTERVAL + 0.1
    assert_ramp(hints)


def test_the_weakest_of_two_subscribers_leaving_lets_the_cap_rise_in_steps():
    m, hints, clock = monitor()
    m.remb("pub", "fast", 2_000_000)
    m.remb("pub", "slow", 300_000)
    assert hints[-1] == ("pub", {"max_bitrate": 300_000})
    clock.t = 2.0
    m.forget("slow")
    assert hints[-1] == ("pub", {"max_bitrate": int(300_000 * bw.UP_STEP)})
    caps = []
    for k in range(1, 200):
        clock.t = 2.0 + k / 10
        if k % 5 == 0:
            m.remb("pub", "fast", 2_000_000)
        else:
            m.tick()
        caps.append(m.cap_of("pub"))
    assert caps[-1] == 2_000_000
    assert m.cap_of("pub") == hints[-1][1]["max_bitrate"]


def test_rising_estimate_under_15_percent_per_report_still_reaches_the_hint():
    # Chromium/aiortc raise their REMB ~8 %/s: each report is a small move, their sum is not
    _, hints = run(remb_every("party", 0, 20, lambda t: int(200_000 * 1.08**t)), 20)
    assert hints[0] == (0.0, 200_000)
    assert hints[-1][1] >= 200_000 * 1.08**19 / (1 + bw.CHANGE_RATIO)
    assert_ramp(hints)


def test_random_loss_with_a_steady_estimate_does_not_move_the_cap():
    # REMB is delay based: random loss leaves it steady; the cap neither flaps nor drifts
    events = remb_every("party", 0, 20, lambda t: 600_000 + (30_000 if int(t * 2) % 2 else -30_000))
    m, hints = run(events, 20)
    for _ in range(40):
        m.loss("party", 0.10)
    assert [c for _, c in hints] == [570_000]


def test_down_moves_are_never_delayed_by_the_ramp():
    m, hints, clock = monitor()
    m.remb("pub", "party", 300_000)
    clock.t = 1.0
    m.remb("pub", "party", 1_000_000)
    assert m.cap_of("pub") == int(300_000 * bw.UP_STEP)
    clock.t = 1.1  # 0.1 s after an up step
    m.remb("pub", "party", 200_000)
    assert m.cap_of("pub") == 200_000
    clock.t = 1.5  # not yet due: no up step
    m.remb("pub", "party", 1_000_000)
    assert m.cap_of("pub") == 200_000
    clock.t = 2.1
    m.tick()
    assert m.cap_of("pub") == int(200_000 * bw.UP_STEP)


def test_rtcp_from_anyone_expires_a_silent_subscribers_cap_through_feedback():
    """The REMB path and the receiver-report path of `feedback` (what PeerSession calls)."""
    from types import SimpleNamespace

    from aiortc.rtp import (
        RTCP_PSFB_APP,
        RtcpPsfbPacket,
        RtcpReceiverInfo,
        RtcpRrPacket,
        pack_remb_fci,
    )

    m, hints, clock = monitor()
    source = SimpleNamespace(forwarder=SimpleNamespace(publisher_id="pub"))
    track = SimpleNamespace(source=source)
    slot = SimpleNamespace(
        tracks={"video": track, "audio": track},
        senders={"video": SimpleNamespace(_ssrc=111), "audio": SimpleNamespace(_ssrc=222)},
    )
    party = SimpleNamespace(participant_id="party", slots=[slot])
    other = SimpleNamespace(participant_id="other", slots=[slot])
    remb = RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(200_000, [111])
    )
    m.feedback(party, slot, "video", remb)
    assert hints == [("pub", {"max_bitrate": 200_000})]
    rr = RtcpRrPacket(ssrc=2, reports=[RtcpReceiverInfo(111, 0, 0, 0, 0, 0, 0)])
    up_at = []
    for k in range(1, 60):  # the party is silent; "other" only sends receiver reports
        clock.t = k * 0.2
        n = len(hints)
        m.feedback(other, slot, "video", rr)
        up_at += [clock.t] * (len(hints) - n)
    assert bw.ESTIMATE_TTL < up_at[0] <= bw.ESTIMATE_TTL + bw.TICK_INTERVAL + 0.2
    caps = [h["max_bitrate"] for _, h in hints]
    assert caps[1] == int(200_000 * bw.UP_STEP) and len(caps) >= 5  # still rising, in steps
    assert_ramp(list(zip([0.0, *up_at], caps, strict=True)))
