"""recording/mux.py writes WebM itself: what it writes must decode with PyAV (FFmpeg) exactly as
the frames went in — every frame, on the session's timeline, the picture size from the keyframe,
seekable to a keyframe, gaps kept, a clock that steps back kept in order."""

from __future__ import annotations

import fractions
import gc
import io
import sys

import av
import pytest

from recording.mux import SegmentMuxer


def vp8_frames(count: int, keyframe_every: int, size=(96, 64)) -> list[tuple[bytes, bool]]:
    """Real VP8 frames (libvpx), a keyframe every ``keyframe_every``."""
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = size[0], size[1], "yuv420p"
    enc.time_base = fractions.Fraction(1, 15)
    enc.gop_size = keyframe_every
    enc.options = {"deadline": "realtime", "cpu-used": "8"}
    out = []
    for i in range(count):
        frame = av.VideoFrame(size[0], size[1], "rgb24")
        frame.planes[0].update(bytes((i * 7 + j) % 256 for j in range(size[0] * size[1] * 3)))
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        out += [(bytes(p), p.is_keyframe) for p in enc.encode(frame)]
    out += [(bytes(p), p.is_keyframe) for p in enc.encode(None)]
    return out


def opus_packets(count: int) -> list[bytes]:
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = 48000, "stereo", "s16"
    out = []
    for i in range(count):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(bytes(960 * 4))
        frame.sample_rate, frame.pts = 48000, i * 960
        out += [bytes(p) for p in enc.encode(frame)]
    return out[:count]


def decoded(webm: bytes, kind: str) -> list:
    with av.open(io.BytesIO(webm)) as c:
        return list(c.decode(**{kind: 0}))


@pytest.fixture(scope="module")
def media():
    return vp8_frames(45, 15), opus_packets(150)


def segment(media, start: float, video_step: float = 1 / 15) -> tuple[SegmentMuxer, bytes]:
    video, audio = media
    mux = SegmentMuxer(None)
    for n, (data, key) in enumerate(video):
        for j in range(3):
            mux.add("audio", audio[3 * n + j], start + (3 * n + j) * 0.02, True)
        mux.add("video", data, start + n * video_step, key)
    return mux, mux.finish()


def test_every_frame_decodes_on_the_sessions_timeline(media):
    mux, webm = segment(media, 120.0)
    assert webm[:4] == b"\x1a\x45\xdf\xa3" and b"webm" in webm[:64]
    video = decoded(webm, "video")
    assert len(video) == mux.frames["video"] == 45
    assert video[0].key_frame and (video[0].width, video[0].height) == (96, 64) == mux.size
    assert [round(f.time, 3) for f in video] == [round(120 + n / 15, 3) for n in range(45)]
    audio = decoded(webm, "audio")
    assert mux.frames["audio"] == 135
    assert abs(audio[0].time - 120.0) < 0.001
    assert abs(sum(f.samples for f in audio) / 48000 - 135 * 0.02) < 0.01  # pre-skip: 6.5 ms
    assert mux.first == 120.0 and mux.last == pytest.approx(120 + 44 / 15)  # the last video


def test_a_player_can_seek_to_a_keyframe(media):
    _, webm = segment(media, 50.0)
    with av.open(io.BytesIO(webm)) as c:
        assert c.duration is not None and c.duration > 2_900_000  # microseconds, from Info
        c.seek(int(51.5 * av.time_base), any_frame=False)
        first = next(c.decode(video=0))
    assert first.key_frame and first.time == pytest.approx(51.0)  # the keyframe at frame 15


def test_a_pause_stays_a_gap_longer_than_a_cluster_can_hold(media):
    # 2.5 s between video frames: 45 frames span 110 s, past the 16-bit ms of one cluster
    mux, webm = segment(media, 10.0, video_step=2.5)
    times = [f.time for f in decoded(webm, "video")]
    assert times == pytest.approx([10.0 + 2.5 * n for n in range(45)])


def test_a_clock_stepping_back_keeps_the_order():
    video = vp8_frames(3, 15)
    mux = SegmentMuxer(None)
    for t, (data, key) in zip((5.0, 4.0, 4.5), video, strict=True):
        mux.add("video", data, t, key)
    times = [f.time for f in decoded(mux.finish(), "video")]
    assert times == sorted(times) and len(set(times)) == 3 and times[0] == 5.0
    # right after the session began, a step back would go below zero: the file starts at 0
    mux = SegmentMuxer(None)
    for t, (data, key) in zip((-0.2, 0.0, 0.1), video, strict=True):
        mux.add("video", data, t, key)
    assert [f.time for f in decoded(mux.finish(), "video")] == [0.0, 0.001, 0.1]


def test_audio_only_and_empty():
    mux = SegmentMuxer((320, 240))
    for i, p in enumerate(opus_packets(50)):
        mux.add("audio", p, 3.0 + i * 0.02, True)
    webm = mux.finish()
    with av.open(io.BytesIO(webm)) as c:  # both tracks declared, as in every segment
        assert [s.type for s in c.streams] == ["video", "audio"]
        assert c.streams.video[0].codec_context.width == 320
    assert len(decoded(webm, "audio")) == 50
    assert SegmentMuxer(None).finish() == b""


@pytest.mark.parametrize("length", [2, 122, 123, 124, 16378, 16379, 16380, 70_000])
def test_every_frame_size_is_stored_byte_for_byte(length):
    """A SimpleBlock's size field is 1, 2 or 3 bytes long (the muxer packs the usual 2-byte case
    in one go): frames on both sides of each boundary (a block is the frame plus 4 bytes) come
    back out of FFmpeg's demuxer as they went in, in time order."""
    video = vp8_frames(1, 15)[0][0]
    frames = [
        ("video", video, 1.0),
        ("audio", bytes((i * 7) % 251 for i in range(min(length, 1275))), 1.02),  # Opus' max
        ("video", b"\x01" + bytes(i % 253 for i in range(length - 1)), 1.0 + 1 / 15),
    ]
    mux = SegmentMuxer(None)
    for kind, data, t in frames:
        mux.add(kind, data, t, kind == "audio" or t == 1.0)
    with av.open(io.BytesIO(mux.finish())) as c:
        packets = [p for p in c.demux() if p.size]
        got = [(p.stream.type, bytes(p)) for p in packets]
        video_ms = [p.pts for p in packets if p.stream.type == "video"]  # audio: minus pre-skip
    assert got == [(kind, data) for kind, data, _ in frames]
    assert video_ms == [1000, 1067]


def test_an_open_segment_keeps_each_frames_bytes_and_nothing_else():
    """An open segment keeps the bytes it was handed (once, no copy) and, per frame, two array
    entries: not the queue's tuple, not the times' floats."""
    data = bytes(range(200)) * 3
    before = sys.getrefcount(data)
    mux = SegmentMuxer(None)
    gc.collect()
    tracked = len(gc.get_objects())
    for i in range(50):
        mux.add_queued([(1, "audio", data, i * 0.04 + k * 0.02, True, 5.0) for k in range(2)])
        mux.add("audio", data, 2 + i * 0.02, True)
    assert sys.getrefcount(data) == before + 150  # the bytes, referenced once per frame
    assert len(gc.get_objects()) - tracked < 10  # no tuple per frame
    assert mux.frames["audio"] == 150
    webm = mux.finish()
    assert sys.getrefcount(data) == before  # let go at the close
    with av.open(io.BytesIO(webm)) as c:
        assert [bytes(p) for p in c.demux(audio=0) if p.size] == [data] * 150
