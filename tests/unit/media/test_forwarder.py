"""Keyframe gating and the rate-limited keyframe broker, with a real SlotTrack as the sink."""

from __future__ import annotations

import asyncio
import fractions

import av

from media import forwarder as fw
from media.forwarder import Forwarder
from media.slot import SlotTrack

TB = fractions.Fraction(1, 90000)
KEY = b"\x10\x02\x00\x9d\x01\x2a\x40\x01\xf0\x00" + b"k" * 20  # VP8 keyframe header
DELTA = b"\x11\x02\x00" + b"d" * 20


def frame(data: bytes, pts: int) -> av.Packet:
    p = av.Packet(data)
    p.pts, p.time_base = pts, TB
    p.is_keyframe = data[0] & 1 == 0
    return p


class Requests:
    def __init__(self):
        self.count = 0

    def __call__(self):
        self.count += 1


async def test_new_video_subscription_gets_no_delta_frame_before_a_keyframe():
    asks = Requests()
    f = Forwarder("pub", "video", asks)
    sink = SlotTrack("video")
    sub = f.subscribe("sub", sink)
    assert asks.count == 1  # the subscription asked for a keyframe at once
    f.deliver(frame(DELTA, 0))
    f.deliver(frame(DELTA, 3000))
    assert sub.frames_gated == 2 and sub.frames_forwarded == 0
    f.deliver(frame(KEY, 6000))
    f.deliver(frame(DELTA, 9000))
    out = [await asyncio.wait_for(sink.recv(), 1) for _ in range(2)]
    assert [o.is_keyframe for o in out] == [True, False]
    assert bytes(out[0]) == KEY
    f.close("test")


async def test_keyframe_requests_are_rate_limited_however_many_ask(monkeypatch):
    monkeypatch.setattr(fw, "KEYFRAME_INTERVAL", 0.2)
    asks = Requests()
    f = Forwarder("pub", "video", asks)
    subs = [f.subscribe(f"s{i}", SlotTrack("video")) for i in range(10)]
    for _ in range(50):
        f.request_keyframe()
    assert asks.count == 1
    await asyncio.sleep(0.3)
    assert asks.count == 2  # the pending ones were coalesced into one more request
    assert f.keyframe_asks == 60
    for s in subs:
        assert s.waiting_keyframe
    f.close("test")


async def test_requests_repeat_while_a_subscriber_waits_and_stop_after_the_keyframe(monkeypatch):
    monkeypatch.setattr(fw, "KEYFRAME_RETRY", 0.1)
    monkeypatch.setattr(fw, "KEYFRAME_INTERVAL", 0.05)
    asks = Requests()
    f = Forwarder("pub", "video", asks)
    f.subscribe("s", SlotTrack("video"))
    await asyncio.sleep(0.35)
    assert asks.count >= 3
    f.deliver(frame(KEY, 0))
    settled = asks.count
    await asyncio.sleep(0.3)
    assert asks.count <= settled + 1  # at most the retry already armed
    f.close("test")


async def test_upstream_loss_puts_every_subscriber_back_to_waiting():
    asks = Requests()
    f = Forwarder("pub", "video", asks)
    sinks = [SlotTrack("video") for _ in range(3)]
    subs = [f.subscribe(f"s{i}", s) for i, s in enumerate(sinks)]
    f.deliver(frame(KEY, 0))
    assert not any(s.waiting_keyframe for s in subs)
    f.upstream_loss()
    assert all(s.waiting_keyframe for s in subs)
    f.deliver(frame(DELTA, 3000))
    assert all(s.frames_gated == 1 for s in subs)
    f.close("test")


async def test_audio_is_never_gated_and_pause_only_concerns_the_paused_subscriber():
    f = Forwarder("pub", "audio", Requests())
    a, b = SlotTrack("audio"), SlotTrack("audio")
    sa, sb = f.subscribe("a", a), f.subscribe("b", b)
    f.deliver(frame(b"opus", 0))
    assert sa.frames_forwarded == 1 and sb.frames_forwarded == 1
    sb.set_paused(True)
    f.deliver(frame(b"opus", 960))
    assert sa.frames_forwarded == 2 and sb.frames_forwarded == 1
    f.close("test")


async def test_resume_waits_for_a_keyframe():
    asks = Requests()
    f = Forwarder("pub", "video", asks)
    sub = f.subscribe("s", SlotTrack("video"))
    f.deliver(frame(KEY, 0))
    sub.set_paused(True)
    sub.set_paused(False)
    assert sub.waiting_keyframe
    f.deliver(frame(DELTA, 3000))
    assert sub.frames_forwarded == 1 and sub.frames_gated == 1
    f.close("test")


async def test_overflowing_subscriber_resyncs_on_a_keyframe_without_hurting_others():
    f = Forwarder("pub", "video", Requests())
    stuck, fine = SlotTrack("video"), SlotTrack("video")
    s_stuck, s_fine = f.subscribe("stuck", stuck), f.subscribe("fine", fine)
    f.deliver(frame(KEY, 0))
    for i in range(1, 40):
        f.deliver(frame(DELTA, i * 3000))
        while fine._frames:  # the healthy sender keeps up
            await fine.recv()
    assert s_stuck.overflows == 1 and s_stuck.waiting_keyframe
    assert s_fine.overflows == 0 and s_fine.frames_forwarded == 40
    f.close("test")


async def test_close_cascades_to_subscriptions_and_detaches_sinks():
    f = Forwarder("pub", "video", Requests())
    sink = SlotTrack("video")
    sub = f.subscribe("s", sink)
    f.close("publisher left")
    assert sub.closed and sub.close_reason == "publisher left"
    assert sink.source is None and f.subscriptions == {}
    f.request_keyframe()  # a closed forwarder asks nobody
    assert f.keyframe_requests == 1
