"""The writer thread: muxing, encryption and disk writes, off the event loop.

The loop hands over frames through a queue and never waits: past ``max_frames`` frames in the
queue a frame is refused (the recorder drops it for the recording only and records a gap).
Opening and closing a segment are never refused, so a segment always ends. An open segment only
collects its frames, taken into it at each of the thread's turns: their bytes and two array
entries each (the queue's tuples live ~``BATCH``, not the segment's length); at its close it is
laid out as WebM in memory (recording/mux.py), sealed
(recording/sealed.py), written to a temporary name, fsync'd, renamed, the directory fsync'd —
one fsync pair per segment — then ``on_closed`` reports it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from recording.keys import DataKey, write_durably
from recording.mux import SegmentMuxer
from recording.sealed import seal

log = logging.getLogger("parley.recording")

BATCH = 0.1  # seconds between the thread's turns: frames wait at most this long in memory


@dataclass
class SegmentSpec:
    """What the recorder knows when it opens a segment."""

    session: str
    participant: str
    space: str
    index: int
    directory: Path
    key: Callable[[], DataKey]  # made on first use, in the writer thread
    size: tuple[int, int] | None = None

    @property
    def file(self) -> str:
        return f"{self.participant}-{self.index:06d}.seg"


@dataclass
class SegmentDone:
    spec: SegmentSpec
    frames: dict[str, int]
    media_start: float
    media_end: float
    wall_start: float
    wall_end: float
    bytes: int
    sha256: str
    plain_sha256: str
    size: tuple[int, int] | None = None
    kinds: list[str] = field(default_factory=list)
    key_id: str = ""

    def record(self) -> dict:
        """The ``record_segment`` command (rooms/commands.py) for the ledger."""
        s = self.spec
        return {
            "type": "record_segment",
            "participant": s.participant,
            "space": s.space,
            "kinds": self.kinds,
            "index": s.index,
            "file": s.file,
            "key_id": self.key_id,
            "media_start": round(self.media_start, 6),
            "media_end": round(self.media_end, 6),
            "wall_start": round(self.wall_start, 6),
            "wall_end": round(self.wall_end, 6),
            "video_frames": self.frames["video"],
            "audio_frames": self.frames["audio"],
            "bytes": self.bytes,
            "sha256": self.sha256,
            "plain_sha256": self.plain_sha256,
        }


Store = Callable[[Path, bytes], None]


class _Open:
    def __init__(self, spec: SegmentSpec) -> None:
        self.spec = spec
        # takes each turn's frames of this segment in one call: their bytes and times, not the
        # queue's tuples
        self.muxer = SegmentMuxer(spec.size)
        self.wall_start: float | None = None  # the server's clock at the first frame
        self.wall_end = 0.0  # and at the last

    def take(self, frames: list[tuple]) -> None:
        if self.wall_start is None:
            self.wall_start = frames[0][5]
        self.wall_end = frames[-1][5]
        self.muxer.add_queued(frames)


class Writer:
    def __init__(
        self,
        on_closed: Callable[[SegmentDone], None],
        on_failed: Callable[[SegmentSpec, Exception], None],
        *,
        max_frames: int = 10000,
        store: Store = write_durably,
    ) -> None:
        self._on_closed, self._on_failed = on_closed, on_failed
        self._store = store
        self.max_frames = max_frames
        # A deque, not a Queue: the loop appends without a lock or a thread wakeup per frame
        # (each wakeup hands the GIL over); the thread drains it every BATCH seconds. Each
        # counter is written by one side only, so no lock is needed.
        self._items: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._put_ops = self._done_ops = 0
        self._put_frames = self._done_frames = 0
        self.max_depth = 0
        self.segments_written = 0
        self.bytes_written = 0
        self.busy_seconds = 0.0  # thread CPU spent muxing, sealing, writing
        self.turned = time.monotonic()  # the thread's last turn (a stuck write stops it)
        self._open: dict[int, _Open] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="parley-recorder", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Frames handed over and not yet taken by the thread."""
        return self._put_frames - self._done_frames

    @property
    def pending(self) -> int:
        """Operations handed over and not finished (0: everything so far is on disk)."""
        return self._put_ops - self._done_ops

    # -- the loop's side: never blocks -------------------------------------------------------
    def open(self, handle: int, spec: SegmentSpec) -> None:
        self._put_ops += 1
        self._items.append(("open", handle, spec))

    def frame(
        self, handle: int, kind: str, data: bytes, media_time: float, key: bool, wall: float
    ) -> bool:
        depth = self._put_frames - self._done_frames
        if depth >= self.max_frames:
            return False
        if depth >= self.max_depth:
            self.max_depth = depth + 1
        self._put_frames += 1
        self._put_ops += 1
        self._items.append((handle, kind, data, media_time, key, wall))  # a frame: 6 fields
        return True

    def close(self, handle: int) -> None:
        self._put_ops += 1
        self._items.append(("close", handle, None))

    def stop(self, timeout: float = 30.0) -> None:
        """Finish everything queued (open segments are closed and written), then end."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    @property
    def native_id(self) -> int | None:
        """The thread's id for the OS (benches read its context switches)."""
        return self._thread.native_id

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stalled(self, seconds: float) -> bool:
        """Work is waiting and the thread has not taken a turn for ``seconds`` (a write stuck
        on a hung disk)."""
        return self.pending > 0 and time.monotonic() - self.turned > seconds

    # -- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(BATCH)
            self.turned = time.monotonic()
            stopping = self._stopping
            started = time.thread_time()
            items = self._items
            # this turn's frames per segment, taken into it at the turn's end (or before its
            # close): a frame's tuple lives ~BATCH, not the segment's length
            turn: dict[int, list[tuple]] = {}
            while items:
                item = items.popleft()
                try:
                    if len(item) == 6:
                        self._done_frames += 1
                        frames = turn.get(item[0])
                        if frames is None:
                            turn[item[0]] = [item]
                        else:
                            frames.append(item)
                    elif item[0] == "open":
                        self._open[item[1]] = _Open(item[2])
                    else:
                        self._take(item[1], turn.pop(item[1], None))
                        self._close(item[1])
                except Exception:  # noqa: BLE001 - the thread must outlive one bad segment
                    log.exception(
                        "recording writer: %s failed", "frame" if len(item) == 6 else item[0]
                    )
                self._done_ops += 1
            for handle, frames in turn.items():
                try:
                    self._take(handle, frames)
                except Exception:  # noqa: BLE001
                    log.exception("recording writer: frames failed")
            turn = item = frames = None  # no tuple of this turn outlives it
            if stopping:
                for h in list(self._open):
                    self._close(h)
            self.busy_seconds += time.thread_time() - started
            if stopping:
                return

    def _take(self, handle: int, frames: list[tuple] | None) -> None:
        seg = self._open.get(handle)
        if seg is not None and frames:
            seg.take(frames)

    def _close(self, handle: int) -> None:
        seg = self._open.pop(handle, None)
        if seg is None:
            return
        spec, muxer = seg.spec, seg.muxer
        wall_start, wall_end = seg.wall_start, seg.wall_end
        try:
            plain = muxer.finish()
            if not plain:
                return  # nothing arrived: no file, no record
            key = spec.key()
            sealed = seal(
                key,
                {"session": spec.session, "participant": spec.participant, "index": spec.index},
                plain,
            )
            spec.directory.mkdir(parents=True, exist_ok=True)
            self._store(spec.directory / spec.file, sealed.data)
        except Exception as exc:  # noqa: BLE001 - reported as a gap and a recorder failure
            log.exception("recording writer: segment %s not written", spec.file)
            self._on_failed(spec, exc)
            return
        self.segments_written += 1
        self.bytes_written += len(sealed.data)
        self._on_closed(
            SegmentDone(
                spec,
                dict(muxer.frames),
                muxer.first or 0.0,
                muxer.last or 0.0,
                wall_start or 0.0,
                wall_end,
                len(sealed.data),
                sealed.sha256,
                sealed.plain_sha256,
                muxer.size,
                [k for k in ("audio", "video") if muxer.frames[k]],
                key.id,
            )
        )
