"""Keyframe requests reach the publisher's media SSRC; pause keeps audio; resume waits for a key."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.media.conftest import mesh

A, B = "p-alice", "p-bob"


async def pair(room, **kw):
    await room.join(A, slots=1, color=(220, 40, 40), tone_hz=440, **kw)
    await room.join(B, slots=1, color=(40, 60, 220), tone_hz=660, **kw)
    room.engine.apply_plan(mesh([A, B]))
    await room.wait_for(
        lambda: room.bots[B].frames_from(A) >= 5 and room.bots[A].frames_from(B) >= 5, within=15
    )


def slot_sender_ssrc(room, subscriber: str) -> int:
    return room.engine.peers[subscriber].slots[0].senders["video"]._ssrc


@pytest.mark.slow
async def test_a_subscriber_pli_reaches_the_publisher_rate_limited(room):
    await pair(room)
    alice_cam = room.bots[A].video_track
    before = alice_cam.keyframe_requests
    bob = room.bots[B]
    receiver = bob.pc.getTransceivers()[3].receiver  # bob's slot 0 video
    for _ in range(200):  # a PLI flood from bob
        await receiver._send_rtcp_pli(slot_sender_ssrc(room, B))
    await asyncio.sleep(1.2)
    got = alice_cam.keyframe_requests - before
    assert 1 <= got <= 4, got  # relayed, but at most one per 0.5 s (plus the retry)
    forwarder = room.engine.peers[A].publications["video"].forwarder
    assert forwarder.keyframe_asks >= 200
    # bob's picture of alice is still clean and moving
    n = bob.frames_from(A)
    await room.wait_for(lambda: bob.frames_from(A) >= n + 10, within=5)
    assert bob.received()[A]["out_of_order"] == 0


@pytest.mark.slow
async def test_a_subscriber_fir_reaches_the_publisher_too(room):
    from aiortc.rtp import RTCP_PSFB_FIR, RtcpPsfbPacket

    await pair(room)
    alice_cam = room.bots[A].video_track
    await asyncio.sleep(0.6)  # let the rate limiter forget the join-time requests
    before = alice_cam.keyframe_requests
    transport = room.bots[B].pc.getTransceivers()[3].receiver.transport
    fci = slot_sender_ssrc(room, B).to_bytes(4, "big") + bytes([1, 0, 0, 0])
    await transport._send_rtp(
        bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=1, media_ssrc=0, fci=fci))
    )
    await room.wait_for(lambda: alice_cam.keyframe_requests > before, within=3)


@pytest.mark.slow
async def test_the_pli_goes_to_the_media_ssrc_never_the_rtx_ssrc(room):
    await pair(room)
    receiver = room.engine.peers[A].publications["video"].receiver
    rtx = set(receiver._RTCRtpReceiver__rtx_ssrc)
    assert rtx, "aiortc offers RTX for video: the publisher announced an RTX SSRC"
    from media import passthrough

    ssrcs = passthrough.media_ssrcs(receiver)
    assert ssrcs and not set(ssrcs) & rtx
    alice_sender = room.bots[A].pc.getTransceivers()[1].sender
    assert ssrcs[0] == alice_sender._ssrc


@pytest.mark.slow
async def test_first_frames_of_a_new_subscription_start_with_a_keyframe(room):
    await pair(room)
    # a third participant joins late: the publisher is mid-GOP, so the server must ask
    carol = await room.join("p-carol", slots=2, color=(40, 200, 60))
    room.engine.apply_plan(mesh([A, B, "p-carol"]))
    await room.wait_for(lambda: carol.frames_from(A) >= 5, within=10)
    got = carol.received()[A]
    assert carol.unreadable_frames == 0  # no delta frame decoded against a missing reference
    assert got["out_of_order"] == 0
    assert got["first_frame_s"] < 3.0
    sub = room.engine.peers[A].publications["video"].forwarder.subscriptions["p-carol"]
    assert sub.frames_forwarded > 0 and not sub.waiting_keyframe


@pytest.mark.slow
async def test_pause_video_keeps_audio_and_resume_brings_video_back(room):
    await pair(room)
    bob = room.bots[B]
    room.engine.set_video_paused(B, True)
    paused_at = time.time()
    entry = room.engine.slot_map(B)[0]
    assert entry["participant"] == A and entry["audio"] and not entry["video"]
    assert room.slot_events[-1] == (B, room.engine.slot_map(B))
    audio = bob.stats[A].audio_frames
    await asyncio.sleep(1.4)
    # no picture sent after the pause arrived (judged by send time: a loaded decoder may lag)
    assert bob.stats[A].last_sent_at < paused_at + 0.05
    frames = bob.frames_from(A)
    assert bob.stats[A].audio_frames > audio + 20  # audio keeps flowing (50 packets/s)
    assert room.bots[A].frames_from(B) > 0  # alice is not affected
    room.engine.set_video_paused(B, False)
    assert room.engine.slot_map(B)[0]["video"]
    await room.wait_for(lambda: bob.frames_from(A) >= frames + 5, within=5)
    assert bob.unreadable_frames == 0 and bob.received()[A]["out_of_order"] == 0
