"""The recorder: a hidden subscriber that cuts each participant's encoded media into segments.

The media engine hands it the frames of the plan's recorder edges (``FrameSink``), on the event
loop; it only timestamps them and queues them for the writer thread (recording/writer.py). Per
participant, a segment covers both tracks and lasts ``segment_seconds`` (then it ends at the next
video keyframe, so each segment plays alone; it asks the publisher for one if none came within
``KEYFRAME_GRACE`` of the segment's length), or ends when the
participant's recorder edges end (stop, a caucus, leaving). Media time is seconds since the
session was created, from RTP timestamps anchored at the first frame of each track: a pause in
what was sent stays a gap. A frame the writer cannot take is dropped for the recording only;
the loss is reported as a gap once frames flow again. Everything the ledger must know goes out
through ``report(session, command)``, always on the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from recording.keys import DataKey, MasterKey, write_durably
from recording.writer import SegmentDone, SegmentSpec, Store, Writer

log = logging.getLogger("parley.recording")

RATE = {"audio": 48000, "video": 90000}
REANCHOR = 2.0  # seconds between RTP time and arrival time before the track is re-anchored
KEYFRAME_RETRY = 1.0
# A due segment waits this share of its length for a keyframe the publisher sends anyway (its
# own interval, or one another subscriber asked for) before asking: each ask makes the publisher
# send a large frame to every subscriber, not only to the recorder. 0.3 covers encoders with a
# keyframe every 2-3 s (the bench's bots: 2 s), whose cuts then never ask; an encoder without
# periodic keyframes (a browser's) is asked 3 s late instead of 1 s, as often as before.
KEYFRAME_GRACE = 0.3
PROBE_SECONDS = 2.0  # health(): the recordings directory is probed at most this often
# health(): a probe still not back after this long means the disk hangs (storage: false). The
# probe runs in a thread of its own: on the event loop a hung (network) disk would stop the node.
PROBE_HUNG_SECONDS = 5.0
STALL_SECONDS = 30.0  # health(): work waiting and no turn of the writer thread for this long

Report = Callable[[str, dict], None]  # (session, raw server-only command)


class _Track:
    """RTP timestamps → media seconds, unwrapped, re-anchored when the publisher restarts."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.last_ts: int | None = None
        self.ticks = 0  # unwrapped ticks since the anchor
        self.anchor = 0.0

    def media_time(self, ts: int, arrival: float) -> float:
        first = self.last_ts is None
        if not first:
            step = (ts - self.last_ts) & 0xFFFFFFFF
            if step >= 0x80000000:
                step -= 0x100000000
            self.ticks += step
        self.last_ts = ts
        t = self.anchor + self.ticks / self.rate
        if first or abs(t - arrival) > REANCHOR:
            self.anchor, self.ticks, t = arrival, 0, arrival
        return t


class _Person:
    def __init__(self) -> None:
        self.tracks = {kind: _Track(rate) for kind, rate in RATE.items()}
        self.active: set[str] = set()
        self.handle: int | None = None
        self.index: int | None = None
        self.started = 0.0  # media time the open segment began
        self.asked = 0.0  # monotonic time of the last keyframe request
        self.resync = False  # video frames were dropped: wait for a keyframe
        self.size: tuple[int, int] | None = None
        self.dropped = 0
        self.dropped_kinds: set[str] = set()
        self.dropped_since = 0.0


class SessionRecorder:
    """The sink of one session (``media.sink.FrameSink``)."""

    def __init__(
        self,
        recorder: Recorder,
        session: str,
        *,
        epoch: float,
        space_of: Callable[[str], str],
        participant_of: Callable[[str], str],
        first_index: Callable[[str], int],
    ) -> None:
        self.recorder = recorder
        self.session = session
        self.directory = recorder.root / session
        self.epoch = epoch
        self._space_of = space_of
        self._participant_of = participant_of
        self._first_index = first_index
        self._key: DataKey | None = None
        self.people: dict[str, _Person] = {}
        # publisher -> (participant, person): on_frame runs ~2,000 times a second per 10 rooms
        self._publishers: dict[str, tuple[str, _Person]] = {}
        self._writer = recorder.writer
        self._put = recorder.writer.frame
        self._clock = recorder.clock
        self._segment_seconds = recorder.segment_seconds
        self._grace = recorder.segment_seconds * KEYFRAME_GRACE
        self.frames = 0
        self.bytes = 0  # encoded media handed to the writer
        self.dropped = 0

    def key(self) -> DataKey:
        """The session's data key; made (and its wrapped form written) in the writer thread."""
        if self._key is None:
            self._key = DataKey.for_session(self.recorder.master, self.directory, self.session)
        return self._key

    # -- FrameSink ----------------------------------------------------------------------------
    def on_frame(self, publisher: str, kind: str, frame) -> None:
        wall = self._clock()
        known = self._publishers.get(publisher)
        if known is None:
            pid = self._participant_of(publisher)
            person = self.people.get(pid)
            if person is None:
                person = self.people[pid] = _Person()
            known = self._publishers[publisher] = (pid, person)
        pid, person = known
        t = person.tracks[kind].media_time(frame.timestamp, wall - self.epoch)
        if kind not in person.active:
            person.active.add(kind)
        video, key = kind == "video", frame.is_keyframe
        if video and person.resync:
            if not key:
                self._drop(person, pid, kind, wall)
                return
            person.resync = False
        if person.handle is None:
            if video and not key:  # cannot start a segment here
                self._drop(person, pid, kind, wall)
                return
            self._open(person, pid, t)
        elif t - person.started >= self._segment_seconds:
            if "video" not in person.active or (video and key):
                self._close(person)
                self._open(person, pid, t)
            elif t - person.started >= self._segment_seconds + self._grace:
                self._ask_keyframe(person, publisher)  # none came by itself: ask for one
        data = frame.data
        if not self._put(person.handle, kind, data, t, key, wall):
            self._drop(person, pid, kind, wall)
            if video:
                person.resync = True
                self._ask_keyframe(person, publisher)
            return
        self.frames += 1
        self.bytes += len(data)
        if person.dropped:
            self._report_drops(person, pid, wall)

    def on_end(self, publisher: str, kind: str) -> None:
        pid = self._participant_of(publisher)
        person = self.people.get(pid)
        if person is None:
            return
        person.active.discard(kind)
        if not person.active:
            self._close(person)
            if person.dropped:
                self._report_drops(person, pid, self.recorder.clock())

    # -- segments -----------------------------------------------------------------------------
    def _open(self, person: _Person, pid: str, t: float) -> None:
        if person.index is None:
            person.index = self._first_index(pid)
        while (self.directory / f"{pid}-{person.index:06d}.seg").exists():
            person.index += 1  # written before a crash, never recorded: never overwritten
        spec = SegmentSpec(
            self.session, pid, self._space_of(pid), person.index, self.directory, self.key
        )
        spec.size = person.size
        person.index += 1
        person.handle = next(self.recorder.handles)
        person.started = t
        self.recorder.writer.open(person.handle, spec)

    def _close(self, person: _Person) -> None:
        if person.handle is not None:
            self.recorder.writer.close(person.handle)
            person.handle = None

    def close(self) -> None:
        """Close every open segment (the session ended or the recorder stops)."""
        wall = self.recorder.clock()
        for pid, person in self.people.items():
            self._close(person)
            person.active.clear()
            if person.dropped:
                self._report_drops(person, pid, wall)

    def _ask_keyframe(self, person: _Person, publisher: str) -> None:
        now = time.monotonic()
        if now - person.asked >= KEYFRAME_RETRY:
            person.asked = now
            self.recorder.keyframes_asked += 1
            self.recorder.request_keyframe(publisher)

    # -- losses -------------------------------------------------------------------------------
    def _drop(self, person: _Person, pid: str, kind: str, wall: float) -> None:
        if not person.dropped:
            person.dropped_since = wall
        person.dropped += 1
        person.dropped_kinds.add(kind)
        self.dropped += 1

    def _report_drops(self, person: _Person, pid: str, wall: float) -> None:
        gap = {
            "type": "record_gap",
            "reason": "queue_full",
            "participant": pid,
            "kinds": sorted(person.dropped_kinds),
            "wall_start": round(person.dropped_since, 6),
            "wall_end": round(wall, 6),
            "frames": person.dropped,
        }
        person.dropped, person.dropped_kinds = 0, set()
        self.recorder.report(self.session, gap)


class Recorder:
    """One per node: the writer thread, the master key and a sink per recorded session."""

    def __init__(
        self,
        root: Path,
        master: MasterKey,
        *,
        report: Report,
        request_keyframe: Callable[[str], None],
        segment_seconds: float = 10.0,
        max_frames: int = 10000,
        store: Store = write_durably,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self.master = master
        self._report = report
        self.request_keyframe = request_keyframe
        self.segment_seconds = segment_seconds
        self.clock = clock
        self.handles = itertools.count(1)
        self.sessions: dict[str, SessionRecorder] = {}
        self.failed: str | None = None
        self.gaps_reported = 0
        self.keyframes_asked = 0  # keyframe requests the sinks made (cuts, resyncs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._probed: tuple[float, bool] | None = None  # (when, writable) for health()
        self._probing: float | None = None  # when the probe now running started
        # the workers of one machine share the recordings directory: each probes its own file
        # (one name for all: a worker's unlink or rename removed another's file mid-probe, and
        # that worker failed to start or reported its disk unwritable)
        self._probe_name = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.writer = Writer(self._closed, self._failed, max_frames=max_frames, store=store)

    def start(self) -> None:
        """Bind to the running loop and check the directory can be written (R1: ready)."""
        self._loop = asyncio.get_running_loop()
        self.check_writable()
        self._probed = (time.monotonic(), True)  # just written: health() probes again later

    def check_writable(self) -> None:
        """Write, sync and remove a file of this recorder's own in the directory (OSError if it
        cannot): a node that cannot record does not start."""
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f".probe-{self._probe_name}"
        write_durably(probe, b"")
        probe.unlink()

    @property
    def healthy(self) -> bool:
        return self._loop is not None and self.writer.alive and self.failed is None

    def health(self) -> dict:
        """The node's recorder for ``/readyz`` (docs/recording.md, "Health"): started, the
        writer thread alive and not stuck, the recordings directory writable (a 4 KiB probe
        file, no fsync, at most every ``PROBE_SECONDS``, in a thread: the answer is the last
        probe's, and false while a probe has hung for ``PROBE_HUNG_SECONDS``), the queue below
        half its limit (past it frames are soon dropped). ``last_failure``: the last segment not
        written (kept for the operator; a node whose disk is writable again is ready again).
        Never waits on the disk."""
        w, now = self.writer, time.monotonic()
        probed, probing = self._probed, self._probing
        if probing is None and (probed is None or now - probed[0] >= PROBE_SECONDS):
            self._probing = now
            threading.Thread(
                target=self._probe_once, name="parley-ready-probe", daemon=True
            ).start()
        writer = w.alive and not w.stalled(STALL_SECONDS)
        backlogged = w.depth >= w.max_frames // 2
        storage = probed is not None and probed[1]
        if probing is not None and now - probing >= PROBE_HUNG_SECONDS:
            storage = False  # the disk does not answer
        return {
            "ok": self._loop is not None and writer and storage and not backlogged,
            "started": self._loop is not None,
            "writer": writer,
            "storage": storage,
            "queue_depth": w.depth,
            "queue_limit": w.max_frames,
            "backlogged": backlogged,
            "last_failure": self.failed,
        }

    def _probe_once(self) -> None:
        writable = self._probe()
        self._probed = (time.monotonic(), writable)
        self._probing = None

    def _probe(self) -> bool:
        path = self.root / f".ready-probe-{self._probe_name}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, bytes(4096))
            finally:
                os.close(fd)
            os.unlink(path)
        except OSError as exc:
            log.warning("recordings directory not writable: %s", exc)
            return False
        return True

    def session(self, session: str, **kw) -> SessionRecorder:
        sink = self.sessions.get(session)
        if sink is None:
            sink = self.sessions[session] = SessionRecorder(self, session, **kw)
        return sink

    def end_session(self, session: str) -> None:
        sink = self.sessions.pop(session, None)
        if sink is not None:
            sink.close()

    def report(self, session: str, command: dict) -> None:
        if command["type"] == "record_gap":
            self.gaps_reported += 1
        self._report(session, command)

    # -- from the writer thread ---------------------------------------------------------------
    def _closed(self, done: SegmentDone) -> None:
        self._on_loop(self._segment_closed, done)

    def _segment_closed(self, done: SegmentDone) -> None:
        sink = self.sessions.get(done.spec.session)
        if sink is not None and done.size:
            person = sink.people.get(done.spec.participant)
            if person is not None:
                person.size = done.size
        self.report(done.spec.session, done.record())

    def _failed(self, spec: SegmentSpec, exc: Exception) -> None:
        self._on_loop(self._segment_failed, spec, exc)

    def _segment_failed(self, spec: SegmentSpec, exc: Exception) -> None:
        self.failed = f"{type(exc).__name__}: {exc}"[:200]
        now = self.clock()
        gap = {"type": "record_gap", "reason": "write_failed", "participant": spec.participant}
        self.report(spec.session, gap | {"wall_start": now, "wall_end": now})
        self.report(
            spec.session, {"type": "report_recorder", "status": "failed", "reason": self.failed}
        )

    def _on_loop(self, fn, *args) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    # -- lifecycle ----------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close every open segment, let the writer finish them, deliver their records."""
        for session in list(self.sessions):
            self.end_session(session)
        await asyncio.get_running_loop().run_in_executor(None, self.writer.stop)
        await asyncio.sleep(0)  # the records the writer scheduled run before this returns

    def stats(self) -> dict:
        return {
            "sessions": len(self.sessions),
            "frames": sum(s.frames for s in self.sessions.values()),
            "frames_dropped": sum(s.dropped for s in self.sessions.values()),
            "bytes_in": sum(s.bytes for s in self.sessions.values()),
            "queue_depth": self.writer.depth,
            "queue_depth_max": self.writer.max_depth,
            "segments_written": self.writer.segments_written,
            "bytes_written": self.writer.bytes_written,
            "writer_cpu_seconds": round(self.writer.busy_seconds, 3),
            "gaps_reported": self.gaps_reported,
            "keyframes_asked": self.keyframes_asked,
        }
