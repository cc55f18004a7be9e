"""Contract with aiortc's internals: the start-up check passes here and fails loudly on change."""

from __future__ import annotations

import pytest
from aiortc import rtcrtpsender

from media import passthrough
from media.rtp import EncodedFrame, vp8_size
from tests.unit.media.frames import rtp_packet


def test_installed_aiortc_has_every_hook_point():
    passthrough.check_aiortc()


def test_a_missing_hook_point_refuses_to_start(monkeypatch):
    monkeypatch.delattr(rtcrtpsender.RTCRtpSender, "_send_keyframe")
    with pytest.raises(passthrough.AiortcIncompatible, match="_send_keyframe"):
        passthrough.check_aiortc()


def test_an_untested_aiortc_version_refuses_to_start(monkeypatch):
    monkeypatch.setattr(passthrough.aiortc, "__version__", "2.0.0")
    with pytest.raises(passthrough.AiortcIncompatible, match="2.0.0"):
        passthrough.check_aiortc()


def test_frame_tap_hands_frames_to_the_callback_without_decoding():
    got = []
    tap = passthrough.FrameTap(got.append)
    key = b"\x10\x02\x00\x9d\x01\x2a\x80\x02\xe0\x01" + b"\x00" * 8
    frame = passthrough.video_frame([rtp_packet(1, 9000, key)], 9000)
    tap.put((None, frame))
    tap.put((None, passthrough.video_frame([rtp_packet(2, 12000, b"\x11\x00\x00zz")], 12000)))
    assert [f.is_keyframe for f in got] == [True, False]
    assert got[0] is frame and got[0].timestamp == 9000 and got[0].data == key
    assert vp8_size(key) == (640, 480)
    tap.put(None)
    assert tap.get() is None  # aiortc's (idle) worker thread ends when the receiver stops


def test_a_frame_is_a_keyframe_only_when_its_first_packet_starts_it():
    key = b"\x10\x02\x00\x9d\x01\x2a\x80\x02\xe0\x01" + b"\x00" * 8
    assert passthrough.video_frame([rtp_packet(1, 0, key)], 0).is_keyframe
    # the same bytes in a packet that continues a partition (a frame whose start was lost)
    assert not passthrough.video_frame([rtp_packet(1, 0, key, start=False)], 0).is_keyframe


def rtp(seq: int, ts: int):
    from aiortc.rtp import RtpPacket

    p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts)
    p._data = bytes([seq & 0xFF])
    return p


def test_video_jitter_buffer_skips_a_hole_after_the_time_limit(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(passthrough.time, "monotonic", lambda: now[0])
    jb = passthrough.VideoJitterBuffer(capacity=128, max_wait=0.25)
    assert jb.add(rtp(0, 0)) == (False, None)
    pli, frame = jb.add(rtp(1, 3000))  # frame 0 complete once frame 1 starts
    assert not pli and frame.timestamp == 0
    # packet 2 (start of frame 2) is lost for good; frames 3, 4, ... keep arriving
    assert jb.add(rtp(3, 6000)) == (False, None)  # stall starts (frame 1 is complete though)
    now[0] += 0.1
    assert jb.add(rtp(4, 9000)) == (False, None)  # still within the NACK window
    now[0] += 0.2
    pli, frame = jb.add(rtp(5, 12000))
    assert pli and jb.holes_skipped == 1  # gave up: upstream loss is reported
    assert jb.add(rtp(6, 15000))[1].timestamp == 12000  # and frames flow again


def test_video_frame_is_released_on_its_marker_packet_not_one_frame_later():
    jb = passthrough.VideoJitterBuffer()
    first = rtp(10, 0)
    assert jb.add(first) == (False, None)
    last = rtp(11, 0)
    last.marker = 1
    pli, frame = jb.add(last)
    assert not pli and frame is not None and frame.data == bytes([10, 11])
    hole = rtp(14, 3000)  # 12 and 13 missing: a marked packet after a hole releases nothing
    hole.marker = 1
    assert jb.add(hole) == (False, None)


def test_audio_pass_buffer_forwards_at_once_and_drops_duplicates_and_late_packets():
    ab = passthrough.AudioPassBuffer()
    assert ab.add(rtp(65535, 0))[1].timestamp == 0
    assert ab.add(rtp(0, 960))[1].timestamp == 960  # sequence wrap
    assert ab.add(rtp(0, 960)) == (False, None)  # duplicate
    assert ab.add(rtp(65534, 0)) == (False, None)  # late
    assert ab.add(rtp(2, 2880))[1].timestamp == 2880  # a gap is fine for audio


def test_a_changed_receive_path_refuses_to_start(monkeypatch):
    from aiortc import rtcrtpreceiver

    def decoder_worker(loop, input_q, output_q, decode_error):  # reads frames differently
        return None

    monkeypatch.setattr(rtcrtpreceiver, "decoder_worker", decoder_worker)
    with pytest.raises(passthrough.AiortcIncompatible, match="decoder_worker"):
        passthrough.check_aiortc()


def test_a_retransmission_that_completes_the_head_frame_releases_it_at_once():
    jb = passthrough.VideoJitterBuffer()
    assert jb.add(rtp(20, 0)) == (False, None)
    last = rtp(22, 0)
    last.marker = 1
    assert jb.add(last) == (False, None)  # 21 is missing
    pli, frame = jb.add(rtp(21, 0))  # NACK brought it back
    assert not pli and frame.data == bytes([20, 21, 22])


def test_a_late_packet_after_a_stall_is_ignored_not_fatal():
    # found under load by the bench (docs/benchmarks.md): a retransmission older than the
    # buffer's origin arriving once the stall limit had passed made aiortc's remove() assert,
    # which ended that peer's whole receive loop
    import time

    jb = passthrough.VideoJitterBuffer(max_wait=0.01)
    first = rtp(100, 1000)
    first.marker = 1
    assert jb.add(first)[1] is not None
    jb.add(rtp(102, 2000))
    jb.add(rtp(104, 3000))
    time.sleep(0.02)
    assert jb.add(rtp(99, 500)) == (False, None)
    pli, _ = jb.add(rtp(105, 3000))  # the stall is still handled for packets in the window
    assert pli and jb.holes_skipped == 1


def test_a_failing_forwarder_or_buffer_does_not_end_the_receive_loop(monkeypatch):
    def broken(packet):
        raise RuntimeError("bug")

    tap = passthrough.FrameTap(broken)
    tap.put((None, EncodedFrame([rtp_packet(1, 0, b"x")], 0, True)))
    tap.put((None, EncodedFrame([rtp_packet(2, 960, b"y")], 960, True)))
    assert tap.errors == 2
    jb = passthrough.VideoJitterBuffer()
    monkeypatch.setattr(jb, "_add", broken)
    assert jb.add(rtp(1, 0)) == (True, None) and jb.errors == 1


def test_fast_ntp_clock_agrees_with_aiortcs_and_is_restored():
    from aiortc import clock

    original = clock.current_ntp_time
    ours, theirs = passthrough.fast_ntp_time(), original()
    assert abs(ours - theirs) < (1 << 32) // 100  # within 10 ms (64-bit NTP fixed point)
    restore = passthrough.install_fast_clock()
    assert clock.current_ntp_time is passthrough.fast_ntp_time
    restore()
    assert clock.current_ntp_time is original


def test_a_changed_send_path_refuses_to_start(monkeypatch):
    import aioice

    async def sendto(self, data, component):  # sends some other way
        return None

    monkeypatch.setattr(aioice.Connection, "sendto", sendto)
    with pytest.raises(passthrough.AiortcIncompatible, match="nominated pair"):
        passthrough.check_aiortc()


async def test_rtcp_sleeps_end_together_on_a_shared_grid_and_short_sleeps_are_untouched():
    """What each sleep asks the loop for, on a clock the test holds (a busy machine's late
    wakeups change nothing): five RTCP waits of different lengths begun together all end on the
    same grid instant; a short sleep is passed on as it is."""
    import asyncio
    from types import SimpleNamespace

    from aiortc import rtcrtpreceiver

    asked: list[float] = []
    grid = passthrough.RTCP_GRID
    now = 40 * grid + 0.005  # just after a grid instant

    async def sleep(delay, result=None):
        asked.append(delay)
        return result

    clock = SimpleNamespace(time=lambda: now)
    held = passthrough.CoalescingAsyncio(
        SimpleNamespace(sleep=sleep, get_running_loop=lambda: clock, Event=asyncio.Event)
    )
    for i in range(5):
        await held.sleep(0.1 + i * 0.03)
    ends = [now + d for d in asked]
    assert all(abs(e - 41 * grid) < 1e-9 for e in ends), ends  # one wakeup for all five
    asked.clear()
    await held.sleep(0.01)  # short sleeps (ICE pacing etc.) are not moved
    assert asked == [0.01]
    assert held.Event is asyncio.Event  # everything else is the module itself

    restore = passthrough.install_rtcp_coalescing()  # process-wide, and undone
    try:
        assert isinstance(rtcrtpsender.asyncio, passthrough.CoalescingAsyncio)
        assert isinstance(rtcrtpreceiver.asyncio, passthrough.CoalescingAsyncio)
        assert rtcrtpsender.asyncio.Event is asyncio.Event
    finally:
        restore()
    assert rtcrtpsender.asyncio is asyncio and rtcrtpreceiver.asyncio is asyncio
