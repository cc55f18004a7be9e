"""Load benchmark of the media core: R rooms x K aiortc bots against one server process.

    .venv/bin/python -m bench.run_load --scenario rooms --rooms 5 --participants 3 --fps 15
    .venv/bin/python -m bench.run_load --scenario janus --baseline reencode
    .venv/bin/python -m bench.run_load --scenario triad20
    .venv/bin/python -m bench.run_load --scenario janus --subscribers 8 --baseline janus

Three kinds of process, so that each one's CPU can be read from /proc/<pid>/stat:
the *server* (bench/load_server.py: a MediaEngine, or the re-encoding baseline of
bench/reencode.py, behind a small local HTTP endpoint that takes offers and builds each room's
plan), one or more *bot* processes (bench/load_bots.py: whole rooms of bench/bot.py publishers
and subscriber probes; a room never spans processes, since latency needs the send times), and
this *orchestrator*, which starts them, waits for every subscriber to see every publisher, lets
the load settle, measures a fixed window, and prints the figures (bench/README.md defines them).
With `--baseline janus` the server is Janus 1.1.2 instead (bench/janus_server.py) and the bots
speak its VideoRoom REST API (bench/janus_client.py); the figures keep the same definitions.

Subscriber probes never decode in passthrough mode: the server forwards the publisher's encoded
frames byte for byte, so a received frame is identified by its bytes (publisher, clip index,
send sequence). The re-encoding baseline changes the bytes, so there the probes decode and read
the frame-number barcode. Either way a frame's arrival time is when its last (marker) packet
reached the subscriber, so the figure does not include the probe's own jitter-buffer wait.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

HOST = "192.0.2.2"  # this machine's address (aioice never offers 127.0.0.1)
CLK_TCK = os.sysconf("SC_CLK_TCK")
KINDS = ("audio", "video")


# ---------------------------------------------------------------------------------------------
# figures (pure functions; tests/unit/bench checks them)
# ---------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return ordered[int(rank) - 1]


def read_proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def read_proc_rss(pid: int) -> int:
    """Resident set size of a process in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def read_machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


def read_udp_drops(pids: list[int]) -> int:
    """Datagrams the kernel dropped on these processes' UDP sockets (full receive buffers).

    /proc/net/udp{,6} has a drop counter per socket; sockets are matched to the processes by
    the inodes behind their file descriptors. Counters of sockets closed meanwhile are lost,
    so read it over a window in which no socket closes.
    """
    inodes = set()
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if len(cols) > 12 and cols[9] in inodes:
                        drops += int(cols[12])
        except FileNotFoundError:
            continue
    return drops


def set_udp_receive_buffer(nbytes: int) -> None:
    """Ask for `nbytes` of receive buffer on every UDP socket this process opens (ICE's).

    The kernel caps it at net.core.rmem_max. For the bench's own processes only: Parley's
    deployment notes ask for larger buffers on media hosts through sysctl instead.
    """
    import asyncio
    import socket as socketmod

    original = asyncio.BaseEventLoop.create_datagram_endpoint

    async def create_datagram_endpoint(self, *args, **kwargs):
        transport, protocol = await original(self, *args, **kwargs)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socketmod.SOL_SOCKET, socketmod.SO_RCVBUF, nbytes)
        return transport, protocol

    asyncio.BaseEventLoop.create_datagram_endpoint = create_datagram_endpoint


@dataclass
class Sample:
    """Counters read at one instant; two samples make a window."""

    at: float
    server_cpu: float
    bot_cpu: dict[int, float]
    machine: tuple[float, float]
    packets_sent: int
    server_drops: int = 0
    bot_drops: int = 0
    peers_connected: int = 0


@dataclass
class WindowFigures:
    seconds: float
    server_cpu_s: float
    bot_cores: dict[int, float]
    machine_busy: float  # share of all cores busy, 0..1
    packets: int
    server_drops: int = 0
    bot_drops: int = 0


def window(a: Sample, b: Sample) -> WindowFigures:
    seconds = b.at - a.at
    busy = (b.machine[0] - a.machine[0]) / max(1, b.machine[1] - a.machine[1])
    return WindowFigures(
        seconds=seconds,
        server_cpu_s=b.server_cpu - a.server_cpu,
        bot_cores={pid: (b.bot_cpu[pid] - a.bot_cpu[pid]) / seconds for pid in a.bot_cpu},
        machine_busy=busy,
        packets=b.packets_sent - a.packets_sent,
        server_drops=b.server_drops - a.server_drops,
        bot_drops=b.bot_drops - a.bot_drops,
    )


def figures(
    w: WindowFigures,
    *,
    probe_seconds: float,
    video_streams: int,
    audio_streams: int,
    pairs: list[dict],
    ttff: list[float],
    latencies: list[float],
    publisher_pace: list[float],
    participants: int,
    rss_idle: int,
    rss_end: int,
    cores: int,
) -> dict:
    """Every figure of one run from one measurement window and the probes' reports.

    `pairs`: one entry per (subscriber, publisher) video edge with the frames received in the
    window, frame-number gaps and out-of-order frames, and the frames that publisher sent in it.
    `publisher_pace`: per publisher, frames sent in the window / (fps x window).
    `probe_seconds`: the probes' own window (frames and seconds from the same clock readings);
    CPU and packets use the orchestrator's window `w`.
    """
    cpu_ms = w.server_cpu_s * 1000
    stream_s_video = video_streams * w.seconds
    stream_s_all = (video_streams + audio_streams) * w.seconds
    received = sum(p["frames"] for p in pairs)
    gaps = sum(p["gaps"] for p in pairs)
    sent = sum(p["sent"] for p in pairs)
    fps = [p["frames"] / probe_seconds for p in pairs]
    bot_total = sum(w.bot_cores.values())
    out = {
        "window_s": round(w.seconds, 2),
        "server_cores": round(w.server_cpu_s / w.seconds, 4),
        "cpu_s_per_stream_s": _div(w.server_cpu_s, stream_s_all, 5),
        "ms_per_stream_s": _div(cpu_ms, stream_s_all, 3),
        "ms_per_video_stream_s": _div(cpu_ms, stream_s_video, 3),
        # a server that cannot keep up forwards less and looks cheaper per nominal stream:
        # this one charges its CPU to the video it actually delivered
        "ms_per_delivered_video_stream_s": _div(
            cpu_ms, stream_s_video * min(1.0, received / sent) if sent else 0, 3
        ),
        "ms_per_packet": _div(cpu_ms, w.packets, 4),
        "packets_per_s": round(w.packets / w.seconds, 1),
        "video_streams": video_streams,
        "audio_streams": audio_streams,
        "subscriber_fps_mean": _div(sum(fps), len(fps), 2),
        "subscriber_fps_min": round(min(fps), 2) if fps else None,
        "frame_loss_gaps": _div(gaps, received + gaps, 5),
        "delivery_ratio": _div(received, sent, 4),
        "out_of_order": sum(p["out_of_order"] for p in pairs),
        "ttff_p50_s": _round(percentile(ttff, 50), 3),
        "ttff_p95_s": _round(percentile(ttff, 95), 3),
        "ttff_n": len(ttff),
        "latency_p50_ms": _round(_ms(percentile(latencies, 50)), 1),
        "latency_p95_ms": _round(_ms(percentile(latencies, 95)), 1),
        "latency_n": len(latencies),
        "rss_mb": round(rss_end / 2**20, 1),
        "rss_mb_per_participant": _div((rss_end - rss_idle) / 2**20, participants, 2),
        "bot_cores": round(bot_total, 3),
        "bot_cores_max_process": round(max(w.bot_cores.values(), default=0.0), 3),
        "udp_drops_server": w.server_drops,
        "udp_drops_bots": w.bot_drops,
        "machine_busy": round(w.machine_busy, 3),
        "other_cores": round(
            max(0.0, w.machine_busy * cores - w.server_cpu_s / w.seconds - bot_total), 3
        ),
        "publisher_pace_min": _round(min(publisher_pace, default=None), 3),
    }
    out["verdict"] = verdict(out, cores)
    return out


def verdict(f: dict, cores: int) -> str:
    """Who limits the run: 'ok', 'server saturated', 'bots saturated' or 'machine shared'.

    Bots count as saturated when one bot process is near a full core (its event loop cannot go
    faster) or the bench's own processes fill the machine; the machine counts as shared when it
    was over 90% busy and other processes (other engineers' runs) took a real share of it; a
    publisher that fell behind its frame rate is named too. In every such case the run shows
    what the bots could drive, not where the server's ceiling is.
    """
    bots, machine = [], []
    if f["bot_cores_max_process"] >= 0.9:
        bots.append(f"a bot process used {f['bot_cores_max_process']:.2f} core")
    if f["machine_busy"] >= 0.9:
        note = (
            f"machine {f['machine_busy']:.0%} busy on {cores} cores (server"
            f" {f['server_cores']:.2f}, bots {f['bot_cores']:.2f}, others {f['other_cores']:.2f})"
        )
        # whoever took more of what the server did not use is named
        (machine if f["other_cores"] > f["bot_cores"] else bots).append(note)
    pace = f["publisher_pace_min"]
    if pace is not None and pace < 0.95:
        (machine if machine else bots).append(f"a publisher sent only {pace:.0%} of its frames")
    parts = []
    if bots:
        parts.append("bots saturated: " + "; ".join(bots))
    if machine:
        parts.append("machine shared: " + "; ".join(machine))
    if parts:
        return " | ".join(parts)
    if f["server_cores"] >= 0.9:
        return "server saturated (one event loop near a full core)"
    return "ok"


def _div(a: float, b: float, digits: int) -> float | None:
    return round(a / b, digits) if b else None


def _round(v: float | None, digits: int) -> float | None:
    return None if v is None else round(v, digits)


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


def summarize_profile(collapsed: str, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Top frames of a py-spy `--format raw` (collapsed stacks) profile, as shares of samples.

    `self`: where the samples were taken (leaf frame); `total`: frames anywhere on the stack.
    """
    self_counts: dict[str, int] = {}
    total_counts: dict[str, int] = {}
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + n
        for frame in set(frames):
            total_counts[frame] = total_counts.get(frame, 0) + n

    def ranked(counts: dict[str, int]) -> list[tuple[str, float]]:
        best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        return [(name, round(n / samples, 4)) for name, n in best]

    if not samples:
        return {"self": [], "total": [], "samples": 0}
    return {"self": ranked(self_counts), "total": ranked(total_counts), "samples": samples}


# ---------------------------------------------------------------------------------------------
# scenarios
# ---------------------------------------------------------------------------------------------


@dataclass
class Participant:
    name: str
    room: str
    publish: bool
    slots: int
    audio: bool


@dataclass
class Scenario:
    name: str
    rooms: list[list[Participant]]
    fps: int
    bitrate: int
    width: int = 640
    height: int = 480
    notes: list[str] = field(default_factory=list)

    def edges(self) -> list[tuple[str, str, str]]:
        out = []
        for room in self.rooms:
            for p in room:
                if not p.publish:
                    continue
                for s in room:
                    if s is not p and s.slots:
                        kinds = KINDS if p.audio else ("video",)
                        out.extend((p.name, s.name, k) for k in kinds)
        return out


def rooms_args(**given) -> argparse.Namespace:
    """The options of a "rooms" run for a bench that drives this orchestrator itself
    (record_load, officer_grid): the CLI's defaults, with what the caller gives."""
    return argparse.Namespace(
        **{
            "scenario": "rooms",
            "participants": 3,
            "fps": None,
            "bitrate": None,
            "no_audio": False,
            "stagger": 0.2,
            "rcvbuf": 0,
            "event_loop": "uvloop",
            "profile": None,
            "baseline": None,
            **given,
        }
    )


def build_scenario(args: argparse.Namespace, room_count: int) -> Scenario:
    if args.scenario == "janus":
        subs = args.subscribers
        room = [Participant("r0-pub", "r0", True, 0, False)]
        room += [Participant(f"r0-sub{i}", "r0", False, 1, False) for i in range(subs)]
        return Scenario(
            "janus",
            [room],
            args.fps or 30,
            args.bitrate or 800_000,
            notes=[f"one VGA VP8 publisher (video only) to {subs} subscribers, joined together"],
        )
    rooms, k = (20, 3) if args.scenario == "triad20" else (room_count, args.participants)
    audio = not args.no_audio
    layout = [
        [Participant(f"r{r}-p{i}", f"r{r}", True, k - 1, audio) for i in range(k)]
        for r in range(rooms)
    ]
    return Scenario(
        args.scenario,
        layout,
        args.fps or 15,
        args.bitrate or 500_000,
        notes=[f"{rooms} rooms x {k} participants, full mesh, audio {'on' if audio else 'off'}"],
    )


# ---------------------------------------------------------------------------------------------
# orchestrator
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A child process speaking JSON lines on stdout; stopped by its PID only."""

    def __init__(self, module: str, argv: list[str], label: str) -> None:
        self.label = label
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        self.pid = self.proc.pid

    def expect(self, event: str, within: float) -> dict:
        """Next JSON line with this event; raises if the child exits or is silent too long."""
        import selectors

        deadline = time.monotonic() + within
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while time.monotonic() < deadline:
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    break
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"{self.label} (pid {self.pid}) exited")
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if msg.get("event") == "error":
                    raise RuntimeError(f"{self.label}: {msg.get('message')}")
                if msg.get("event") == event:
                    return msg
        finally:
            sel.close()
        raise TimeoutError(f"{self.label} (pid {self.pid}): no {event!r} within {within} s")

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


def http_json(url: str, within: float = 5.0) -> dict:
    import urllib.request

    with urllib.request.urlopen(url, timeout=within) as r:
        return json.loads(r.read())


SERVER_COUNTERS = (
    "frames_gated",
    "queue_overflows",
    "keyframe_requests_sent",
    "upstream_losses",
    "sink_drops",
    "peers_failed",
    "slot_delay_ms_avg",  # since the server started, not only the window
    "slot_delay_ms_max",
)


class ParleyServer:
    """bench/load_server.py in `mode` (passthrough or reencode), in its own process."""

    def __init__(self, mode: str, args: argparse.Namespace) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.child = Child(
            "bench.load_server",
            ["--mode", mode, "--port", str(port), "--host", HOST, "--rcvbuf", str(args.rcvbuf)]
            # the lag probe's 50 timer wakeups a second cost ~1 % of a core on this VM: left
            # out where the server's CPU is compared with Janus's, which runs no such probe
            + (["--no-loop-lag"] if args.scenario == "janus" else [])
            + ["--event-loop", args.event_loop],
            f"server[{mode}]",
        )
        self.pid = self.child.pid
        self.verify = "bytes" if mode == "passthrough" else "decode"

    def wait_ready(self) -> None:
        self.child.expect("listening", 30)

    def bot_spec(self) -> dict:
        return {"server": self.url, "verify": self.verify}

    def stats(self) -> dict:
        return http_json(self.url + "/stats")

    def lag(self, reset: bool = False) -> dict:
        return http_json(self.url + "/lag" + ("?reset=1" if reset else ""))

    def counters(self, stats: dict) -> dict:
        return {k: v for k, v in stats.items() if k in SERVER_COUNTERS}

    def stop(self) -> None:
        self.child.stop()


class JanusBaseline:
    """Janus 1.1.2's VideoRoom (bench/janus_server.py); the bots speak its REST API."""

    def __init__(self, args: argparse.Namespace) -> None:
        from bench.janus_server import JanusServer

        self.server = JanusServer(HOST)
        self.pid = 0
        self.version = None

    def wait_ready(self) -> None:
        self.server.start()
        self.pid = self.server.pid
        self.version = self.server.version

    def bot_spec(self) -> dict:
        # Janus forwards the publisher's payload unchanged: probes recognise frames by bytes
        return {"server": "", "janus": self.server.url, "verify": "bytes"}

    def stats(self) -> dict:
        return self.server.stats()

    def lag(self, reset: bool = False) -> dict:
        return {"lag_samples": 0, "note": "not applicable (Janus: C, one thread per handle)"}

    def counters(self, stats: dict) -> dict:
        return {
            "janus_version": self.version,
            "packets_counted_by": "Janus Admin API handle_info, webrtc.media.*.stats.out.packets",
            "bytes_sent_total": stats.get("bytes_sent"),
            "nacks_out_total": stats.get("nacks_out"),
        }

    def stop(self) -> None:
        self.server.stop()


def make_server(mode: str, args: argparse.Namespace):
    if mode == "janus":
        return JanusBaseline(args)
    return ParleyServer(mode, args)


def run_mode(scenario: Scenario, mode: str, args: argparse.Namespace) -> dict:
    """One server process in `mode` under the scenario's load; returns the figures."""
    server = make_server(mode, args)
    bots: list[Child] = []
    profiler = None
    try:
        server.wait_ready()
        time.sleep(1.0)
        rss_idle = read_proc_rss(server.pid)
        groups = [scenario.rooms[i :: args.bot_procs] for i in range(args.bot_procs)]
        for i, rooms in enumerate(g for g in groups if g):
            spec = {
                **server.bot_spec(),
                "host": HOST,
                "rooms": [[p.__dict__ for p in room] for room in rooms],
                "fps": scenario.fps,
                "bitrate": scenario.bitrate,
                "size": [scenario.width, scenario.height],
                "stagger": args.stagger,
                "rcvbuf": args.rcvbuf,
            }
            bots.append(Child("bench.load_bots", [json.dumps(spec)], f"bots{i}"))
        ready = [b.expect("ready", args.join_timeout) for b in bots]
        ttff = [t for r in ready for t in r["ttff"]]
        missing = sum(r["missing"] for r in ready)
        time.sleep(args.warmup)

        def sample(last: bool = False) -> Sample:
            # the server's counters are read outside the CPU window (before its first reading,
            # after its last): answering them costs Janus ~3 ms with 9 handles (Admin API)
            stats = server.stats() if not last else None
            at = time.monotonic()
            cpu = read_proc_cpu(server.pid)
            bot_cpu = {b.pid: read_proc_cpu(b.pid) for b in bots}
            machine = read_machine_cpu()
            if stats is None:
                stats = server.stats()
            return Sample(
                at=at,
                server_cpu=cpu,
                bot_cpu=bot_cpu,
                machine=machine,
                packets_sent=stats["packets_sent"],
                peers_connected=stats.get("peers_connected", stats.get("peers", 0)),
                server_drops=read_udp_drops([server.pid]),
                bot_drops=read_udp_drops([b.pid for b in bots]),
            )

        for b in bots:
            b.send("mark")
        for b in bots:
            b.expect("marked", 10)
        server.lag(reset=True)
        first = sample()
        if args.profile and mode != "janus":  # py-spy profiles Python processes only
            profiler = start_profiler(server.pid, args.window, profile_prefix(args, scenario, mode))
        time.sleep(args.window)
        last = sample(last=True)
        for b in bots:
            b.send("report")
        reports = [b.expect("report", 30) for b in bots]
        server_stats = server.stats()
        lag = server.lag()
        rss_end = read_proc_rss(server.pid)
        w = window(first, last)
        probe_seconds = min(r["seconds"] for r in reports)
        edges = scenario.edges()
        result = figures(
            w,
            probe_seconds=probe_seconds,
            video_streams=sum(k == "video" for _, _, k in edges),
            audio_streams=sum(k == "audio" for _, _, k in edges),
            pairs=[p for r in reports for p in r["pairs"]],
            ttff=ttff,
            latencies=[x for r in reports for x in r["latencies"]],
            publisher_pace=[x for r in reports for x in r["pace"]],
            participants=sum(len(room) for room in scenario.rooms),
            rss_idle=rss_idle,
            rss_end=rss_end,
            cores=os.cpu_count() or 1,
        )
        lost = first.peers_connected - last.peers_connected
        if lost > 0 or w.packets < 0:
            # counters of closed connections vanish: the window's differences mean nothing
            result["verdict"] = (
                f"invalid: {lost} peers disconnected in the window | " + (result["verdict"])
            )
        result["server_loop_lag_ms"] = {k: v for k, v in lag.items() if k != "lag_samples"}
        result["bot_loop_lag_ms_p95"] = [r.get("lag_ms_p95") for r in reports]
        result["pairs_without_first_frame"] = missing
        kbps = [k for r in ready for k in r["clip_kbps"]]
        result["publisher_video_kbps"] = _div(sum(kbps), len(kbps), 1)
        result["audio_frames_per_s"] = _div(
            sum(r["audio_frames"] for r in reports), probe_seconds, 1
        )
        result["server_counters"] = server.counters(server_stats)
        result["unknown_frames"] = sum(r.get("unknown_frames", 0) for r in reports)
        if profiler is not None:
            result["profile"] = finish_profiler(profiler, profile_prefix(args, scenario, mode))
        for b in bots:
            b.send("quit")
        return result
    finally:
        if profiler is not None and profiler.poll() is None:
            os.kill(profiler.pid, signal.SIGTERM)
            profiler.wait(timeout=10)
        for b in bots:
            b.stop()
        server.stop()


def profile_prefix(args: argparse.Namespace, scenario: Scenario, mode: str) -> str:
    return f"{args.profile}-{scenario.name}{len(scenario.rooms)}-{mode}"


def start_profiler(pid: int, seconds: float, prefix: str) -> subprocess.Popen:
    """py-spy samples the server (all threads, native frames off) for the window."""
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200"]
        + ["--nonblocking", "--function", "--format", "raw", "-o", prefix + ".txt"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def finish_profiler(proc: subprocess.Popen, prefix: str) -> dict:
    proc.wait(timeout=60)
    try:
        with open(prefix + ".txt") as f:
            summary = summarize_profile(f.read())
    except FileNotFoundError:
        return {"error": "py-spy wrote no profile"}
    summary["file"] = prefix + ".txt"
    return summary


def print_run(name: str, mode: str, f: dict) -> None:
    print(f"\n== {name} / {mode} ==")
    for key, value in f.items():
        if key == "profile":
            print("  profile (share of samples, leaf frames):")
            for frame, share in value.get("self", [])[:10]:
                print(f"    {share:6.1%}  {frame}")
            continue
        print(f"  {key:28s} {value}")


def code_state() -> str:
    """The commit measured, and which media/ files differed from it (work in progress)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*a: str) -> str:
        try:
            done = subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.rstrip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [line[3:] for line in git("status", "--short", "--", "media", "bench").splitlines()]
    return head + (f" + uncommitted {', '.join(dirty)}" if dirty else "")


SIDE_BY_SIDE = (
    "server_cores",
    "ms_per_video_stream_s",
    "ms_per_delivered_video_stream_s",
    "ms_per_packet",
    "packets_per_s",
    "subscriber_fps_mean",
    "subscriber_fps_min",
    "delivery_ratio",
    "frame_loss_gaps",
    "ttff_p50_s",
    "ttff_p95_s",
    "latency_p50_ms",
    "latency_p95_ms",
    "rss_mb_per_participant",
    "rss_mb",
    "udp_drops_server",
    "bot_cores",
    "other_cores",
    "machine_busy",
    "verdict",
)


def compare_janus(runs: dict[str, dict]) -> dict:
    """Parley (passthrough) over Janus, from one invocation's two runs (pure).

    With subscribers the unit is server CPU per forwarded video stream-second (nominal and
    delivered); without (ingest only) it is the share of a core spent on the publisher.
    """
    a, b = runs.get("passthrough", {}), runs.get("janus", {})
    if "error" in a or "error" in b or not a or not b:
        return {"parley_over_janus": None}
    out = {"ingest_pct_core_parley": None, "ingest_pct_core_janus": None}
    if a.get("video_streams"):
        key = "ms_per_delivered_video_stream_s"
        out["parley_over_janus"] = _div(
            a["ms_per_video_stream_s"] or 0, b["ms_per_video_stream_s"] or 0, 2
        )
        out["parley_over_janus_delivered"] = _div(a[key] or 0, b[key] or 0, 2)
    else:
        out["ingest_pct_core_parley"] = round(100 * a["server_cores"], 2)
        out["ingest_pct_core_janus"] = round(100 * b["server_cores"], 2)
        out["parley_over_janus"] = _div(a["server_cores"], b["server_cores"], 2)
    return out


def print_side_by_side(step: dict) -> None:
    runs = step["runs"]
    a, b = runs.get("passthrough", {}), runs.get("janus", {})
    print("\n== Parley passthrough vs Janus 1.1.2 VideoRoom (same invocation) ==")
    print(f"  {'figure':34s} {'parley':>14s} {'janus':>14s}")
    for key in SIDE_BY_SIDE:
        va, vb = a.get(key, a.get("error", "")), b.get(key, b.get("error", ""))
        if key == "verdict":
            print(f"  verdict parley: {va}\n  verdict janus:  {vb}")
            continue
        print(f"  {key:34s} {str(va):>14s} {str(vb):>14s}")
    ratio = step.get("parley_over_janus")
    if step.get("ingest_pct_core_parley") is not None:
        print(
            f"  ingest, % of a core: parley {step['ingest_pct_core_parley']}"
            f", janus {step['ingest_pct_core_janus']}; parley / janus {ratio}x"
        )
    elif ratio is not None:
        print(f"  parley / janus, server CPU per forwarded video stream-second: {ratio}x")
        print(
            "  parley / janus, per delivered video stream-second:"
            f" {step.get('parley_over_janus_delivered')}x"
        )
    print("  (Janus packets: RTP packets Janus sent, from its Admin API handle_info)")


SWEEP_COLUMNS = (
    ("server_cores", "server cores"),
    ("ms_per_video_stream_s", "ms/video stream-s"),
    ("ms_per_packet", "ms/packet"),
    ("packets_per_s", "pkt/s"),
    ("subscriber_fps_mean", "fps"),
    ("frame_loss_gaps", "loss"),
    ("latency_p95_ms", "lat p95 ms"),
    ("ttff_p95_s", "ttff p95 s"),
    ("udp_drops_server", "srv drops"),
    ("verdict", "verdict"),
)


def print_sweep(steps: list[dict]) -> None:
    print("\n== sweep ==")
    print(" | ".join(["rooms", "mode"] + [title for _, title in SWEEP_COLUMNS]))
    for step in steps:
        for mode, f in step["runs"].items():
            cells = [str(step["rooms"]), mode]
            cells += [str(f.get(key, f.get("error", ""))) for key, _ in SWEEP_COLUMNS]
            print(" | ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("rooms", "janus", "triad20"), default="rooms")
    parser.add_argument("--rooms", default="1", help="a number, or a list to sweep: 5,10,20")
    parser.add_argument("--participants", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=8, help="janus scenario")
    parser.add_argument("--fps", type=int, choices=(15, 30), default=None)
    parser.add_argument("--bitrate", type=int, default=None, help="clip bitrate, bit/s")
    parser.add_argument("--no-audio", action="store_true")
    parser.add_argument(
        "--baseline",
        choices=("reencode", "janus"),
        default=None,
        help="also run the same load against the re-encoding baseline, or against Janus 1.1.2"
        " (VideoRoom; --scenario janus only)",
    )
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--bot-procs", type=int, default=1)
    parser.add_argument("--stagger", type=float, default=0.2, help="seconds between rooms")
    parser.add_argument("--join-timeout", type=float, default=120.0)
    parser.add_argument(
        "--rcvbuf", type=int, default=0, help="UDP receive buffer bytes for bench sockets"
    )
    parser.add_argument(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the server's event loop (server.py's default is uvloop)",
    )
    parser.add_argument("--profile", default=None, help="py-spy raw profile path prefix")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.scenario == "janus" and args.subscribers < 0:
        parser.error("--subscribers must be >= 0")
    if args.baseline == "janus" and args.scenario != "janus":
        parser.error("--baseline janus needs --scenario janus")
    try:
        room_counts = [int(x) for x in args.rooms.split(",")]
    except ValueError:
        parser.error("--rooms takes a number or a comma-separated list of numbers")
    if args.scenario != "rooms":
        room_counts = [20 if args.scenario == "triad20" else 1]
    if min(room_counts) < 1 or args.participants < 2 or args.bot_procs < 1:
        parser.error("need --rooms >= 1, --participants >= 2, --bot-procs >= 1")
    if args.window < 2 or args.warmup < 0:
        parser.error("need --window >= 2 and --warmup >= 0")
    modes = ["passthrough"] + ([args.baseline] if args.baseline else [])
    load = os.getloadavg()
    results = {
        "scenario": args.scenario,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "loadavg_before": [round(x, 2) for x in load],
        "argv": sys.argv[1:] if argv is None else argv,
        "code": code_state(),
        "steps": [],
    }
    print(f"code: {results['code']}")
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.rcvbuf:
        print(f"UDP receive buffers of bench sockets: {args.rcvbuf} bytes (capped by rmem_max)")
    for rooms in room_counts:
        scenario = build_scenario(args, rooms)
        print(f"\nscenario {scenario.name}: {'; '.join(scenario.notes)}; {scenario.fps} fps")
        step = {"rooms": rooms, "notes": scenario.notes, "fps": scenario.fps, "runs": {}}
        results["steps"].append(step)
        for mode in modes:
            try:
                step["runs"][mode] = f = run_mode(scenario, mode, args)
            except (RuntimeError, TimeoutError, OSError) as exc:
                step["runs"][mode] = f = {"error": f"{type(exc).__name__}: {exc}"}
            print_run(scenario.name, mode, f)
        if args.baseline == "reencode" and all("error" not in r for r in step["runs"].values()):
            a, b = step["runs"]["passthrough"], step["runs"][args.baseline]
            ratio = _div(b["ms_per_video_stream_s"] or 0, a["ms_per_video_stream_s"] or 0, 2)
            key = "ms_per_delivered_video_stream_s"
            delivered = _div(b[key] or 0, a[key] or 0, 2)
            step["reencode_over_passthrough"] = ratio
            step["reencode_over_passthrough_delivered"] = delivered
            print(f"\nre-encode / passthrough, server CPU per forwarded video stream: {ratio}x")
            print(f"re-encode / passthrough, per video stream-second delivered: {delivered}x")
        if args.baseline == "janus":
            step.update(compare_janus(step["runs"]))
            print_side_by_side(step)
    if len(results["steps"]) > 1:
        print_sweep(results["steps"])
    results["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
