"""A keyframes-only edge (an officer's grid thumbnail) carries only keyframes, spaced by its
interval, asked of the publisher once per interval however many grid viewers there are; a
full-rate subscriber of the same publisher is untouched."""

from __future__ import annotations

import asyncio
import time
from typing import NamedTuple

import pytest

from media.forwarder import THUMBNAIL_GAP
from tests.integration.media.conftest import mesh

A, B, G1, G2 = "p-alice", "p-bob", "grid-1", "grid-2"
INTERVAL = 2.0
WINDOW = 8.0


class Thumb(NamedTuple):
    publisher: str
    subscriber: str
    kind: str
    keyframe_interval: float


@pytest.mark.slow
async def test_a_keyframes_only_edge_forwards_keyframes_at_the_interval(room):
    await room.join(A, slots=1, color=(220, 40, 40), tone_hz=440)
    await room.join(B, slots=1, color=(40, 60, 220), tone_hz=660)
    g1 = await room.join(G1, slots=1)
    g2 = await room.join(G2, slots=1)
    edges = mesh([A, B]) + [Thumb(A, G1, "video", INTERVAL), Thumb(A, G2, "video", INTERVAL)]
    room.engine.apply_plan(edges)
    bob = room.bots[B]
    await room.wait_for(lambda: g1.frames_from(A) >= 1 and g2.frames_from(A) >= 1, within=15)
    await room.wait_for(lambda: bob.frames_from(A) >= 5, within=15)

    forwarder = room.engine.peers[A].publications["video"].forwarder
    cam = room.bots[A].video_track
    subs = {g: forwarder.subscriptions[g] for g in (G1, G2)}
    assert all(s.keyframe_interval == INTERVAL for s in subs.values())
    assert forwarder.subscriptions[B].keyframe_interval == 0.0
    start = {
        "requests": cam.keyframe_requests,
        "keys_in": forwarder.keyframes_in,
        "frames_in": forwarder.frames_in,
        "g1": g1.frames_from(A),
        "bob": bob.frames_from(A),
        "fwd": {g: s.frames_forwarded for g, s in subs.items()},
    }
    t0 = time.monotonic()
    await asyncio.sleep(WINDOW)  # a measuring window, not a wait for a state
    elapsed = time.monotonic() - t0

    frames_in = forwarder.frames_in - start["frames_in"]
    keys_in = forwarder.keyframes_in - start["keys_in"]
    for g, sub in subs.items():
        forwarded = sub.frames_forwarded - start["fwd"][g]
        # only keyframes: never more than the publisher's keyframes, far fewer than its frames
        assert 0 < forwarded <= keys_in, (g, forwarded, keys_in)
        assert forwarded <= elapsed / (THUMBNAIL_GAP * INTERVAL) + 1, (g, forwarded)
        assert forwarded >= elapsed / (2 * INTERVAL) - 1, (g, forwarded)
        assert frames_in > 5 * forwarded
    # the grid viewer decoded every frame it got (each a keyframe: nothing references a
    # frame it never received), spaced by at least the gap
    g1_frames = g1.frames_from(A) - start["g1"]
    assert g1_frames >= elapsed / (2 * INTERVAL) - 1
    assert g1.unreadable_frames == 0
    times = list(g1.stats[A].times)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps and min(gaps) >= THUMBNAIL_GAP * INTERVAL - 0.4, gaps
    # one ask per interval for both grid viewers together (plus the forwarder's own retries)
    asked = cam.keyframe_requests - start["requests"]
    assert asked <= elapsed / (THUMBNAIL_GAP * INTERVAL) + 2, asked
    # the full-rate subscriber still gets the full rate, clean
    assert bob.frames_from(A) - start["bob"] >= 5 * elapsed, bob.received()[A]
    assert bob.received()[A]["out_of_order"] == 0


@pytest.mark.slow
async def test_the_same_edge_at_full_rate_replaces_the_thumbnail(room):
    await room.join(A, slots=1, color=(220, 40, 40), tone_hz=440)
    g1 = await room.join(G1, slots=1)
    room.engine.apply_plan([Thumb(A, G1, "video", INTERVAL)])
    await room.wait_for(lambda: g1.frames_from(A) >= 1, within=15)
    forwarder = room.engine.peers[A].publications["video"].forwarder
    assert forwarder.subscriptions[G1].keyframe_interval == INTERVAL
    # focused: the plain edge, full rate (a plain edge wins over a thumbnail of the same pair)
    room.engine.apply_plan([Thumb(A, G1, "video", INTERVAL), *mesh([A, G1])])
    assert forwarder.subscriptions[G1].keyframe_interval == 0.0
    n = g1.frames_from(A)
    await room.wait_for(lambda: g1.frames_from(A) >= n + 15, within=10)
    assert forwarder._periodic is None or forwarder._thumbnail_interval() is None
    # back to the grid
    room.engine.apply_plan([Thumb(A, G1, "video", INTERVAL)])
    assert forwarder.subscriptions[G1].keyframe_interval == INTERVAL
    q = room.engine.quality(A)
    assert q["state"] == "connected" and q["video"]["age"] is not None
    assert q["video"]["age"] < 1.0
