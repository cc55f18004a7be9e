"""The composite export: one WebM per session — every participant's video in a grid, everyone's
audio mixed — made by a separate low-priority process and sealed like the segments.

Why a process: decoding and encoding a whole session is seconds to minutes of CPU; the server's
event loop must never do it, and a thread would still compete with forwarding for the GIL. The
child (``python -m recording.export``) sets its own nice value to 19 before any work, reads one
job as JSON on stdin (the session's data key travels only through that pipe, never on the command
line or the disk), decrypts and checks each segment in memory, composes, encodes, muxes into
memory (``io.BytesIO``), seals the WebM with the session's data key (``recording/sealed.py``) and
writes only the sealed bytes (``keys.write_durably``: the temporary file holds sealed bytes too).
It reports progress as JSON lines on stdout. The parent (``Exports``) reads them, keeps the
progress for the review page, and records ``recording.exported`` (file, sources, both hashes,
size, reason, who) in the ledger when the child is done — the ledger is the record of the export.

The composite: tiles of ``TILE_W``×``TILE_H`` (each participant's picture scaled to the tile,
black where they have no segment), ``cols = ceil(sqrt(n))`` columns, participants in the order of
their first segment (left to right, top to bottom); ``FPS`` frames per second, VP8; audio mixed
with FFmpeg's ``amix`` (no normalisation, so a lone speaker keeps their level), mono Opus 48 kHz.
Time 0 of the export is the media time of the first recorded frame; a gap stays silent and black.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import hashlib
import io
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("parley.recording")

TILE_W, TILE_H = 320, 240
FPS = 10
RATE = 48000
CHUNK = 960  # samples per mixed audio frame (20 ms)
NICE = 19
VIDEO_BITRATE_PER_TILE = 250_000
AUDIO_BITRATE = 48_000
EXPORT_PREFIX = "export-"
EXPORT_SUFFIX = ".exp"
_ROOT = str(Path(__file__).resolve().parent.parent)  # so the child imports this package


def grid(n: int) -> tuple[int, int]:
    """(columns, rows) of the grid for ``n`` participants: as square as possible, wider first."""
    if n <= 0:
        return 1, 1
    cols = math.ceil(math.sqrt(n))
    return cols, math.ceil(n / cols)


def export_name(index: int) -> str:
    return f"{EXPORT_PREFIX}{index:06d}{EXPORT_SUFFIX}"


def exports(events) -> list[dict]:
    """The session's exports, from its ledger (``recording.exported``), each with its seq, time
    and actor."""
    return [
        {**e.data, "seq": e.seq, "ts": e.ts, "actor": e.actor}
        for e in events
        if e.type == "recording.exported"
    ]


# -- the child: decode, compose, mix, encode, seal ----------------------------------------------
class ExportError(Exception):
    pass


def _open_segment(directory: Path, key, record: dict) -> bytes:
    """The WebM of one segment, checked against its ledger record (stored hash, GCM, plain hash)."""
    from recording.sealed import open_sealed

    try:
        data = (directory / record["file"]).read_bytes()
    except FileNotFoundError:
        raise ExportError(f"{record['file']} is not on disk") from None
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise ExportError(f"{record['file']} does not match the ledger")
    _, plain = open_sealed(key, data)
    if hashlib.sha256(plain).hexdigest() != record["plain_sha256"]:
        raise ExportError(f"{record['file']} does not match the ledger")
    return plain


class _Track:
    """One participant: their segments in media-time order, decoded lazily, one at a time."""

    def __init__(self, records: list[dict], opener: Callable[[dict], bytes]) -> None:
        self.records = sorted(records, key=lambda r: r["media_start"])
        self.opener = opener
        self.video = self._video()
        self.next_video = next(self.video, None)
        self.shown = None  # (frame scaled to the tile, segment end)
        self.audio = self._audio()
        self.pending = bytearray()  # s16 mono from sample ``pending_at`` of the export
        self.pending_at = 0
        self.audio_done = False

    def _video(self) -> Iterator[tuple[float, float, object]]:
        import av

        for r in self.records:
            with av.open(io.BytesIO(self.opener(r))) as c:
                if not c.streams.video:
                    continue
                for frame in c.decode(video=0):
                    if frame.time is None:
                        continue
                    tile = frame.reformat(width=TILE_W, height=TILE_H, format="yuv420p")
                    yield frame.time, r["media_end"], tile

    def _audio(self) -> Iterator[tuple[float, bytes]]:
        import av

        for r in self.records:
            with av.open(io.BytesIO(self.opener(r))) as c:
                if not c.streams.audio:
                    continue
                resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
                for frame in c.decode(audio=0):
                    if frame.time is None:
                        continue
                    at = frame.time
                    for out in resampler.resample(frame):
                        yield at, bytes(out.planes[0])[: out.samples * 2]
                        at += out.samples / RATE

    def tile_at(self, t: float):
        """The tile to show at media time ``t``: the last frame at or before it, while its segment
        lasts; None (black) otherwise."""
        while self.next_video is not None and self.next_video[0] <= t + 1e-6:
            _, end, tile = self.next_video
            self.shown = (tile, end)
            self.next_video = next(self.video, None)
        if self.shown is None or t > self.shown[1] + 0.5 / FPS:
            return None
        return self.shown[0]

    def samples(self, t0: float, first: int, count: int) -> bytes:
        """``count`` s16 samples from sample ``first`` of the export (time 0 = ``t0``), silence
        where this participant has none."""
        end = first + count
        while not self.audio_done and self.pending_at + len(self.pending) // 2 < end:
            item = next(self.audio, None)
            if item is None:
                self.audio_done = True
                break
            at, pcm = item
            pos = round((at - t0) * RATE)
            have = self.pending_at + len(self.pending) // 2
            if pos > have:  # a gap: silence
                self.pending += bytes(2 * (pos - have))
            elif pos < have:  # overlap (a rounding or a re-anchor): keep what is there
                pcm = pcm[2 * (have - pos) :]
            self.pending += pcm
        # drop what is before `first`, then take `count`
        if self.pending_at < first:
            cut = min(len(self.pending), 2 * (first - self.pending_at))
            del self.pending[:cut]
            self.pending_at = first
        out = bytes(self.pending[: 2 * count])
        del self.pending[: 2 * count]
        self.pending_at += len(out) // 2
        return out + bytes(2 * count - len(out))


def _compose(out, tiles: list, cols: int) -> None:
    """Copy each tile's planes into the composite frame ``out`` (yuv420p), black where None."""
    for p in range(3):
        plane = out.planes[p]
        line, sub = plane.line_size, (1 if p else 0)
        tw, th = TILE_W >> sub, TILE_H >> sub
        buf = bytearray((b"\x80" if p else b"\x10") * plane.buffer_size)
        for i, tile in enumerate(tiles):
            if tile is None:
                continue
            src = tile.planes[p]
            data, sline = bytes(src), src.line_size
            x0, y0 = (i % cols) * tw, (i // cols) * th
            for y in range(th):
                at = (y0 + y) * line + x0
                buf[at : at + tw] = data[y * sline : y * sline + tw]
        plane.update(bytes(buf))


def compose(
    segments: list[dict],
    opener: Callable[[dict], bytes],
    progress: Callable[[float], None] = lambda f: None,
) -> tuple[bytes, dict]:
    """The composite WebM of these segment records (each opened by ``opener``) and its facts
    (width, height, seconds, participants). Pure CPU and memory: no file is touched."""
    import av
    import av.filter

    if not segments:
        raise ExportError("no segments to export")
    order: list[str] = []
    for r in sorted(segments, key=lambda r: (r["media_start"], r["participant"])):
        if r["participant"] not in order:
            order.append(r["participant"])
    tracks = [_Track([r for r in segments if r["participant"] == p], opener) for p in order]
    t0 = min(r["media_start"] for r in segments)
    t1 = max(r["media_end"] for r in segments)
    seconds = max(t1 - t0, 1.0 / FPS)
    cols, rows = grid(len(order))
    width, height = cols * TILE_W, rows * TILE_H

    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as container:
        vs = container.add_stream("libvpx", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.bit_rate = VIDEO_BITRATE_PER_TILE * len(order)
        vs.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        aus = container.add_stream("libopus", rate=RATE, layout="mono")
        aus.bit_rate = AUDIO_BITRATE

        graph = av.filter.Graph()
        srcs = [
            graph.add_abuffer(
                format="s16", sample_rate=RATE, layout="mono", time_base=fractions.Fraction(1, RATE)
            )
            for _ in tracks
        ]
        mix = graph.add("amix", f"inputs={len(tracks)}:normalize=0:duration=longest")
        sink = graph.add("abuffersink")
        for i, s in enumerate(srcs):
            s.link_to(mix, 0, i)
        mix.link_to(sink)
        graph.configure()

        n_video = math.ceil(seconds * FPS)
        n_audio = math.ceil(seconds * RATE / CHUNK)
        a_done = 0
        last_report = -1.0
        for k in range(n_video):
            t = t0 + k / FPS
            frame = av.VideoFrame(width, height, "yuv420p")
            _compose(frame, [tr.tile_at(t) for tr in tracks], cols)
            frame.pts, frame.time_base = k, fractions.Fraction(1, FPS)
            for packet in vs.encode(frame):
                container.mux(packet)
            # audio up to the end of this video frame
            upto = min(n_audio, math.ceil((k + 1) / FPS * RATE / CHUNK))
            while a_done < upto:
                for tr, src in zip(tracks, srcs, strict=True):
                    pcm = tr.samples(t0, a_done * CHUNK, CHUNK)
                    af = av.AudioFrame(format="s16", layout="mono", samples=CHUNK)
                    af.planes[0].update(pcm)
                    af.sample_rate = RATE
                    af.pts, af.time_base = a_done * CHUNK, fractions.Fraction(1, RATE)
                    src.push(af)
                a_done += 1
                _drain(sink, aus, container)
            done = (k + 1) / n_video
            if done - last_report >= 0.01 or k == n_video - 1:
                progress(done)
                last_report = done
        for src in srcs:
            src.push(None)
        _drain(sink, aus, container)
        for packet in vs.encode():
            container.mux(packet)
        for packet in aus.encode():
            container.mux(packet)
    facts = {"width": width, "height": height, "seconds": round(seconds, 3), "tiles": order}
    return buf.getvalue(), facts


def _drain(sink, stream, container) -> None:
    import av

    while True:
        try:
            mixed = sink.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return
        mixed.pts = None  # the encoder numbers the samples itself
        for packet in stream.encode(mixed):
            container.mux(packet)


def run_job(job: dict, emit: Callable[[dict], None]) -> dict:
    """One export in this process: open, compose, seal, write durably. Returns the facts that go
    into ``recording.exported``."""
    from recording.keys import DataKey, write_durably
    from recording.sealed import seal

    directory = Path(job["root"]) / job["session"]
    key = DataKey(bytes.fromhex(job["data_key"]))
    started = time.monotonic()
    plain, facts = compose(
        job["segments"],
        lambda r: _open_segment(directory, key, r),
        lambda f: emit({"progress": round(f * 0.98, 4)}),
    )
    sealed = seal(
        key, {"session": job["session"], "participant": "export", "index": job["index"]}, plain
    )
    write_durably(directory / job["file"], sealed.data)
    return {
        "file": job["file"],
        "sources": [r["file"] for r in job["segments"]],
        "key_id": key.id,
        "bytes": len(sealed.data),
        "sha256": sealed.sha256,
        "plain_sha256": sealed.plain_sha256,
        "width": facts["width"],
        "height": facts["height"],
        "seconds": facts["seconds"],
        "tiles": facts["tiles"],
        "cpu_seconds": round(time.process_time(), 2),
        "wall_seconds": round(time.monotonic() - started, 2),
    }


def main() -> int:
    """The child process: nice 19 first, one job from stdin, JSON lines on stdout."""
    os.setpriority(os.PRIO_PROCESS, 0, NICE)

    def emit(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    emit({"nice": os.getpriority(os.PRIO_PROCESS, 0), "pid": os.getpid()})
    try:
        job = json.loads(sys.stdin.readline())
        emit({"done": run_job(job, emit)})
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        emit({"error": f"{type(exc).__name__}: {exc}"[:300]})
        return 1
    return 0


# -- the parent: one job at a time per node, progress for the page --------------------------------
@dataclass
class Job:
    session: str
    username: str
    grant: str
    reason: str
    file: str
    state: str = "queued"  # queued, running, done, failed
    progress: float = 0.0
    error: str = ""
    nice: int | None = None
    pid: int | None = None
    result: dict = field(default_factory=dict)
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # set when done or failed

    def public(self) -> dict:
        return {
            "state": self.state,
            "progress": round(self.progress, 3),
            "file": self.file,
            "error": self.error,
        }


class Exports:
    """Starts export children, one at a time on this node, and records each finished export.

    ``record(session, actor, raw)`` appends the ``record_export`` command (the server's
    ``SessionService.execute`` after ``decode_command``)."""

    def __init__(self, root: Path, master, record: Callable[[str, str, dict], None]) -> None:
        self.root, self.master, self.record = root, master, record
        self.jobs: dict[str, Job] = {}
        self._one = asyncio.Semaphore(1)
        self._tasks: set[asyncio.Task] = set()

    def job(self, session: str) -> Job | None:
        return self.jobs.get(session)

    def busy(self, session: str) -> bool:
        job = self.jobs.get(session)
        return job is not None and job.state in ("queued", "running")

    def start(
        self, session: str, username: str, grant: str, reason: str, segments: list[dict], index: int
    ) -> Job:
        """Queue an export of ``segments`` (their ledger records); the caller checked the grant
        and that none is running for this session."""
        job = Job(session, username, grant, reason, export_name(index))
        self.jobs[session] = job
        task = asyncio.get_running_loop().create_task(self._run(job, segments, index))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: Job, segments: list[dict], index: int) -> None:
        from recording.keys import DataKey

        async with self._one:
            job.state = "running"
            try:
                await self._child(job, segments, index, DataKey)
            except Exception as exc:  # noqa: BLE001 - the page shows it; the server goes on
                log.warning("export of %s failed: %s", job.session, exc)
                job.state, job.error = "failed", str(exc)[:300]
            finally:
                job.ended.set()

    async def _child(self, job: Job, segments: list[dict], index: int, DataKey) -> None:
        directory = self.root / job.session
        loop = asyncio.get_running_loop()
        key = await loop.run_in_executor(
            None, DataKey.for_session, self.master, directory, job.session
        )
        request = {
            "root": str(self.root),
            "session": job.session,
            "data_key": key.key.hex(),
            "index": index,
            "file": job.file,
            "segments": [
                {k: r[k] for k in ("file", "participant", "media_start", "media_end")}
                | {"sha256": r["sha256"], "plain_sha256": r["plain_sha256"]}
                for r in segments
            ],
        }
        env = {**os.environ, "PYTHONPATH": _ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "recording.export",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
            limit=1 << 20,
        )
        job.pid = proc.pid
        try:
            proc.stdin.write((json.dumps(request) + "\n").encode())
            await proc.stdin.drain()
            proc.stdin.close()
            done = None
            while line := await proc.stdout.readline():
                msg = json.loads(line)
                if "nice" in msg:
                    job.nice = msg["nice"]
                elif "progress" in msg:
                    job.progress = float(msg["progress"])
                elif "done" in msg:
                    done = msg["done"]
                elif "error" in msg:
                    raise ExportError(msg["error"])
            if await proc.wait() != 0 or done is None:
                raise ExportError(f"the export process ended with {proc.returncode}")
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        job.result = done
        raw = {
            "type": "record_export",
            **{k: done[k] for k in ("file", "sources", "key_id", "bytes", "sha256")},
            **{k: done[k] for k in ("plain_sha256", "width", "height", "seconds")},
            "reason": job.reason,
            "grant": job.grant,
        }
        self.record(job.session, f"staff:{job.username}", raw)
        job.state, job.progress = "done", 1.0

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def read_export(root: Path, master, session: str, record: dict) -> bytes:
    """The WebM of one export, checked against its ``recording.exported`` record exactly as a
    segment is against its ``recording.segment`` one (``recording.review.read_segment``). Blocking."""
    from recording.review import SegmentError, read_segment

    try:
        return read_segment(root, master, session, record)
    except SegmentError as exc:
        raise ExportError(exc.message) from None


if __name__ == "__main__":
    sys.exit(main())
