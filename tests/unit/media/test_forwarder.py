"""Keyframe gating and the rate-limited keyframe broker, with a real SlotTrack as the sink."""

from __future__ import annotations

import asyncio

from media import forwarder as fw
from media import slot as slot_module
from media.forwarder import Forwarder
from media.slot import SlotTrack
from tests.unit.media.frames import KEY, FrameRecorder, encoded, track

DELTA = b"\x11\x02\x00" + b"d" * 20


def frame(data: bytes, ts: int):
    return encoded(data, ts)


class Requests:
    def __init__(self):
        self.count = 0

    def __call__(self):
        self.count += 1


async def test_new_video_subscription_gets_no_delta_frame_before_a_keyframe():
    asks = Requests()
    f = Forwarder("pub", "video", asks)
    sink, out = track("video")
    sub = f.subscribe("sub", sink)
    assert asks.count == 1  # the subscription asked for a keyframe at once
    f.deliver(frame(DELTA, 0))
    f.deliver(frame(DELTA, 3000))
    assert sub.frames_gated == 2 and sub.frames_forwarded == 0 and not out.sent
    f.deliver(frame(KEY, 6000))
    f.deliver(frame(DELTA, 9000))
    assert [fr.is_keyframe for fr, _ in out.sent] == [True, False]
    assert out.sent[0][0].data == KEY
    f.close("test")


async def test_keyframe_requests_are_rate_limited_however_many_ask(monkeypatch):
    monkeypatch.setattr(fw, "KEYFRAME_INTERVAL", 0.2)
    asks = Requests()
    f = Forwarder("pub", "video", asks)
    subs = [f.subscribe(f"s{i}", track("video")[0]) for i in range(10)]
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
    f.subscribe("s", track("video")[0])
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
    sinks = [track("video")[0] for _ in range(3)]
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
    a, b = track("audio")[0], track("audio")[0]
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
    sub = f.subscribe("s", track("video")[0])
    f.deliver(frame(KEY, 0))
    sub.set_paused(True)
    sub.set_paused(False)
    assert sub.waiting_keyframe
    f.deliver(frame(DELTA, 3000))
    assert sub.frames_forwarded == 1 and sub.frames_gated == 1
    f.close("test")


async def test_a_subscriber_whose_sender_stays_down_resyncs_without_hurting_others(monkeypatch):
    monkeypatch.setattr(slot_module, "HOLD_LIMIT", 10)
    f = Forwarder("pub", "video", Requests())
    down, up = FrameRecorder(ready=False), FrameRecorder()
    s_down = f.subscribe("down", SlotTrack("video", down))
    s_up = f.subscribe("up", SlotTrack("video", up))
    f.deliver(frame(KEY, 0))
    for i in range(1, 40):
        f.deliver(frame(DELTA, i * 3000))
    assert s_down.frames_unsent == 1 and s_down.waiting_keyframe
    assert s_up.frames_unsent == 0 and s_up.frames_forwarded == 40 and len(up.sent) == 40
    assert not down.sent
    f.close("test")


async def test_close_cascades_to_subscriptions_and_detaches_sinks():
    f = Forwarder("pub", "video", Requests())
    sink = track("video")[0]
    sub = f.subscribe("s", sink)
    f.close("publisher left")
    assert sub.closed and sub.close_reason == "publisher left"
    assert sink.source is None and f.subscriptions == {}
    f.request_keyframe()  # a closed forwarder asks nobody
    assert f.keyframe_requests == 1


async def test_a_request_that_could_not_be_sent_does_not_hold_back_the_next_one():
    sent = []
    ready = [False]  # no media from the publisher yet: nothing to address a PLI to

    def send() -> bool:
        if ready[0]:
            sent.append(True)
        return ready[0]

    f = Forwarder("pub", "video", send)
    f.subscribe("early", track("video")[0])
    assert f.keyframe_requests == 0 and not sent
    ready[0] = True  # media arrived; a later subscriber asks at once, not 500 ms later
    f.subscribe("late", track("video")[0])
    assert f.keyframe_requests == 1 and sent == [True]
    f.close("test")
