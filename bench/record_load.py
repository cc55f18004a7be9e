"""What recording costs the server: the same rooms with the recorder on and off, in one run.

    .venv/bin/python -m bench.record_load --rooms 10 --window 20
    .venv/bin/python -m bench.record_load --rooms 10 --synthetic 30   # the recorder alone
    .venv/bin/python -m bench.record_load --rooms 10 --synthetic 30 --loop-busy 0.3  # + a busy loop
    .venv/bin/python -m bench.record_load --export 20   # the composite export of one room
    .venv/bin/python -m bench.record_load --rooms 1 --replay 20 --sink record|null  # fixed work
    .venv/bin/python -m bench.record_load --rooms 10 --toggle 3  # one server, recording switched

Reuses bench/run_load.py's orchestration and bots (R rooms x 3 publishers, full mesh, VGA VP8
at 15 fps + Opus), but the server process is this module's ``serve``: bench/load_server.py's
plan plus, with ``--record``, a real ``recording.Recorder`` subscribed to every publisher of every
room (as the conductor does for a recorded joint room), writing sealed WebM segments into a
temporary directory. The runs alternate off / on / on / off so slow drift of the shared machine
cancels out. Reported: server CPU on vs off (the target is at most 1.10x), MB/s written, CPU per
recorded stream-second, memory per recorded stream, the writer queue's largest depth, frames
dropped, and per arm the engine's counters over the window (keyframes received and asked for,
packets and bytes sent to the peers, the loop's context switches, the GC). ``--toggle N`` keeps
one server and one set of connected bots and switches recording off and on between windows. Ledger appends are not part of it (one SQLite commit per segment, i.e. per participant
every 10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiohttp import web

from bench import run_load
from bench.load_server import LoadServer, LoopLag, PlanEdge, run_http
from media.engine import MediaConfig, MediaEngine
from media.rtp import EncodedFrame
from recording.keys import MasterKey
from recording.recorder import Recorder

KINDS = ("audio", "video")
# the engine's counters that recording may change, per second of the window, both arms: how
# often publishers are asked for keyframes, how many arrive, what is forwarded to the peers
WINDOW_RATES = (
    "keyframes_received",
    "keyframe_requests_asked",
    "keyframe_requests_sent",
    "frames_received",
    "frames_forwarded",
    "frames_to_sinks",
    "packets_sent",
    "bytes_sent",
    "rec_keyframes_asked",
    "loop_switches_voluntary",
    "loop_switches_involuntary",
    "gc_gen0_collections",
    "gc_gen1_collections",
    "gc_gen2_collections",
    "gc_seconds",
)


class RecordingLoadServer(LoadServer):
    """load_server's rooms, each with its recorder sink ``<room>/recorder`` when recording."""

    def __init__(self, engine, lag, recorder: Recorder | None) -> None:
        super().__init__(engine, lag)
        self.recorder = recorder
        self.segments = 0
        self.first_frame_at: float | None = None
        # the cyclic GC's pauses (every thread): the recorder keeps ~20k frame tuples alive
        self.gc_seconds = 0.0
        self._gc_started = 0.0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_seconds += time.perf_counter() - self._gc_started

    recording = True  # --toggle: SIGUSR1 switches the recorder's edges off and on

    def toggle(self) -> None:
        """Recording off (every session closed, the sinks detached) or on again (new sessions),
        with the same peers connected: the same load with and without the recorder."""
        self.recording = not self.recording
        if not self.recording and self.recorder is not None:
            for room in list(self.recorder.sessions):
                self.engine.detach_sink(f"{room}/recorder")
                self.recorder.end_session(room)
        self.engine.apply_plan(self.plan())
        print(json.dumps({"event": "recording", "on": self.recording}), flush=True)

    def plan(self) -> list[PlanEdge]:
        edges = super().plan()
        if self.recorder is None or not self.recording:
            return edges
        for room, members in self.rooms.items():
            name = f"{room}/recorder"
            if room not in self.recorder.sessions:
                if self.first_frame_at is None:
                    self.first_frame_at = time.monotonic()
                sink = self.recorder.session(
                    room,
                    epoch=time.time(),
                    space_of=lambda pid: "joint",
                    participant_of=lambda publisher: publisher,
                    first_index=lambda pid: 0,
                )
                self.engine.attach_sink(name, sink)
            for pub in members.values():
                if pub.publish:
                    edges.extend(PlanEdge(pub.participant, name, k) for k in KINDS)
        return edges

    def report(self, session: str, command: dict) -> None:
        self.segments += command["type"] == "record_segment"

    async def stats(self, request: web.Request) -> web.Response:
        stats = self.engine.stats()
        # the event loop's context switches: voluntary (it waited: select, or the GIL held by
        # the writer thread) and involuntary (preempted); GIL hand-overs show in both
        voluntary, involuntary = _switches(threading.get_native_id())
        stats |= {"loop_switches_voluntary": voluntary, "loop_switches_involuntary": involuntary}
        stats |= {f"gc_gen{i}_collections": g["collections"] for i, g in enumerate(gc.get_stats())}
        stats["gc_seconds"] = self.gc_seconds
        if self.recorder is not None:
            rec = self.recorder.stats()
            since = time.monotonic() - self.first_frame_at if self.first_frame_at else 0.0
            stats |= {f"rec_{k}": v for k, v in rec.items()}
            stats |= {"rec_segments_recorded": self.segments, "rec_seconds": round(since, 2)}
        return web.json_response(stats)


async def serve(port: int, host: str, record: bool, directory: Path) -> None:
    engine = MediaEngine(MediaConfig(ice_host_addresses=[host], connect_timeout=60.0))
    await engine.start()
    holder: dict = {}
    recorder = None
    if record:
        recorder = Recorder(
            directory,
            MasterKey(secrets.token_bytes(32)),
            report=lambda session, command: holder["server"].report(session, command),
            request_keyframe=engine.request_keyframe,
        )
        recorder.start()
    lag = LoopLag()
    lag.start()
    server = holder["server"] = RecordingLoadServer(engine, lag, recorder)
    if recorder is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, server.toggle)
    try:
        await run_http(server, port)
    finally:
        lag.stop()
        if recorder is not None:
            await recorder.aclose()
        await engine.close()


class RecordingServer(run_load.ParleyServer):
    """This module's ``serve`` in its own process (mode ``record`` or ``off``)."""

    def __init__(self, mode: str, args: argparse.Namespace) -> None:
        port = run_load.free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.directory = Path(tempfile.mkdtemp(prefix="parley-record-load-"))
        argv = ["serve", "--port", str(port), "--host", run_load.HOST, "--dir", str(self.directory)]
        self.child = run_load.Child(
            "bench.record_load",
            argv + (["--record"] if mode == "record" else []),
            f"server[{mode}]",
        )
        self.pid = self.child.pid
        self.verify = "bytes"

    def lag(self, reset: bool = False) -> dict:
        if reset:  # run_load resets the lag probe as the window starts: the counters' baseline
            self._window_start = (time.monotonic(), self.stats())
        return super().lag(reset)

    def counters(self, stats: dict) -> dict:
        out = super().counters(stats) | {k: v for k, v in stats.items() if k.startswith("rec_")}
        start = getattr(self, "_window_start", None)
        if start is not None:  # per second over the window (to the final read): off vs on
            seconds = time.monotonic() - start[0]
            for key in WINDOW_RATES:
                out[f"{key}_per_s"] = round((stats.get(key, 0) - start[1].get(key, 0)) / seconds, 4)
        return out

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def toggled(args: argparse.Namespace, ns: argparse.Namespace, scenario) -> dict:
    """One server with the recorder, one set of connected bots; recording switched off and on
    (SIGUSR1) ``args.toggle`` times in the order off/on/on/off..., each window ``args.window``
    s after ``args.settle`` s: slow drift of a shared VM and the bots' joins are out of the
    comparison, which is of the same process with the same peers."""
    server = RecordingServer("record", args)
    bots: list = []
    try:
        server.wait_ready()
        groups = [scenario.rooms[i :: ns.bot_procs] for i in range(ns.bot_procs)]
        for i, rooms in enumerate(g for g in groups if g):
            spec = {
                **server.bot_spec(),
                "host": run_load.HOST,
                "rooms": [[p.__dict__ for p in room] for room in rooms],
                "fps": scenario.fps,
                "bitrate": scenario.bitrate,
                "size": [scenario.width, scenario.height],
                "stagger": ns.stagger,
                "rcvbuf": ns.rcvbuf,
            }
            bots.append(run_load.Child("bench.load_bots", [json.dumps(spec)], f"bots{i}"))
        for b in bots:
            b.expect("ready", ns.join_timeout)
        time.sleep(ns.warmup)
        state, windows = True, []
        order = (["off", "record", "record", "off"] * args.toggle)[: 2 * args.toggle]
        for mode in order:
            if (mode == "record") != state:
                os.kill(server.pid, signal.SIGUSR1)
                server.child.expect("recording", 10)
                state = mode == "record"
            time.sleep(args.settle)
            stats0, load0 = server.stats(), os.getloadavg()[0]
            prefix = f"{args.profile}-toggle-{len(windows)}-{mode}" if args.profile else None
            profiler = _profiler(server.pid, args.window, prefix) if prefix else None
            t0, cpu0 = time.monotonic(), run_load.read_proc_cpu(server.pid)
            user0, faults0 = _proc_user_faults(server.pid)
            bot0 = sum(run_load.read_proc_cpu(b.pid) for b in bots)
            machine0 = run_load.read_machine_cpu()
            time.sleep(args.window)
            t1, cpu1 = time.monotonic(), run_load.read_proc_cpu(server.pid)
            user1, faults1 = _proc_user_faults(server.pid)
            bot1 = sum(run_load.read_proc_cpu(b.pid) for b in bots)
            machine1 = run_load.read_machine_cpu()
            stats1, seconds = server.stats(), t1 - t0
            cores = (cpu1 - cpu0) / seconds
            busy = (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1])
            ncpu = os.cpu_count() or 1
            w = {
                "mode": mode,
                "server_cores": round(cores, 4),
                "bot_cores": round((bot1 - bot0) / seconds, 3),
                "other_cores": round(busy * ncpu - cores - (bot1 - bot0) / seconds, 3),
                "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
                "peers_connected": stats1.get("peers_connected"),
            }
            for key in ("packets_sent", "keyframes_received", "frames_to_sinks"):
                w[f"{key}_per_s"] = round((stats1[key] - stats0[key]) / seconds, 1)
            w |= _window_recorder(stats0, stats1, seconds)
            # user-mode share of the server's CPU, and its page faults (memory given back to
            # the OS and taken again)
            w["server_user_cores"] = round((user1 - user0) / seconds, 4)
            w["minor_faults_per_s"] = round((faults1 - faults0) / seconds, 1)
            w["rss_mb"] = round(run_load.read_proc_rss(server.pid) / 2**20, 1)
            if profiler is not None:
                profiler.wait(timeout=120)
                w["profile"] = prefix + ".txt"
            windows.append(w)
            print(json.dumps(w), flush=True)
        for b in bots:
            b.send("quit")
    finally:
        for b in bots:
            b.stop()
        server.stop()
    off = [w["server_cores"] for w in windows if w["mode"] == "off"]
    on = [w["server_cores"] for w in windows if w["mode"] == "record"]
    pairs = [  # each on window over the off window next to it in time (off,on | on,off)
        windows[i + 1]["server_cores"] / windows[i]["server_cores"]
        if windows[i]["mode"] == "off"
        else windows[i]["server_cores"] / windows[i + 1]["server_cores"]
        for i in range(0, len(windows) - 1, 2)
    ]
    streams = sum(p.publish for room in scenario.rooms for p in room) * len(KINDS)
    recorded = [w for w in windows if w["mode"] == "record"]
    mean_off, mean_on = sum(off) / len(off), sum(on) / len(on)
    return {
        "windows": windows,
        "server_cores_off": round(mean_off, 4),
        "server_cores_on": round(mean_on, 4),
        "cpu_on_over_off": round(mean_on / mean_off, 3),
        "pair_ratios": [round(r, 3) for r in pairs],
        "pair_ratio_median": round(_median(pairs), 3) if pairs else None,
        "recorded_streams": streams,
        "cpu_ms_per_recorded_stream_s": round(1000 * (mean_on - mean_off) / streams, 3),
        "writer_thread_cores": _mean(recorded, "writer_cores"),
        "gc_cores_on": _mean(recorded, "gc_cores"),
        "mb_per_s_written": _mean(recorded, "mb_per_s_written"),
        "mb_per_s_recorded": _mean(recorded, "mb_per_s_recorded"),
        # one process: the off windows' RSS keeps what the allocator did not give back
        "rss_mb_off": _mean([w for w in windows if w["mode"] == "off"], "rss_mb"),
        "rss_mb_on": _mean(recorded, "rss_mb"),
        "queue_depth_max": max((w["queue_depth_max"] for w in recorded), default=None),
        "frames_dropped": sum(w["frames_dropped"] for w in recorded),
    }


def _proc_user_faults(pid: int) -> tuple[float, int]:
    """(user CPU seconds, minor page faults) of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / run_load.CLK_TCK, int(fields[7])


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(sum(values) / len(values), 4) if values else None


def _window_recorder(stats0: dict, stats1: dict, seconds: float) -> dict:
    """The recorder's and the GC's figures over one toggled window, per second."""

    def rate(key: str, scale: float = 1.0) -> float:
        return round((stats1.get(key, 0) - stats0.get(key, 0)) / seconds / scale, 4)

    return {
        "writer_cores": rate("rec_writer_cpu_seconds"),
        "gc_cores": rate("gc_seconds"),
        "gc_gen0_per_s": rate("gc_gen0_collections"),
        "mb_per_s_written": rate("rec_bytes_written", 1e6),
        "mb_per_s_recorded": rate("rec_bytes_in", 1e6),
        "queue_depth_max": stats1.get("rec_queue_depth_max"),
        "frames_dropped": stats1.get("rec_frames_dropped", 0) - stats0.get("rec_frames_dropped", 0),
    }


def _profiler(pid: int, seconds: float, prefix: str):
    """py-spy over one toggled window: every thread, native frames, raw (collapsed) stacks."""
    import subprocess

    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100"]
        + ["--native", "--threads", "--format", "raw", "-o", prefix + ".txt"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def compare(off: list[dict], on: list[dict], streams: int) -> dict:
    """The figures of docs/benchmarks.md, from the off and on runs (means over the repeats)."""

    def mean(runs: list[dict], key: str) -> float:
        return sum(r[key] for r in runs) / len(runs)

    cores_off, cores_on = mean(off, "server_cores"), mean(on, "server_cores")
    rec = [r["server_counters"] for r in on]
    written = sum(c["rec_bytes_written"] for c in rec)
    seconds = sum(c["rec_seconds"] for c in rec)
    return {
        "server_cores_off": round(cores_off, 4),
        "server_cores_on": round(cores_on, 4),
        "cpu_on_over_off": round(cores_on / cores_off, 3),
        "recorded_streams": streams,
        "cpu_ms_per_recorded_stream_s": round(1000 * (cores_on - cores_off) / streams, 3),
        "writer_thread_cores": round(sum(c["rec_writer_cpu_seconds"] for c in rec) / seconds, 4),
        "mb_per_s_written": round(written / seconds / 1e6, 3),  # closed segments only
        "mb_per_s_recorded": round(sum(c["rec_bytes_in"] for c in rec) / seconds / 1e6, 3),
        "rss_mb_off": round(mean(off, "rss_mb"), 1),
        "rss_mb_on": round(mean(on, "rss_mb"), 1),
        "rss_mb_per_recorded_stream": round(
            (mean(on, "rss_mb") - mean(off, "rss_mb")) / streams, 3
        ),
        "queue_depth_max": max(c["rec_queue_depth_max"] for c in rec),
        "frames_dropped": sum(c["rec_frames_dropped"] for c in rec),
        "segments_recorded": sum(c["rec_segments_recorded"] for c in rec),
        "loop_lag_ms_p95_off": max(r["server_loop_lag_ms"].get("lag_ms_p95", 0) for r in off),
        "loop_lag_ms_p95_on": max(r["server_loop_lag_ms"].get("lag_ms_p95", 0) for r in on),
        "delivery_ratio_off": round(mean(off, "delivery_ratio"), 4),
        "delivery_ratio_on": round(mean(on, "delivery_ratio"), 4),
    }


class _Frame:
    """What the engine hands a sink: an encoded frame with its RTP timestamp."""

    __slots__ = ("timestamp", "is_keyframe", "data")

    def __init__(self, timestamp: int, is_keyframe: bool, data: bytes) -> None:
        self.timestamp, self.is_keyframe, self.data = timestamp, is_keyframe, data


class _Null:
    def on_frame(self, publisher, kind, frame) -> None:
        pass


class _Packet:
    """What ``media.rtp.EncodedFrame`` reads of an aiortc packet: the depayloaded bytes."""

    class extensions:  # noqa: N801 - mirrors aiortc's attribute
        audio_level = None

    def __init__(self, data: bytes) -> None:
        self._data = data


def _frames(data: bytes, timestamp: int, key: bool) -> EncodedFrame:
    """An engine frame: ``data`` in packets of at most 1,100 bytes (the join is the sink's)."""
    packets = [_Packet(data[i : i + 1100]) for i in range(0, len(data), 1100)]
    return EncodedFrame(packets, timestamp, key)


async def replay(rooms: int, seconds: float, record: bool) -> dict:
    """``seconds`` of the bench's media for ``rooms`` three-party rooms, fed as fast as possible
    on a simulated clock into the real Recorder (``record``) or a null sink, then the recorder
    closed: the process's CPU (loop and writer thread) for a fixed amount of work. Deterministic
    enough to run under ``valgrind --tool=callgrind`` and compare instruction counts of the two
    arms and of two versions of the code on a machine too busy for the real-time benches."""
    from bench import clip

    video = clip.video_clip(color=(200, 30, 30), tag=5, frames=60, bitrate=500_000)
    audio = clip.audio_clip(tone_hz=440)
    vframes = [_frames(f, 0, False) for f in video.frames]
    aframes = [_frames(p, 0, True) for p in audio.packets]
    directory = Path(tempfile.mkdtemp(prefix="parley-record-replay-"))
    now = [1_800_000_000.0]
    recorder = None
    try:
        if record:
            recorder = Recorder(
                directory,
                MasterKey(bytes(32)),
                report=lambda session, command: None,
                request_keyframe=lambda publisher: None,
                max_frames=10**9,  # no drop: the same work in every run
                clock=lambda: now[0],
            )
            recorder.start()
            sinks = [
                recorder.session(
                    f"r{r}",
                    epoch=now[0],
                    space_of=lambda pid: "joint",
                    participant_of=lambda publisher: publisher,
                    first_index=lambda pid: 0,
                )
                for r in range(rooms)
            ]
        else:
            sinks = [_Null() for _ in range(rooms)]
        gc0, objects0 = _gc_collections(), len(gc.get_objects())
        cpu, loop = time.process_time(), time.thread_time()
        for n in range(int(seconds * 15)):
            now[0] += 1 / 15
            for sink in sinks:
                for p in ("p0", "p1", "p2"):
                    for j in range(3):
                        k = 3 * n + j
                        frame = aframes[k % len(aframes)]
                        frame.timestamp = k * 960
                        sink.on_frame(p, "audio", frame)
                    frame = vframes[n % len(vframes)]
                    frame.timestamp, frame.is_keyframe = n * 6000, n % 30 == 0
                    sink.on_frame(p, "video", frame)
            if n % 15 == 0:
                await asyncio.sleep(0)
        loop_cpu = time.thread_time() - loop  # this thread only: the sinks' on_frame
        # objects the cyclic GC tracks, alive with the segments still open (frames held)
        objects = len(gc.get_objects()) - objects0
        if recorder is not None:
            await recorder.aclose()
        busy = time.process_time() - cpu
        streams = rooms * 3 * len(KINDS)
        out = {"rooms": rooms, "media_seconds": seconds, "record": record}
        out["gc_tracked_objects_held"] = objects
        out["gc_collections"] = [b - a for a, b in zip(gc0, _gc_collections(), strict=True)]
        out["cpu_s"] = round(busy, 4)
        out["cpu_ms_per_stream_s"] = round(1000 * busy / seconds / streams, 4)
        if recorder is not None:
            writer = recorder.writer.busy_seconds
            out["writer_cpu_s"] = round(writer, 4)
            out["loop_cpu_s"] = round(loop_cpu, 4)
            out["segments"] = recorder.stats()["segments_written"]
            out["bytes_written"] = recorder.stats()["bytes_written"]
        return out
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _gc_collections() -> list[int]:
    return [g["collections"] for g in gc.get_stats()]


def _switches(tid: int) -> tuple[int, int]:
    """Context switches of one thread of this process, (voluntary, involuntary): voluntary each
    time it blocked (on the GIL, a lock, the disk, select), i.e. each hand-over between the loop
    and the writer thread among them."""
    found = {}
    with open(f"/proc/self/task/{tid}/status") as f:
        for line in f:
            if line.endswith("ctxt_switches:", 0, line.find(":") + 1):
                found[line.split(":")[0]] = int(line.split()[1])
    return found.get("voluntary_ctxt_switches", 0), found.get("nonvoluntary_ctxt_switches", 0)


def _rss_mb() -> float:
    return run_load.read_proc_rss(os.getpid()) / 2**20


async def _feed(sinks: list, seconds: float) -> float:
    """Each sink gets 3 participants' VGA VP8 at 15 fps + Opus at 50 packets/s, in real time;
    returns the process CPU seconds it took (every thread)."""
    from bench import clip

    video = clip.video_clip(color=(200, 30, 30), tag=5, frames=60, bitrate=500_000)
    audio = clip.audio_clip(tone_hz=440)
    start, cpu, n = time.monotonic(), time.process_time(), 0
    while time.monotonic() - start < seconds:
        for sink in sinks:
            for p in ("p0", "p1", "p2"):
                for j in range(3):  # 3 packets of 20 ms per video frame of 66.7 ms (close enough)
                    k = 3 * n + j
                    sink.on_frame(p, "audio", _Frame(k * 960, True, audio.packets[k % 50]))
                frame = _Frame(n * 6000, n % 30 == 0, video.frames[n % 60])
                sink.on_frame(p, "video", frame)
        n += 1
        await asyncio.sleep(max(0.0, start + n / 15 - time.monotonic()))
    return time.process_time() - cpu


async def _forwarding(share: float) -> None:
    """Stands in for forwarding: keeps the event loop busy ``share`` of the time in 1 ms bursts
    of Python (holding the GIL), between which it waits in ``select`` as the real loop does."""
    burst = 0.001
    while True:
        end = time.thread_time() + burst
        while time.thread_time() < end:
            pass
        await asyncio.sleep(burst * (1 - share) / share)


async def synthetic(rooms: int, seconds: float, busy: float = 0.0) -> dict:
    """The recorder alone, in this process: its CPU per recorded stream-second (the loop's part
    and the writer thread's), memory, bytes written. Independent of the network and the bots,
    so it can be taken on a shared machine where the end-to-end on/off ratio cannot."""
    directory = Path(tempfile.mkdtemp(prefix="parley-record-synthetic-"))
    forwarding = asyncio.ensure_future(_forwarding(busy)) if busy else None
    try:
        idle = await _feed([_Null() for _ in range(rooms)], seconds)
        recorder = Recorder(
            directory,
            MasterKey(secrets.token_bytes(32)),
            report=lambda session, command: None,
            request_keyframe=lambda publisher: None,
        )
        recorder.start()
        sinks = [
            recorder.session(
                f"r{r}",
                epoch=time.time(),
                space_of=lambda pid: "joint",
                participant_of=lambda publisher: publisher,
                first_index=lambda pid: 0,
            )
            for r in range(rooms)
        ]
        rss = _rss_mb()
        loop_tid, writer_tid = threading.get_native_id(), recorder.writer.native_id
        switches = _switches(loop_tid)[0], _switches(writer_tid)[0]
        gc0, objects0 = _gc_collections(), len(gc.get_objects())
        busy = await _feed(sinks, seconds)
        objects = len(gc.get_objects()) - objects0  # tracked objects alive, segments open
        collections = [b - a for a, b in zip(gc0, _gc_collections(), strict=True)]
        loop_switches = (_switches(loop_tid)[0] - switches[0]) / seconds
        writer_switches = (_switches(writer_tid)[0] - switches[1]) / seconds
        rss_peak = _rss_mb()
        dropped = recorder.stats()["frames_dropped"]  # the sinks are gone after the close
        await recorder.aclose()
        stats = recorder.stats()
        streams = rooms * 3 * len(KINDS)
        return {
            "rooms": rooms,
            "seconds": seconds,
            "recorded_streams": streams,
            "cpu_ms_per_recorded_stream_s": round(1000 * (busy - idle) / seconds / streams, 3),
            "writer_ms_per_recorded_stream_s": round(
                1000 * recorder.writer.busy_seconds / seconds / streams, 3
            ),
            "recorder_cores": round((busy - idle) / seconds, 4),
            "rss_mb_per_recorded_stream": round((rss_peak - rss) / streams, 3),
            "mb_per_s_written": round(stats["bytes_written"] / seconds / 1e6, 3),
            "queue_depth_max": stats["queue_depth_max"],
            "loop_thread_switches_per_s": round(loop_switches),
            "writer_thread_switches_per_s": round(writer_switches),
            "frames_dropped": dropped,
            "gc_tracked_objects_held": objects,
            "gc_collections_per_s": [round(c / seconds, 2) for c in collections],
            "segments": stats["segments_written"],
            "loop_busy_share": busy,
        }
    finally:
        if forwarding is not None:
            forwarding.cancel()
        shutil.rmtree(directory, ignore_errors=True)


async def export_cost(seconds: float) -> dict:
    """One three-party room recorded by the real Recorder for ``seconds`` (the bench's clips),
    then exported by the real nice-19 child (recording/export.py): the child's CPU per recorded
    second, its wall time, the sizes."""
    from recording.export import Exports

    directory = Path(tempfile.mkdtemp(prefix="parley-export-bench-"))
    try:
        master = MasterKey(secrets.token_bytes(32))
        records: list[dict] = []
        recorder = Recorder(
            directory,
            master,
            report=lambda s, cmd: records.append(cmd) if cmd["type"] == "record_segment" else None,
            request_keyframe=lambda publisher: None,
        )
        recorder.start()
        sink = recorder.session(
            "room",
            epoch=time.time(),
            space_of=lambda pid: "joint",
            participant_of=lambda publisher: publisher,
            first_index=lambda pid: 0,
        )
        await _feed([sink], seconds)
        await recorder.aclose()
        recorded: list[dict] = []
        jobs = Exports(directory, master, lambda sid, actor, raw: recorded.append(raw))
        started = time.monotonic()
        job = jobs.start("room", "bench", "admin", "bench", records, 0)
        await job.ended.wait()
        if job.state != "done":
            return {"error": job.error}
        r = job.result
        return {
            "participants": 3,
            "recorded_seconds": seconds,
            "segments": len(records),
            "grid": f"{r['width']}x{r['height']}",
            "export_seconds": r["seconds"],
            "child_nice": job.nice,
            "child_cpu_s": r["cpu_seconds"],
            "child_wall_s": r["wall_seconds"],
            "wall_s_with_start": round(time.monotonic() - started, 2),
            "cpu_s_per_recorded_s": round(r["cpu_seconds"] / seconds, 3),
            "export_mb": round(r["bytes"] / 1e6, 3),
            "segments_mb": round(sum(c["bytes"] for c in records) / 1e6, 3),
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    s = sub.add_parser("serve", help="the server process (started by the orchestrator)")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--host", required=True)
    s.add_argument("--dir", type=Path, required=True)
    s.add_argument("--record", action="store_true")
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--participants", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=2, help="off/on pairs, alternated")
    parser.add_argument("--bot-procs", type=int, default=2)
    parser.add_argument(
        "--join-timeout",
        type=float,
        default=180.0,
        help="s for every bot to connect (busy machine)",
    )
    parser.add_argument(
        "--synthetic", type=float, default=0, help="seconds: measure the recorder alone, in process"
    )
    parser.add_argument(
        "--export", type=float, default=0, help="seconds: record one room, then export it"
    )
    parser.add_argument(
        "--replay",
        type=float,
        default=0,
        help="media seconds: fixed work, as fast as possible (for callgrind); with --sink",
    )
    parser.add_argument("--sink", choices=("record", "null"), default="record")
    parser.add_argument(
        "--loop-busy",
        type=float,
        default=0.0,
        help="with --synthetic: share of the loop kept busy, as forwarding would (e.g. 0.3)",
    )
    parser.add_argument(
        "--toggle",
        type=int,
        default=0,
        help="off/on pairs in ONE server with the same connected bots (SIGUSR1 switches)",
    )
    parser.add_argument("--settle", type=float, default=3.0, help="with --toggle: s after a switch")
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--profile", default=None, help="py-spy raw profile path prefix (each server run)"
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        logging.basicConfig(level=logging.WARNING)
        import uvloop  # as server.py runs Parley by default

        uvloop.run(serve(args.port, args.host, args.record, args.dir))
        return 0
    if args.export:
        load = os.getloadavg()
        out = asyncio.run(export_cost(args.export))
        out |= {"code": run_load.code_state(), "loadavg_before": [round(x, 2) for x in load]}
        out["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(out, indent=2))
        return 0
    if args.replay:
        out = asyncio.run(replay(args.rooms, args.replay, args.sink == "record"))
        out |= {"code": run_load.code_state(), "loadavg": [round(x, 2) for x in os.getloadavg()]}
        print(json.dumps(out, indent=2))
        return 0
    if args.synthetic:
        load = os.getloadavg()
        out = asyncio.run(synthetic(args.rooms, args.synthetic, args.loop_busy))
        out |= {"code": run_load.code_state(), "loadavg_before": [round(x, 2) for x in load]}
        print(json.dumps(out, indent=2))
        return 0
    ns = run_load.rooms_args(
        participants=args.participants,
        warmup=args.warmup,
        window=args.window,
        bot_procs=args.bot_procs,
        join_timeout=args.join_timeout,
        profile=args.profile,
    )
    scenario = run_load.build_scenario(ns, args.rooms)
    if args.toggle:
        load = os.getloadavg()
        out = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "code": run_load.code_state()}
        out |= toggled(args, ns, scenario)
        out["ended"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        out |= {"loadavg_before": [round(x, 2) for x in load]}
        out["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps({k: v for k, v in out.items() if k != "windows"}, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2))
        return 0
    run_load.make_server = lambda mode, a: RecordingServer(mode, a)  # this module's server
    load, started = os.getloadavg(), time.strftime("%Y-%m-%d %H:%M:%S %Z")
    print(f"code: {run_load.code_state()}; load average before: {load[0]:.2f} {load[1]:.2f}")
    order = ["off", "record", "record", "off"] * ((args.repeat + 1) // 2)
    runs: dict[str, list[dict]] = {"off": [], "record": []}
    for mode in order[: 2 * args.repeat]:
        before = os.getloadavg()[0]  # the machine is shared: each arm's load, side by side
        result = run_load.run_mode(scenario, mode, ns)
        result["loadavg_1min"] = [round(before, 2), round(os.getloadavg()[0], 2)]
        runs[mode].append(result)
        run_load.print_run(scenario.name, mode, result)
    streams = sum(p.publish for room in scenario.rooms for p in room) * len(KINDS)
    valid = {m: [r for r in rs if not r["verdict"].startswith("invalid")] for m, rs in runs.items()}
    if not (valid["off"] and valid["record"]):
        print("no valid pair of runs (peers disconnected in every window): no figures")
        return 1
    figures = compare(valid["off"], valid["record"], streams)
    figures["runs_used"] = {m: len(rs) for m, rs in valid.items()}
    figures["loadavg_1min_per_run"] = {m: [r["loadavg_1min"] for r in rs] for m, rs in runs.items()}
    out = {
        "started": started,
        "ended": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "code": run_load.code_state(),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "scenario": scenario.notes,
        "figures": figures,
    }
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({**out, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
