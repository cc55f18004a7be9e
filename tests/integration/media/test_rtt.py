"""The round trip to each participant is timed from real aiortc receiver reports, and the
publisher's video hole wait follows it (media/rtt.py, VideoJitterBuffer.set_rtt)."""

from __future__ import annotations

import asyncio

import pytest

from media import passthrough
from tests.integration.media.conftest import mesh

A, B = "p-alice", "p-bob"
DELAY = 0.15  # added to everything Alice's bot sends back as RTCP


def delay_rtcp(bot, seconds: float) -> None:
    """Hold each RTCP packet the bot sends for `seconds` (its RTP goes at once)."""
    transport = bot.pc.getTransceivers()[0].sender.transport
    send = transport._send_rtp
    loop = asyncio.get_running_loop()
    pending: set = set()

    async def delayed(data: bytes) -> None:
        if len(data) > 1 and 192 <= data[1] <= 223:  # RTCP (RFC 5761)
            loop.call_later(seconds, lambda: pending.add(loop.create_task(send(data))))
            return
        await send(data)

    transport._send_rtp = delayed


@pytest.mark.slow
async def test_rtt_is_timed_per_participant_and_sets_the_hole_wait(room):
    alice = await room.join(A, slots=1, color=(220, 40, 40))
    bob = await room.join(B, slots=1, color=(40, 60, 220))
    room.engine.apply_plan(mesh([A, B]))
    await room.wait_for(lambda: bob.frames_from(A) >= 5 and alice.frames_from(B) >= 5, within=15)
    delay_rtcp(alice, DELAY)
    peers = room.engine.peers
    # sender reports every 0.5-1.5 s, receiver reports about as often: a few samples in ~10 s
    await room.wait_for(lambda: peers[A].rtt.samples >= 4 and peers[B].rtt.samples >= 2, within=20)
    await room.wait_for(lambda: peers[A].rtt.srtt > DELAY * 0.6, within=15)
    fast, slow = peers[B], peers[A]
    print(f"\nrtt: bob {fast.rtt.srtt:.3f} s, alice {slow.rtt.srtt:.3f} s (+{DELAY} s RTCP)")
    assert fast.rtt.srtt < 0.1  # loopback (a busy machine adds a little)
    assert DELAY * 0.6 < slow.rtt.srtt < DELAY + 0.2
    slow_wait = slow.publications["video"].jitter_buffer.max_wait
    fast_wait = fast.publications["video"].jitter_buffer.max_wait
    assert slow_wait >= 2 * DELAY and slow_wait > fast_wait
    assert fast_wait >= passthrough.MIN_HOLE_WAIT
    stats = room.engine.stats()
    assert stats["peer_rtt_max_s"] == pytest.approx(slow.rtt.srtt)
    assert stats["video_hole_wait_max_s"] == pytest.approx(slow_wait)
