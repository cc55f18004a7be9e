"""A mediation recorded end to end: real bots, the real engine, the recorder's files decrypted
with recording/'s own code and decoded with PyAV, checked against the ledger (R8, R9, R14)."""

from __future__ import annotations

import asyncio
import hashlib

from recording.manifest import manifest, verify_files
from rooms.ledger import verify_chain
from tests.integration.recording.conftest import TONES, decode, tone_power, until


def _dir_bytes(path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


async def test_recorded_mediation_with_a_caucus(recorded_factory):
    r = await recorded_factory(segment_seconds=4.0)
    await r.mediation()
    m = r.bot("M")
    await until(lambda: m.frames_from(r.bot("A").name) > 15 and m.frames_from(r.bot("B").name) > 15)

    # R14: recording off, media flowing: nothing is written, the recorder holds nothing
    before = _dir_bytes(r.recorder.root)
    await until(lambda: m.frames_from(r.bot("A").name) > 45)
    assert _dir_bytes(r.recorder.root) == before == 0
    assert r.recorder.stats()["frames"] == 0 and r.recorder.writer.depth == 0

    for name in ("M", "A", "B"):
        r.run(name, type="record_consent", topic="recording", given=True)
    r.run("M", type="start_recording")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.sleep(0)
    sink = r.recorder.sessions[r.state.id]
    a_id, b_id = r.ids["A"], r.ids["B"]
    await until(lambda: loop.time() - t0 > 6 and sink.frames > 0, within=30)
    r.run("M", type="create_caucus", caucus="side-a")
    [moved] = r.run("M", type="move_to_caucus", caucus="side-a", side="A")
    caucus_from = moved.ts
    t1 = loop.time()
    await until(lambda: loop.time() - t1 > 4, within=30)
    [back, _closed] = r.run("M", type="close_caucus", caucus="side-a")
    caucus_to = back.ts
    t2 = loop.time()
    await until(lambda: loop.time() - t2 > 6, within=30)
    [stopped] = r.run("M", type="stop_recording")
    assert stopped.actor == r.ids["M"]
    await r.settled()

    events = r.service.events(r.state.id)
    assert verify_chain(events) == []
    man = manifest(events)
    assert [run["started_by"] for run in man["runs"]] == [r.ids["M"]]
    assert verify_files(man, r.directory()) == []
    segments = man["segments"]
    assert {s["participant"] for s in segments} == {a_id, b_id}  # M published nothing
    by_person = {pid: [s for s in segments if s["participant"] == pid] for pid in (a_id, b_id)}
    assert len(by_person[a_id]) >= 3 and len(by_person[b_id]) >= 3
    assert man["gaps"] == []

    for pid, name in ((a_id, "A"), (b_id, "B")):
        video = audio = media = 0.0
        for s in by_person[pid]:
            stored = (r.directory() / s["file"]).read_bytes()
            assert hashlib.sha256(stored).hexdigest() == s["sha256"]
            webm = r.open_segment(s["file"])
            assert hashlib.sha256(webm).hexdigest() == s["plain_sha256"]
            assert b"webm" in webm[:64] and webm not in stored  # nothing in the clear
            got = decode(webm)
            assert got["video"] == s["video_frames"] > 0
            assert got["tags"] == {r.bot(name).tag}, "each file carries its own participant"
            if got["audio_s"] >= 0.5:  # a segment cut just before the stop may be a frame long
                own = tone_power(got["samples"], TONES[name])
                other = tone_power(got["samples"], TONES["B" if name == "A" else "A"])
                assert own > 100 * other, (name, own, other)
            assert s["space"] == "joint"
            # R9: nothing from the caucus in a joint segment
            if pid == a_id:
                assert s["wall_end"] <= caucus_from + 0.2 or s["wall_start"] >= caucus_to - 0.2
            span = s["media_end"] - s["media_start"]
            media += span + 1 / 15
            video += got["video"]
            audio += got["audio_s"]
        assert abs(video / 15 - media) <= 0.05 * media, (name, video, media)
        assert abs(audio - media) <= 0.05 * media, (name, audio, media)
    # B stayed in the joint room: B's segments run through the caucus without a hole
    b = sorted(by_person[b_id], key=lambda s: s["index"])
    assert b[0]["wall_start"] < caucus_from and b[-1]["wall_end"] > caucus_to
    assert all(n["wall_start"] - p["wall_end"] < 0.5 for p, n in zip(b, b[1:], strict=False))
