"""The video hole wait follows the round trip to the publisher: RTT from receiver reports,
repeated NACKs while a hole stays open, a complete keyframe behind a hole, a loss burst."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

from media import passthrough
from media.rtt import RttEstimator
from tests.unit.media.frames import KEY, rtp_packet


def test_rtt_estimator_follows_a_slower_link_at_once_and_smooths_jitter():
    seen = []
    est = RttEstimator(lambda e: seen.append(e.timeout))
    assert est.timeout is None
    est.add(0.002)  # a LAN
    assert est.srtt == pytest.approx(0.002) and est.timeout == pytest.approx(0.022)
    for _ in range(3):  # the link gets a 200 ms round trip
        est.add(0.2)
    assert est.timeout > 0.2  # the variance term carries it over the new RTT at once
    for sample in (0.18, 0.22) * 20:
        est.add(sample)
    assert est.srtt == pytest.approx(0.2, abs=0.02) and 0.22 < est.timeout < 0.35
    before = est.samples
    est.add(-0.01)  # a report older than the clock step / nonsense
    est.add(60.0)
    assert est.samples == before and len(seen) == before


def test_relay_times_the_round_trip_from_a_receiver_report_echoing_its_sender_report():
    relay = passthrough.RtpRelay(SimpleNamespace(_ssrc=1234), active=False)
    samples = []
    relay.on_rtt = samples.append
    relay._sr_sent[0xABCD0000] = time.monotonic() - 0.3  # an SR sent 0.3 s ago
    report = RtcpRrPacket(
        ssrc=99,
        reports=[
            RtcpReceiverInfo(ssrc=1234, fraction_lost=0, packets_lost=0, highest_sequence=0,
                             jitter=0, lsr=0xABCD0000, dlsr=int(0.1 * 65536)),
            RtcpReceiverInfo(ssrc=555, fraction_lost=0, packets_lost=0, highest_sequence=0,
                             jitter=0, lsr=0xABCD0000, dlsr=0),  # another sender's block
        ],
    )  # fmt: skip
    relay.feedback(report)
    assert len(samples) == 1 and samples[0] == pytest.approx(0.2, abs=0.02)
    report.reports[0].lsr = 0x1111  # an SR this relay does not remember: no sample
    relay.feedback(report)
    assert len(samples) == 1


def test_hole_wait_is_two_retransmission_timeouts_within_bounds():
    jb = passthrough.VideoJitterBuffer()
    assert jb.max_wait == passthrough.MIN_HOLE_WAIT  # no round trip known yet
    jb.set_rtt(0.3)
    assert jb.max_wait == pytest.approx(0.65)
    jb.set_rtt(0.01)  # a LAN: the floor
    assert jb.max_wait == passthrough.MIN_HOLE_WAIT
    jb.set_rtt(3.0)  # a satellite: the ceiling (the freeze after a real loss stays bounded)
    assert jb.max_wait == passthrough.MAX_HOLE_WAIT
    jb.set_rtt(None)
    assert jb.max_wait == passthrough.MIN_HOLE_WAIT


def delta(seq: int, ts: int, marker: bool = True):
    return rtp_packet(seq, ts, b"\x01\x00\x00dd", marker=marker)


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(passthrough.time, "monotonic", lambda: now[0])
    return now


def test_a_hole_is_asked_for_again_once_a_retransmission_is_overdue(clock):
    jb = passthrough.VideoJitterBuffer()
    nacks = []
    jb.on_nack = lambda ssrc, lost: nacks.append(lost)
    jb.set_rtt(0.2)  # repeat after 0.2 s, give up after 0.45 s
    assert jb.add(delta(0, 0))[1] is not None
    jb.add(delta(3, 6000))  # 1 and 2 lost: the stall starts (aiortc NACKed them already)
    clock[0] += 0.1
    jb.add(delta(4, 9000))
    assert nacks == []  # the first answer is not overdue yet
    clock[0] += 0.15
    jb.add(delta(5, 12000))
    assert nacks == [[1, 2]] and jb.nacks_repeated == 1
    clock[0] += 0.05
    jb.add(delta(6, 15000))
    assert nacks == [[1, 2]]  # once per timeout
    pli, frame = jb.add(delta(1, 3000, marker=False))  # the retransmission of 1 arrives
    assert not pli and frame is None
    clock[0] += 0.2
    pli, _ = jb.add(delta(7, 18000))  # 2 never came: 0.5 s > 0.45 s, give up
    assert pli and jb.holes_skipped == 1


def test_a_complete_keyframe_behind_a_hole_ends_the_wait_at_once(clock):
    jb = passthrough.VideoJitterBuffer()
    jb.set_rtt(0.3)
    assert jb.add(delta(10, 0))[1] is not None
    jb.add(delta(12, 3000))  # 11 lost
    assert jb.add(rtp_packet(13, 6000, KEY, marker=False)) == (False, None)
    pli, frame = jb.add(rtp_packet(14, 6000, b"\x00rest", marker=True, start=False))
    assert not pli and frame is not None and frame.is_keyframe and frame.timestamp == 6000
    assert [p.sequence_number for p in frame.packets] == [13, 14]
    assert jb.holes_skipped_to_keyframe == 1 and jb.holes_skipped == 0
    assert jb.add(delta(15, 9000))[1].timestamp == 9000  # frames flow on after the keyframe


def test_a_retransmission_completing_a_keyframe_behind_a_hole_releases_it(clock):
    jb = passthrough.VideoJitterBuffer()
    assert jb.add(delta(20, 0))[1] is not None
    jb.add(delta(22, 3000))  # 21 lost
    jb.add(rtp_packet(23, 6000, KEY, marker=False))
    jb.add(rtp_packet(25, 6000, b"\x00end", marker=True, start=False))  # 24 lost too
    pli, frame = jb.add(rtp_packet(24, 6000, b"\x00mid", marker=False, start=False))
    assert frame is not None and frame.is_keyframe and len(frame.packets) == 3


def test_a_delta_frame_behind_a_hole_is_not_skipped_to(clock):
    jb = passthrough.VideoJitterBuffer()
    assert jb.add(delta(30, 0))[1] is not None
    jb.add(delta(32, 3000))
    assert jb.add(delta(33, 6000)) == (False, None)
    assert jb.holes_skipped_to_keyframe == 0


def test_a_loss_burst_asks_for_a_keyframe_at_once_and_still_waits_for_the_nacks(clock):
    jb = passthrough.VideoJitterBuffer()
    wanted = []
    jb.on_keyframe_wanted = lambda: wanted.append(clock[0])
    assert jb.add(delta(40, 0))[1] is not None
    jb.add(delta(42, 3000))  # one lost packet: no keyframe request
    assert wanted == []
    jb.add(delta(41, 1500))  # filled
    jb.add(delta(43, 4500))
    jb.add(delta(43 + passthrough.BURST_PACKETS + 1, 9000))  # a burst
    assert wanted == [100.0] and jb.bursts == 1
    assert jb.holes_skipped == 0  # the retransmissions may still fill it
