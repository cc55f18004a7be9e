"""Where the recorder cuts a participant's segments, and when it asks the publisher for a
keyframe: the real Recorder and writer thread, frames fed on a simulated clock.

A keyframe the publisher sends anyway within the wait is where the cut goes (no ask: an ask makes
the publisher send a large frame to every subscriber); a publisher without periodic keyframes is
asked once per segment, after the wait; every segment starts on a keyframe."""

from __future__ import annotations

import itertools
import struct
from types import SimpleNamespace

from recording import recorder as recorder_module
from recording.keys import MasterKey
from recording.recorder import KEYFRAME_GRACE, KEYFRAME_RETRY, Recorder

FPS = 15
KEYFRAME = b"\x00\x00\x00\x9d\x01\x2a" + struct.pack("<HH", 640, 480) + bytes(200)
DELTA = b"\x01" + bytes(300)


class Frame:
    __slots__ = ("timestamp", "is_keyframe", "data")

    def __init__(self, timestamp: int, is_keyframe: bool, data: bytes) -> None:
        self.timestamp, self.is_keyframe, self.data = timestamp, is_keyframe, data


async def _record(
    tmp_path, monkeypatch, seconds: float, gop: int | None, start: float, answer: bool = True
):
    """``seconds`` of one participant's VP8 (a keyframe every ``gop`` frames, or only the first
    and the asked ones) and Opus, the first frame ``start`` s after the session's epoch. Returns
    (segment records, media times of the keyframe asks)."""
    now = [1_800_000_000.0]
    epoch = now[0]
    asks: list[float] = []
    wanted = [False]
    records: list[dict] = []
    # the ask's retry interval runs on the same simulated clock
    monkeypatch.setattr(recorder_module, "time", SimpleNamespace(monotonic=lambda: now[0]))

    def ask(publisher: str) -> None:
        assert publisher == "pub-1"
        asks.append(now[0] - epoch)
        wanted[0] = answer

    rec = Recorder(
        tmp_path / "recordings",
        MasterKey.load(tmp_path),
        report=lambda s, c: records.append(c) if c["type"] == "record_segment" else None,
        request_keyframe=ask,
        segment_seconds=10.0,
        max_frames=10**6,
        clock=lambda: now[0],
    )
    rec.start()
    sink = rec.session(
        "s-1",
        epoch=epoch,
        space_of=lambda pid: "joint",
        participant_of=lambda publisher: "p-1",
        first_index=lambda pid: 0,
    )
    for n in range(int(seconds * FPS)):
        now[0] = epoch + start + n / FPS
        key = n == 0 or (gop is not None and n % gop == 0) or wanted[0]
        wanted[0] = False
        sink.on_frame("pub-1", "video", Frame(n * 90000 // FPS, key, KEYFRAME if key else DELTA))
        for j in range(3):  # Opus of the same 66.7 ms, after the picture
            sink.on_frame("pub-1", "audio", Frame(n * 3200 + j * 1066, True, b"\xfc\x00\x01"))
    await rec.aclose()
    records.sort(key=lambda r: r["index"])
    return records, asks


async def test_a_keyframe_exactly_one_length_later_is_the_cut_and_nothing_is_asked(
    tmp_path, monkeypatch
):
    # a 2 s GOP and 10 s segments (the bench's bots): every fifth keyframe is due to the tick
    for start in (0.37, 0.01, 1.2345):
        records, asks = await _record(tmp_path / str(start), monkeypatch, 41.0, 2 * FPS, start)
        assert asks == []
        lengths = [r["media_end"] - r["media_start"] for r in records]
        assert len(records) == 5, lengths
        starts = [round(r["media_start"] - records[0]["media_start"], 6) for r in records]
        assert starts == [0.0, 10.0, 20.0, 30.0, 40.0]
        assert all(r["video_frames"] for r in records)


async def test_a_natural_keyframe_within_the_wait_is_awaited_not_asked_for(tmp_path, monkeypatch):
    # a 2.8 s GOP: the keyframe after 10 s comes up to 2.8 s late, inside the wait
    records, asks = await _record(tmp_path, monkeypatch, 50.0, 42, 0.5)
    assert asks == []
    starts = [r["media_start"] - records[0]["media_start"] for r in records]
    assert all(round(s / 2.8, 6).is_integer() for s in starts), starts
    assert all(10.0 <= b - a <= 10.0 + 2.8 + 1e-6 for a, b in itertools.pairwise(starts)), starts


async def test_a_publisher_without_periodic_keyframes_is_asked_once_a_segment(
    tmp_path, monkeypatch
):
    records, asks = await _record(tmp_path, monkeypatch, 38.0, None, 0.25)
    wait = 10.0 * KEYFRAME_GRACE
    assert len(asks) == 2 and len(records) == 3, (asks, records)
    starts = [r["media_start"] for r in records]
    for ask, cut in zip(asks, starts[1:], strict=True):
        assert abs(cut - ask) < 1.5 / FPS  # the answer is where the cut goes
    assert all(abs((b - a) - (10.0 + wait)) < 2 / FPS for a, b in itertools.pairwise(starts))


async def test_an_unanswered_ask_is_repeated_and_the_segment_stays_open(tmp_path, monkeypatch):
    records, asks = await _record(tmp_path, monkeypatch, 20.0, None, 0.0, answer=False)
    assert len(records) == 1  # no keyframe ever came: one segment, closed at the end
    first = 10.0 + 10.0 * KEYFRAME_GRACE
    assert abs(asks[0] - first) < 1 / FPS
    steps = [b - a for a, b in itertools.pairwise(asks)]
    assert len(asks) >= 5 and all(abs(d - KEYFRAME_RETRY) < 1.5 / FPS for d in steps), asks
