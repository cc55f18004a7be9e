"""Three participants each receive the other two distinct pictures in the slots the map says."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.media.conftest import mesh

RED, GREEN, BLUE = (220, 40, 40), (40, 200, 60), (40, 60, 220)
COLORS = {"p-red": RED, "p-green": GREEN, "p-blue": BLUE}
TONES = {"p-red": 440, "p-green": 660, "p-blue": 880}


def close_to(a, b, tol=40):
    return a is not None and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


async def join_all(room):
    for name in COLORS:
        await room.join(name, slots=2, color=COLORS[name], tone_hz=TONES[name])
    room.engine.apply_plan(mesh(list(COLORS)))


@pytest.mark.slow
async def test_three_participants_each_see_the_other_two_in_their_slots(room):
    await join_all(room)
    names = list(COLORS)

    def everyone_sees_everyone():
        return all(room.bots[s].frames_from(p) >= 15 for s in names for p in names if p != s)

    await room.wait_for(everyone_sees_everyone, within=15)
    for s in names:
        got = room.bots[s].received()
        assert s not in got, f"{s} received its own picture"
        slot_map = {e["participant"]: e["slot"] for e in room.engine.slot_map(s)}
        assert set(slot_map) == set(names) - {s}
        for p in set(names) - {s}:
            stats = got[p]
            assert stats["slots"] == [slot_map[p]], (s, p, stats)
            assert close_to(stats["color"], COLORS[p]), (s, p, stats["color"])
            assert stats["out_of_order"] == 0
            assert stats["audio_frames"] > 0
    stats = room.engine.stats()
    assert stats["peers_connected"] == 3
    assert stats["subscriptions"] == 12
    assert stats["frames_forwarded"] > 0


@pytest.mark.slow
async def test_removing_an_edge_stops_that_picture_and_readding_brings_it_back(room):
    await join_all(room)
    red, green = room.bots["p-red"], room.bots["p-green"]
    await room.wait_for(lambda: red.frames_from("p-green") >= 10, within=15)
    plan = [
        e for e in mesh(list(COLORS)) if not (e.publisher == "p-green" and e.subscriber == "p-red")
    ]
    room.engine.apply_plan(plan)
    removed_at = time.time()
    entry = [e for e in room.engine.slot_map("p-red") if e["participant"] == "p-green"]
    assert entry == []
    assert "p-red" not in room.engine.peers["p-green"].publications["video"].forwarder.subscriptions
    await asyncio.sleep(1.5)
    # judged by when the publisher sent each picture, so a slow (loaded) decoder cannot blur it
    assert red.stats["p-green"].last_sent_at < removed_at + 0.05
    before = red.frames_from("p-green")
    assert red.frames_from("p-blue") > 0 and green.frames_from("p-red") > 0
    room.engine.apply_plan(mesh(list(COLORS)))
    await room.wait_for(lambda: red.frames_from("p-green") >= before + 10, within=10)
    assert red.received()["p-green"]["out_of_order"] == 0


async def test_the_answer_forces_vp8_and_opus_even_when_the_offer_prefers_h264(room):
    from aiortc import RTCRtpSender

    from bench.bot import Bot

    bot = Bot("p-h264", slots=1, color=(200, 200, 200))
    caps = RTCRtpSender.getCapabilities("video").codecs
    h264_first = [c for c in caps if c.mimeType == "video/H264"] + [
        c for c in caps if c.mimeType != "video/H264"
    ]
    offer = await bot.create_offer()
    for t in bot.pc.getTransceivers():
        if t.kind == "video":
            t.setCodecPreferences(h264_first)
    offer = (await bot.pc.createOffer()).sdp
    assert offer.index("H264/90000") < offer.index("VP8/90000")
    answer = await room.engine.accept_offer("p-h264", offer)
    rtpmaps = [line for line in answer.splitlines() if line.startswith("a=rtpmap:")]
    video = {line.split()[1].split("/")[0] for line in rtpmaps if "/90000" in line}
    audio = {line.split()[1].split("/")[0] for line in rtpmaps if "/48000" in line}
    assert video == {"VP8", "rtx"} and audio == {"opus"}
    await bot.close()


async def test_engine_describes_itself(room):
    await room.join("p-one", slots=1, color=(10, 10, 10))
    await room.join("p-two", slots=1)
    room.engine.apply_plan(mesh(["p-one", "p-two"]))
    room.engine.set_video_paused("p-one", True)
    info = room.engine.to_dict()
    assert [p["participant"] for p in info["peers"]] == ["p-one", "p-two"]
    assert info["slots"]["p-two"][0]["participant"] == "p-one"
    assert info["slots"]["p-one"][0]["video"] is False
    assert info["paused_video"] == ["p-one"]
