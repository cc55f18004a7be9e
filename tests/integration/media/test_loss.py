"""Real packet loss, injected into a bot's transport: freezes stay short, hints follow loss."""

from __future__ import annotations

import random

import pytest
from aiortc.rtp import RtpPacket

from tests.integration.media.conftest import mesh

A, B = "p-alice", "p-bob"


def video_payload_types(bot) -> tuple[int, int]:
    codecs = bot.pc.getTransceivers()[1]._codecs
    vp8 = next(c.payloadType for c in codecs if c.mimeType.lower() == "video/vp8")
    rtx = next(c.payloadType for c in codecs if c.mimeType.lower() == "video/rtx")
    return vp8, rtx


def drop_uplink_video(bot, every: int) -> dict:
    """Lose every `every`-th video packet the bot sends, and every retransmission of it."""
    transport = bot.pc.getTransceivers()[1].sender.transport
    vp8, rtx = video_payload_types(bot)
    send = transport._send_rtp
    lost: set[int] = set()
    counts = {"video": 0, "dropped": 0}

    async def lossy(data: bytes) -> None:
        if len(data) >= 12 and not 192 <= data[1] <= 223:
            packet = RtpPacket.parse(data)
            seq = packet.sequence_number
            if packet.payload_type == vp8:
                counts["video"] += 1
                if counts["video"] % every == 0:
                    lost.add(seq)
            elif packet.payload_type == rtx and len(packet.payload) >= 2:
                seq = int.from_bytes(packet.payload[:2], "big")  # RFC 4588: original seq first
            if packet.payload_type in (vp8, rtx) and seq in lost:
                counts["dropped"] += 1
                return
        await send(data)

    transport._send_rtp = lossy
    return counts


def drop_downlink(bot, fraction: float, seed: int = 7) -> dict:
    """Lose a random `fraction` of the RTP packets arriving at the bot (RTCP passes)."""
    transport = bot.pc.getTransceivers()[0].receiver.transport
    handle = transport._handle_rtp_data
    rng = random.Random(seed)
    counts = {"in": 0, "dropped": 0}

    async def lossy(data: bytes, arrival_time_ms: int) -> None:
        counts["in"] += 1
        if rng.random() < fraction:
            counts["dropped"] += 1
            return
        await handle(data, arrival_time_ms)

    transport._handle_rtp_data = lossy
    return counts


@pytest.mark.slow
async def test_unrecoverable_upstream_loss_freezes_video_for_less_than_a_second(room):
    alice = await room.join(
        A, slots=1, color=(220, 40, 40), size=(640, 480), fps=15, bitrate=900_000
    )
    bob = await room.join(B, slots=1, color=(40, 60, 220))
    room.engine.apply_plan(mesh([A, B], kinds=("video",)))
    await room.wait_for(lambda: bob.frames_from(A) >= 10, within=15)
    counts = drop_uplink_video(alice, every=150)
    start = bob.stats[A].frames
    freezes_before = len(bob.stats[A].freezes)
    await room.wait_for(lambda: counts["dropped"] >= 4, within=20)
    await room.wait_for(lambda: bob.frames_from(A) >= start + 30, within=10)
    got = bob.received()[A]
    freezes = bob.stats[A].freezes[freezes_before:]
    stats = room.engine.stats()
    print(
        f"\nloss: dropped={counts}, upstream_losses={stats['upstream_losses']}, freezes={freezes}"
    )
    assert stats["upstream_losses"] >= 1  # the server's jitter buffer gave up and resynced
    assert got["out_of_order"] == 0 and bob.unreadable_frames == 0  # gating: no garbage shown
    assert freezes, "a lost packet that is never recovered must show as a freeze"
    assert max(freezes) < 1.0, freezes


@pytest.mark.slow
async def test_lasting_downlink_loss_hints_audio_only_to_that_subscriber_only(room):
    alice = await room.join(A, slots=2, color=(220, 40, 40), tone_hz=440)
    bob = await room.join(B, slots=2, color=(40, 60, 220), tone_hz=660)
    carol = await room.join("p-carol", slots=2, color=(40, 200, 60), tone_hz=880)
    room.engine.apply_plan(mesh([A, B, "p-carol"]))
    await room.wait_for(lambda: bob.frames_from(A) >= 5 and carol.frames_from(A) >= 5, within=15)
    counts = drop_downlink(bob, 0.3)
    await room.wait_for(
        lambda: any(pid == B and h.get("audio_only") for pid, h in room.hints), within=15
    )
    assert counts["dropped"] > 0
    hint = next(h for pid, h in room.hints if pid == B and h.get("audio_only"))
    assert hint == {"audio_only": True, "reason": "loss"}
    assert not any(h.get("audio_only") for pid, h in room.hints if pid != B)
    assert room.engine.bandwidth.loss_of(B) >= 0.1
    # publishers get a bitrate cap derived from the subscribers' REMB (sent every second or so)
    await room.wait_for(
        lambda: any("max_bitrate" in h for pid, h in room.hints if pid in (A, "p-carol")), within=10
    )
    assert room.engine.stats()["remb_reports"] > 0
    assert alice.frames_from(B) > 0
