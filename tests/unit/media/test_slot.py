"""The persistent slot track: source switches, timestamp continuity, wake-ups, stop."""

from __future__ import annotations

import asyncio
import fractions

import av
import pytest
from aiortc.mediastreams import MediaStreamError

from media.forwarder import Forwarder
from media.slot import SlotTrack

TB = fractions.Fraction(1, 48000)


def pkt(pts: int) -> av.Packet:
    p = av.Packet(b"x")
    p.pts, p.time_base, p.is_keyframe = pts, TB, True
    return p


async def test_timestamps_keep_moving_forward_across_source_switches():
    track = SlotTrack("audio")
    a = Forwarder("a", "audio", lambda: None)
    b = Forwarder("b", "audio", lambda: None)
    a.subscribe("s", track)
    a.deliver(pkt(5_000_000))
    a.deliver(pkt(5_000_960))
    first = [(await track.recv()).pts for _ in range(2)]
    assert first == [0, 960]  # rebased to the slot's own clock
    await asyncio.sleep(0.1)
    b.subscribe("s", track)  # the slot now carries b, whose clock is far behind a's
    b.deliver(pkt(100))
    nxt = (await track.recv()).pts
    assert nxt > first[-1] + 0.09 * 48000  # advanced by about the wall time that passed
    a.close("t")
    b.close("t")


async def test_frames_of_a_detached_source_are_not_sent():
    track = SlotTrack("audio")
    a = Forwarder("a", "audio", lambda: None)
    sub = a.subscribe("s", track)
    a.deliver(pkt(0))
    sub.close("plan changed")
    a.deliver(pkt(960))
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(track.recv(), 0.1)
    a.close("t")


async def test_a_waiting_recv_wakes_on_push_and_fails_on_stop():
    track = SlotTrack("audio")
    a = Forwarder("a", "audio", lambda: None)
    a.subscribe("s", track)
    waiter = asyncio.create_task(track.recv())
    await asyncio.sleep(0.01)
    a.deliver(pkt(0))
    assert (await asyncio.wait_for(waiter, 1)).pts == 0
    waiter = asyncio.create_task(track.recv())
    await asyncio.sleep(0.01)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiter, 1)
    a.close("t")
