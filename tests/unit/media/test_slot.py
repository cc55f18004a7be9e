"""The persistent slot track: source switches, timestamp continuity, holding while the sender
connects, and aiortc's idle sender task."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.mediastreams import MediaStreamError

from media import slot as slot_module
from media.forwarder import Forwarder
from tests.unit.media.frames import encoded, track


def opus(ts: int):
    return encoded(b"\x01opus", ts)  # bit 0 set: not a VP8 keyframe; audio is never gated


async def test_timestamps_keep_moving_forward_across_source_switches():
    sink, out = track("audio")
    a = Forwarder("a", "audio", lambda: None)
    b = Forwarder("b", "audio", lambda: None)
    a.subscribe("s", sink)
    a.deliver(opus(5_000_000))
    a.deliver(opus(5_000_960))
    first = [ts for _, ts in out.sent]
    assert first == [0, 960]  # rebased to the slot's own clock
    await asyncio.sleep(0.1)
    b.subscribe("s", sink)  # the slot now carries b, whose clock is far behind a's
    b.deliver(opus(100))
    nxt = out.sent[-1][1]
    assert nxt > first[-1] + 0.09 * 48000  # advanced by about the wall time that passed
    a.close("t")
    b.close("t")


async def test_timestamps_wrap_at_32_bits():
    sink, out = track("audio")
    a = Forwarder("a", "audio", lambda: None)
    a.subscribe("s", sink)
    a.deliver(opus(0xFFFFFF00))
    a.deliver(opus(0x000000C0))  # the publisher's clock wrapped
    assert [ts for _, ts in out.sent] == [0, 0x1C0]
    a.close("t")


async def test_frames_of_a_detached_source_are_not_sent():
    sink, out = track("audio")
    a = Forwarder("a", "audio", lambda: None)
    sub = a.subscribe("s", sink)
    a.deliver(opus(0))
    sub.close("plan changed")
    a.deliver(opus(960))
    assert len(out.sent) == 1
    a.close("t")


async def test_frames_are_held_until_the_sender_connects_then_sent_in_order(monkeypatch):
    sink, out = track("audio", ready=False)
    a = Forwarder("a", "audio", lambda: None)
    sub = a.subscribe("s", sink)
    for i in range(3):
        a.deliver(opus(i * 960))
    assert not out.sent and sub.frames_forwarded == 3
    out.ready = True
    a.deliver(opus(3 * 960))
    assert [ts for _, ts in out.sent] == [0, 960, 1920, 2880]
    assert sink.frames_sent == 4 and sink.frames_dropped == 0
    a.close("t")


async def test_holding_is_bounded_and_a_switch_forgets_held_frames(monkeypatch):
    monkeypatch.setattr(slot_module, "HOLD_LIMIT", 4)
    sink, out = track("audio", ready=False)
    a = Forwarder("a", "audio", lambda: None)
    sub = a.subscribe("s", sink)
    for i in range(6):
        a.deliver(opus(i * 960))
    assert sub.frames_unsent == 1 and sink.frames_dropped == 4
    b = Forwarder("b", "audio", lambda: None)
    b.subscribe("s", sink)  # a's held frame is dropped with the switch
    out.ready = True
    b.deliver(opus(0))
    assert len(out.sent) == 1
    a.close("t")
    b.close("t")


async def test_aiortcs_sender_task_idles_in_recv_until_stop():
    sink, _ = track("video")
    waiter = asyncio.create_task(sink.recv())
    await asyncio.sleep(0.02)
    assert not waiter.done()
    sink.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiter, 1)
    with pytest.raises(MediaStreamError):
        await sink.recv()
