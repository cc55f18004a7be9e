"""Bad peers cost only their own slot: garbage, floods, silent peers, vanished peers, bad offers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random

import aioice.ice
import pylibsrtp
import pytest
from aiortc.rtp import RtcpPsfbPacket, RtpPacket

from bench.bot import Bot
from media.engine import MediaConfig, MediaEngine, MediaError
from tests.integration.media.conftest import HOST, mesh

A, B, C = "p-alice", "p-bob", "p-carol"


async def trio(room):
    for name, color in ((A, (220, 40, 40)), (B, (40, 60, 220)), (C, (40, 200, 60))):
        await room.join(name, slots=2, color=color, tone_hz=500)
    room.engine.apply_plan(mesh([A, B, C]))
    bots = room.bots
    await room.wait_for(
        lambda: bots[C].frames_from(B) >= 5 and bots[B].frames_from(C) >= 5, within=15
    )


async def still_flowing(room, publisher, subscriber, n=10, within=5.0):
    bot = room.bots[subscriber]
    start = bot.frames_from(publisher)
    await room.wait_for(lambda: bot.frames_from(publisher) >= start + n, within=within)


@pytest.mark.slow
async def test_garbage_rtp_and_rtcp_hurt_nobody_else(room):
    await trio(room)
    transport = room.bots[A].pc.getTransceivers()[1].sender.transport
    ssrc = room.bots[A].pc.getTransceivers()[1].sender._ssrc
    rng = random.Random(1)
    sent = 0
    for _ in range(600):
        p = RtpPacket(
            payload_type=rng.choice([96, 97, 98, 111, 0, 127]),
            sequence_number=rng.randrange(65536),
            timestamp=rng.randrange(1 << 32),
        )
        p.ssrc = rng.choice([ssrc, rng.randrange(1 << 32)])
        p.payload = rng.randbytes(rng.randrange(0, 1200))
        rtcp = bytes([0x80 | rng.randrange(32), rng.choice([200, 201, 205, 206])])
        rtcp += os.urandom(rng.randrange(2, 80))  # RTCP-looking garbage: valid version bits
        for data in (p.serialize(), rtcp):
            with contextlib.suppress(pylibsrtp.Error):  # our own SRTP refuses some replays
                await transport._send_rtp(data)
                sent += 1
    assert sent > 600  # most of the 1200 garbage packets really went out
    await still_flowing(room, B, C)
    await still_flowing(room, C, B)
    assert set(room.engine.peers) == {A, B, C}


@pytest.mark.slow
async def test_a_pli_flood_from_one_subscriber_is_rate_limited(room):
    await trio(room)
    bob_cam = room.bots[B].video_track
    before = bob_cam.keyframe_requests
    transport = room.bots[A].pc.getTransceivers()[3].receiver.transport
    sender_ssrcs = [s.senders["video"]._ssrc for s in room.engine.peers[A].slots]
    for _ in range(500):
        for media_ssrc in sender_ssrcs:
            await transport._send_rtp(bytes(RtcpPsfbPacket(fmt=1, ssrc=1, media_ssrc=media_ssrc)))
    await asyncio.sleep(1.0)
    assert bob_cam.keyframe_requests - before <= 4
    await still_flowing(room, B, C)


@pytest.mark.slow
async def test_a_peer_that_never_connects_times_out_as_failed(room):
    room.engine.config.connect_timeout = 1.0
    await trio(room)
    ghost = Bot("p-ghost", slots=1, color=(90, 90, 90))
    await room.engine.accept_offer("p-ghost", await ghost.create_offer())  # never answers back
    room.engine.apply_plan(mesh([A, B, C, "p-ghost"]))
    await room.wait_for(lambda: ("p-ghost", "failed") in room.states, within=5)
    assert "p-ghost" not in room.engine.peers
    await still_flowing(room, B, C)
    await ghost.close()


@pytest.mark.slow
async def test_a_peer_that_vanishes_mid_stream_is_noticed_and_others_continue(room, monkeypatch):
    # what MediaConfig.consent_interval / consent_failures set at start(), made fast for a test
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.3)
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 3)
    await trio(room)
    bot = room.bots[A]
    # the phone drops off the network: its sockets go away without any goodbye
    for transport in bot.pc._RTCPeerConnection__iceTransports:
        for protocol in transport._connection._protocols:
            protocol.transport.close()
    await room.wait_for(
        lambda: any(p == A for p, _ in room.states if _ in ("failed", "closed")), within=8
    )
    assert A not in room.engine.peers
    await still_flowing(room, B, C)
    # bob's slot stays reserved for alice (she is still in the plan) but carries nothing now
    entry = next(e for e in room.engine.slot_map(B) if e["participant"] == A)
    assert entry["audio"] is False and entry["video"] is False


async def test_bad_offers_are_refused_with_a_code_and_leave_no_peer(room):
    for bad, code in ((None, "bad_sdp"), ("v=0", "bad_sdp"), ("x" * 100_000, "bad_sdp")):
        with pytest.raises(MediaError) as info:
            await room.engine.accept_offer("p-bad", bad)
        assert info.value.code == code
    bot = Bot("p-many", slots=8)
    with pytest.raises(MediaError) as info:
        await room.engine.accept_offer("p-many", await bot.create_offer())
    assert info.value.code == "too_many_slots"
    await bot.close()
    assert room.engine.peers == {}
    assert room.engine.stats()["offers_rejected"] == 4


async def test_a_reconnecting_participant_replaces_its_old_connection(room):
    first = await room.join(A, slots=1, color=(220, 40, 40))
    old_peer = room.engine.peers[A]
    second = Bot(A, slots=1, color=(220, 40, 40))
    await room.engine.accept_offer(A, await second.create_offer())
    assert old_peer.closed and old_peer.close_reason == "replaced"
    assert room.engine.peers[A] is not old_peer
    assert len(room.engine.peers) == 1
    await first.close()
    await second.close()


async def test_engine_refuses_offers_before_start_and_after_close():
    engine = MediaEngine(MediaConfig(ice_host_addresses=[HOST]))
    with pytest.raises(MediaError) as info:
        await engine.accept_offer("p", "v=0")
    assert info.value.code == "closed"
    await engine.start()
    await engine.close()
    await engine.close()  # idempotent
    with pytest.raises(MediaError):
        await engine.accept_offer("p", "v=0")
