"""The composite export from a real recording: two aiortc bots with distinct tones and colours are
recorded by the real recorder, then ``Exports`` runs the nice-19 child, which seals the grid; the
test decrypts it with recording/'s own code and decodes it with PyAV (grid size, duration within
5 %, both tones in the mixed audio), and checks nothing unencrypted reached the disk."""

from __future__ import annotations

import asyncio
import hashlib
import io

import av

from recording.export import TILE_H, TILE_W, Exports, exports, read_export
from recording.manifest import manifest
from recording.sealed import MAGIC
from rooms.commands import decode_command
from rooms.ledger import verify_chain
from tests.integration.recording.conftest import TONES, tone_power, until


def _mixed_audio(webm: bytes):
    """(seconds of audio, float samples of the middle of it, mono)."""
    import array

    samples = array.array("f")
    seconds = 0.0
    with av.open(io.BytesIO(webm)) as c:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=48000)
        for frame in c.decode(audio=0):
            seconds += frame.samples / frame.sample_rate
            for out in resampler.resample(frame):
                samples.frombytes(bytes(out.planes[0])[: out.samples * 4])
    return seconds, samples


async def test_export_of_a_real_recording(recorded_factory):
    r = await recorded_factory(segment_seconds=3.0)
    await r.mediation()
    m = r.bot("M")
    await until(lambda: m.frames_from(r.bot("A").name) > 15 and m.frames_from(r.bot("B").name) > 15)
    for name in ("M", "A", "B"):
        r.run(name, type="record_consent", topic="recording", given=True)
    r.run("M", type="start_recording")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await until(lambda: loop.time() - t0 > 7, within=30)
    r.run("M", type="stop_recording")
    await r.settled()

    segments = manifest(r.service.events(r.state.id))["segments"]
    assert {s["participant"] for s in segments} == {r.ids["A"], r.ids["B"]}
    before = {p.name for p in r.directory().iterdir()}

    jobs = Exports(
        r.recorder.root,
        r.master,
        lambda sid, actor, raw: r.service.execute(sid, actor, decode_command(raw)),
    )
    job = jobs.start(r.state.id, "wang", "mediator", "court asked for one file", segments, 0)
    seen = []
    await until(lambda: seen.append(job.progress) or job.state in ("done", "failed"), within=90)
    assert job.state == "done", job.error
    assert job.nice == 19, "the child lowers its own priority before any work"
    assert any(0 < p < 1 for p in seen), "progress is reported on the way"

    # the ledger records it, with the actor, the hash of the stored file and the sources
    events = r.service.events(r.state.id)
    assert verify_chain(events) == []
    [made] = exports(events)
    assert made["actor"] == "staff:wang" and made["reason"] == "court asked for one file"
    assert sorted(made["sources"]) == sorted(s["file"] for s in segments)
    stored = (r.directory() / made["file"]).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == made["sha256"] and len(stored) == made["bytes"]

    # nothing unencrypted on disk: every new file is sealed (or the wrapped key), no temp left
    after = {p.name for p in r.directory().iterdir()}
    assert after - before == {made["file"]}
    for p in r.directory().iterdir():
        data = p.read_bytes()
        assert p.name == "datakey.json" or data[:8] == MAGIC, p.name
        assert b"webm" not in data[:4096].lower() and b"OpusHead" not in data

    webm = read_export(r.recorder.root, r.master, r.state.id, made)
    assert hashlib.sha256(webm).hexdigest() == made["plain_sha256"]
    expected = max(s["media_end"] for s in segments) - min(s["media_start"] for s in segments)
    with av.open(io.BytesIO(webm)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (2 * TILE_W, TILE_H)
        frames = [f for f in c.decode(video=0)]
    video_s = len(frames) / 10
    assert abs(video_s - expected) <= 0.05 * expected, (video_s, expected)
    # each tile shows its participant's colour: A red on the left, B blue on the right
    order = made.get("tiles") or job.result["tiles"]
    mid = frames[len(frames) // 2].to_rgb()
    row = bytes(mid.planes[0])[(TILE_H // 2) * mid.planes[0].line_size :]
    left, right = row[(TILE_W // 2) * 3 : (TILE_W // 2) * 3 + 3], row[(TILE_W * 3 // 2) * 3 :][:3]
    colour = {r.ids["A"]: "red", r.ids["B"]: "blue"}
    for px, pid in ((left, order[0]), (right, order[1])):
        red, _, blue = px
        assert (red > blue + 60) if colour[pid] == "red" else (blue > red + 60), (pid, tuple(px))

    audio_s, samples = _mixed_audio(webm)
    assert abs(audio_s - expected) <= 0.05 * expected, (audio_s, expected)
    middle = samples[len(samples) // 2 - 24000 : len(samples) // 2 + 24000]
    a, b = tone_power(middle, TONES["A"]), tone_power(middle, TONES["B"])
    off = tone_power(middle, 700.0)
    assert a > 100 * off and b > 100 * off, (a, b, off)
    assert 0.05 < a / b < 20, "both tones are in the mix at comparable levels"
    await jobs.aclose()


def _webm(seconds: float, start: float, color: tuple[int, int, int], tone: float) -> bytes:
    """A segment as the recorder writes it: VP8 64x48 10 fps + Opus, media-time timestamps."""
    import array
    import fractions
    import math

    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        v = out.add_stream("libvpx", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream("libopus", rate=48000, layout="stereo")
        for i in range(int(seconds * 10)):
            frame = av.VideoFrame(64, 48, "rgb24")
            frame.planes[0].update(bytes(color) * (64 * 48))
            frame.pts, frame.time_base = round(start * 10) + i, fractions.Fraction(1, 10)
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
        for i in range(int(seconds * 50)):
            pcm = array.array("h")
            for k in range(960):
                x = int(8000 * math.sin(2 * math.pi * tone * (i * 960 + k) / 48000))
                pcm.extend((x, x))
            frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
            frame.planes[0].update(pcm.tobytes())
            frame.sample_rate = 48000
            frame.pts, frame.time_base = (
                round(start * 48000) + i * 960,
                fractions.Fraction(1, 48000),
            )
            for packet in a.encode(frame):
                out.mux(packet)
        for packet in a.encode():
            out.mux(packet)
    return buf.getvalue()


def test_a_gap_stays_black_and_silent_and_three_people_make_a_2x2_grid():
    """compose() alone (no process): A is recorded 0-2 s and 4-6 s (a caucus between), B and C
    throughout; in the gap A's tile is black and A's tone is absent from the mix."""
    from recording.export import compose

    blobs, segs = {}, []
    people = {
        "a": ((220, 40, 40), 440.0),
        "b": ((40, 40, 220), 1000.0),
        "c": ((40, 200, 40), 1500.0),
    }
    spans = {"a": [(0.0, 2.0), (4.0, 2.0)], "b": [(0.0, 6.0)], "c": [(0.0, 6.0)]}
    for pid, parts in spans.items():
        for i, (start, length) in enumerate(parts):
            name = f"{pid}-{i:06d}.seg"
            blobs[name] = _webm(length, start, *people[pid])
            segs.append(
                {
                    "file": name,
                    "participant": pid,
                    "media_start": start,
                    "media_end": start + length,
                }
            )
    webm, facts = compose(segs, lambda r: blobs[r["file"]])
    assert facts["tiles"] == ["a", "b", "c"] and (facts["width"], facts["height"]) == (
        2 * TILE_W,
        2 * TILE_H,
    )
    with av.open(io.BytesIO(webm)) as c:
        frames = [f.to_rgb() for f in c.decode(video=0)]
    assert abs(len(frames) / 10 - 6.0) <= 0.3

    def pixel(frame, tile):
        x = (tile % 2) * TILE_W + TILE_W // 2
        y = (tile // 2) * TILE_H + TILE_H // 2
        plane = frame.planes[0]
        at = y * plane.line_size + 3 * x
        return tuple(bytes(plane)[at : at + 3])

    in_gap, recorded = frames[30], frames[10]  # t = 3 s, t = 1 s
    assert max(pixel(in_gap, 0)) < 40, "A's tile is black during A's gap"
    assert pixel(recorded, 0)[0] > 150 and pixel(in_gap, 1)[2] > 150 and pixel(in_gap, 2)[1] > 150
    assert max(pixel(in_gap, 3)) < 40, "the fourth tile of a 2x2 grid for three is empty"

    _, samples = _mixed_audio(webm)
    gap = samples[int(2.5 * 48000) : int(3.5 * 48000)]
    both = samples[int(0.5 * 48000) : int(1.5 * 48000)]
    for hz in (1000.0, 1500.0):
        assert tone_power(gap, hz) > 100 * tone_power(gap, 700.0)
    assert tone_power(gap, 440.0) * 100 < tone_power(both, 440.0), "A is silent in the gap"
    assert tone_power(both, 440.0) > 100 * tone_power(both, 700.0)
