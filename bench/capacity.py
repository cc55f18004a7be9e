"""Machine capacity: `server.py serve --workers 1` against `--workers 2`, the same three-party
rooms of the same bots, in one invocation (docs/scaling.md, "Workers: one node per core").

    .venv/bin/python -m bench.capacity --rooms 8,14,20 --window 15 --warmup 5
    .venv/bin/python -m bench.capacity --rooms 10 --repeat 2 --json /tmp/cap.json
    .venv/bin/python -m bench.capacity --rooms 14 --profile /tmp/cap  # py-spy of each process

For each room count, two runs measured by bench/run_load.py's `run_mode` (same window, same
figures as bench/README.md):

* **workers=1**: `server.py serve` as shipped (one process, SQLite ledger, no Redis), its rooms
  created in its data directory before it starts, as bench/product_path.py does.
* **workers=2**: `server.py serve --workers 2 --redis <url>` with a redis-server this bench
  starts (AOF, fsync always, a temporary directory). The rooms are created in the Redis
  ledger before it starts and listed under the two workers' node ids alternately
  (`parley:owned:bench-w<i>`), so each worker takes its half back at start, as after a
  restart. The bots connect to the public port (the front); the worker the front chose
  answers `redirect` for the other worker's rooms and the bots follow it, as the page does.
  The server's CPU is the supervisor (with the front) + both workers + redis-server, read from
  /proc for each, and reported apart too (`server_parts`).

Bots: bench/product_path.py's (socket.io `/parley`, the `offer` event, the mediator admits
the parties), following `redirect`, in `--bot-procs` processes of their own process group. Their
CPU is `bot_cores` in each run: they share the machine's cores with the server, so what a
server arm can use is what the bots leave.

A room count is **held** when subscribers got ≥ 14 fps on average, frame loss (gaps) < 1 % and
no peer was lost in the window. Printed: per room count both arms side by side; the rooms held
per arm and their ratio; and server CPU per forwarded stream-second and forwarded streams per
server core for each arm (the per-core figure the two arms' capacity follows from).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from unittest import mock

from bench import product_path, run_load
from bench.run_load import HOST

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELD_FPS, HELD_LOSS = 14.0, 0.01
SHOWN = (
    "server_cores",
    "ms_per_stream_s",
    "streams_per_server_core",
    "subscriber_fps_mean",
    "subscriber_fps_min",
    "frame_loss_gaps",
    "delivery_ratio",
    "latency_p95_ms",
    "bot_cores",
    "other_cores",
    "machine_busy",
    "held",
    "verdict",
)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (/proc/<pid>/task/*/children)."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    return out


# ---------------------------------------------------------------------------------------------
# the two servers
# ---------------------------------------------------------------------------------------------


class RedisServer:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="parley-cap-redis-")
        self.port = run_load.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--dir", self.dir, "--appendonly", "yes", "--appendfsync", "always"]
            + ["--save", "", "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=self.port).ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        shutil.rmtree(self.dir, ignore_errors=True)


def create_redis_sessions(url: str, secret: bytes, rooms: int, workers: int) -> list[list[dict]]:
    """``rooms`` three-party mediations in the Redis ledger, listed under bench-w0, bench-w1, …
    in turn (each worker takes its own back at start)."""
    import redis

    from cluster.ledger import RedisLedgerStore
    from rooms.service import ParticipantSpec, SessionService
    from signaling.tokens import TokenSigner

    signer = TokenSigner(secret)
    store = RedisLedgerStore.from_url(url)
    service = SessionService(store)
    client = redis.Redis.from_url(url)
    out = []
    try:
        for r in range(rooms):
            specs = [
                ParticipantSpec(f"{role.title()} {side or 'M'}{r}", role, side)
                for role, side in product_path.ROLES
            ]
            state = service.create_session(
                "mediation",
                actor="staff:bench",
                title=f"Bench room {r}",
                case_number=f"B-{r}",
                participants=specs,
            )
            client.sadd(f"parley:owned:bench-w{r % workers}", state.id)
            people = sorted(
                state.participants.values(), key=lambda p: (p.role != "mediator", p.side)
            )
            out.append(
                [
                    {
                        "pid": p.id,
                        "role": p.role,
                        "token": signer.issue(state.id, p.id, p.role, ttl=6 * 3600),
                    }
                    for p in people
                ]
            )
    finally:
        with contextlib.suppress(Exception):
            store.close()
        client.close()
    return out


class Serve:
    """`server.py serve [--workers N]` in its own process; its CPU, memory and UDP drops are
    those of its whole process tree (the supervisor and its workers) and ``extra`` (Redis)."""

    def __init__(self, args, data_dir: str, sessions, workers: int, redis=None, secret=None):
        self.args, self.workers, self.redis = args, workers, redis
        self.tokens = {who["pid"]: who for room in sessions for who in room}
        self.out_path = os.path.join(data_dir, "server.out")
        self.err = open(os.path.join(data_dir, "server.log"), "w")  # noqa: SIM115
        self.out = open(self.out_path, "w")  # noqa: SIM115
        cmd = [sys.executable, os.path.join(ROOT, "server.py"), "serve", "--host", "127.0.0.1"]
        cmd += ["--port", "0", "--data-dir", data_dir, "--ice-host", HOST, "--no-demo"]
        cmd += ["--log-format", "json", "--event-loop", args.event_loop]
        env = {**os.environ, "PARLEY_MAX_SLOTS": str(args.slots), "PYTHONUNBUFFERED": "1"}
        if workers > 1:
            cmd += ["--workers", str(workers), "--redis", redis.url]
            env |= {"PARLEY_NODE_ID": "bench", "PARLEY_SECRET": secret.hex()}
        self.proc = subprocess.Popen(
            cmd, stdout=self.out, stderr=self.err, cwd=ROOT, env=env, start_new_session=True
        )
        self.pid = self.proc.pid
        self.url = ""
        self.worker_urls: list[str] = []
        self.readings: list[dict[str, float]] = []  # per-part CPU at each of run_mode's reads

    def tree(self) -> list[int]:
        return [self.pid, *children(self.pid)]

    def parts(self) -> dict[str, int]:
        named = {"supervisor+front" if self.workers > 1 else "server": self.pid}
        for i, pid in enumerate(children(self.pid)):
            named[f"worker{i}"] = pid
        if self.redis is not None:
            named["redis"] = self.redis.proc.pid
        return named

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}); see {self.err.name}")
            with open(self.out_path) as f:
                text = f.read()
            m = re.search(r"^LISTENING (\S+):(\d+)$", text, re.M)
            if m:
                self.url = f"http://127.0.0.1:{m.group(2)}"
                ports = re.findall(r"^WORKER \S+ PID \d+ PORT (\d+)$", text, re.M)
                self.worker_urls = [f"http://127.0.0.1:{p}" for p in ports] or [self.url]
                if all(_ready(u) for u in self.worker_urls):
                    return
            time.sleep(0.2)
        raise TimeoutError("server not ready within 90 s")

    def bot_spec(self) -> dict:
        return {"server": self.url, "verify": "bytes", "tokens": self.tokens, "product": True}

    def stats(self) -> dict:
        total: dict = {}
        for url in self.worker_urls:
            for key, value in product_path.metrics(url).items():
                total[key] = total.get(key, 0) + value
        return total

    def lag(self, reset: bool = False) -> dict:
        return {"note": "server.py runs no lag probe"}

    def counters(self, stats: dict) -> dict:
        return {k: v for k, v in stats.items() if k in run_load.SERVER_COUNTERS}

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                for pid in self.tree():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.out.close()
        self.err.close()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
            return json.loads(r.read()).get("status") == "ready"
    except OSError:
        return False


@contextlib.contextmanager
def measuring(server: Serve):
    """run_load.run_mode with ``server``, its CPU/RSS/drops read over the whole tree, and the
    bots as this module's bot processes, each in a process group of its own."""
    start, finish = run_load.start_profiler, run_load.finish_profiler
    cpu, rss, drops = run_load.read_proc_cpu, run_load.read_proc_rss, run_load.read_udp_drops

    def tree_cpu(pid: int) -> float:
        if pid != server.pid:
            return cpu(pid)
        parts = {}
        for name, p in server.parts().items():
            with contextlib.suppress(OSError):
                parts[name] = cpu(p)
        server.readings.append(parts)
        return sum(parts.values())

    def tree_rss(pid: int) -> int:
        if pid != server.pid:
            return rss(pid)
        return sum(rss(p) for p in server.parts().values())

    def tree_drops(pids: list[int]) -> int:
        if pids == [server.pid]:
            pids = list(server.parts().values())
        return drops(pids)

    class BotChild(run_load.Child):
        def __init__(self, module: str, argv: list[str], label: str) -> None:
            if module == "bench.load_bots":
                module, argv = "bench.capacity", ["bots", *argv]
            self.label = label
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module, *argv],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                start_new_session=True,  # the load generator in a process group of its own
            )
            self.pid = self.proc.pid

    def start_profilers(pid: int, seconds: float, prefix: str):
        """py-spy on every Python process of the server (the single server, or the
        supervisor and each worker), each to <prefix>-<part>.txt."""
        return {
            name: (
                start(p, seconds, f"{prefix}-{name}"),
                f"{prefix}-{name}",
            )
            for name, p in server.parts().items()
            if name != "redis"
        }

    def finish_profilers(procs: dict, prefix: str) -> dict:
        return {name: finish(proc, path) for name, (proc, path) in procs.items()}

    class Profilers(dict):  # run_mode polls and kills "the" profiler when it fails
        pid = 0

        def poll(self):
            return 0

    with mock.patch.multiple(
        run_load,
        make_server=lambda mode, args: server,
        Child=BotChild,
        start_profiler=lambda pid, sec, prefix: Profilers(start_profilers(pid, sec, prefix)),
        finish_profiler=finish_profilers,
        read_proc_cpu=tree_cpu,
        read_proc_rss=tree_rss,
        read_udp_drops=tree_drops,
    ):
        yield


# ---------------------------------------------------------------------------------------------
# the bots: product_path's, following `redirect` (python -m bench.capacity bots '<spec>')
# ---------------------------------------------------------------------------------------------


def bots_main(argv: list[str]) -> int:
    import asyncio

    import socketio

    from signaling.namespace import NAMESPACE

    load_bots, product_cls = product_path.product_bot_process()

    class RedirectedBots(product_cls):
        async def connect(self, name: str, bot, token: str):
            """As the page does: a ``redirect`` refusal names the worker to connect to, a
            ``session_moving`` one asks to try again in a moment."""
            url = self.url
            for _attempt in range(20):
                sio, welcome = self.socket_for(bot)
                refused: dict = {}

                def on_refused(data=None, refused=refused):
                    data = data.get("data", data) if isinstance(data, dict) else None
                    if isinstance(data, dict):
                        refused.update(data)

                sio.on("connect_error", on_refused, namespace=NAMESPACE)
                try:
                    await self.open(sio, url, token)
                except socketio.exceptions.ConnectionError:
                    if refused.get("code") == "redirect":
                        url = refused["url"]
                    elif refused.get("code") == "session_moving":
                        await asyncio.sleep(0.5)
                    else:
                        raise
                    continue
                return sio, welcome
            raise RuntimeError(f"{name}: never served")

    load_bots.BotProcess = RedirectedBots
    return load_bots.main(argv)


# ---------------------------------------------------------------------------------------------
# orchestrator
# ---------------------------------------------------------------------------------------------


def run_arm(args, scenario_core, rooms: int, workers: int) -> dict:
    data_dir = tempfile.mkdtemp(prefix=f"parley-cap-w{workers}-")
    redis = None
    try:
        if workers > 1:
            redis = RedisServer()
            secret = secrets.token_bytes(32)
            sessions = create_redis_sessions(redis.url, secret, rooms, workers)
            server = Serve(args, data_dir, sessions, workers, redis, secret)
        else:
            sessions = product_path.create_sessions(data_dir, rooms)
            server = Serve(args, data_dir, sessions, 1)
        scenario = product_path.product_scenario(scenario_core, sessions, args.slots)
        with measuring(server):
            f = product_path.run_one(scenario, "product", args)
        if len(server.readings) >= 2 and "error" not in f:
            first, last = server.readings[0], server.readings[-1]
            seconds = f["window_s"]
            f["server_parts_cores"] = {
                k: round((last[k] - first.get(k, 0.0)) / seconds, 3) for k in last
            }
        streams = (f.get("video_streams") or 0) + (f.get("audio_streams") or 0)
        if f.get("server_cores"):
            f["streams_per_server_core"] = round(streams / f["server_cores"], 1)
        f["held"] = held(f)
        for part, summary in (f.get("profile") or {}).items():
            print(f"\n  py-spy, {rooms} rooms, --workers {workers}, {part} (leaf frames):")
            for frame, share in summary.get("self", [])[:8]:
                print(f"    {share:6.1%}  {frame}")
        return f
    finally:
        if redis is not None:
            redis.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def held(f: dict) -> bool:
    return (
        "error" not in f
        and (f.get("subscriber_fps_mean") or 0) >= HELD_FPS
        and (f.get("frame_loss_gaps") if f.get("frame_loss_gaps") is not None else 1) < HELD_LOSS
        and not str(f.get("verdict", "")).startswith("invalid")
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bots"]:
        return bots_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", default="8,14,20", help="comma-separated room counts")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="the arm compared with 1")
    parser.add_argument("--fps", type=int, choices=(15, 30), default=15)
    parser.add_argument("--bitrate", type=int, default=None)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--bot-procs", type=int, default=2)
    parser.add_argument("--stagger", type=float, default=0.2)
    parser.add_argument("--join-timeout", type=float, default=180.0)
    parser.add_argument("--rcvbuf", type=int, default=0)
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--slots", type=int, default=7)
    parser.add_argument(
        "--profile", default=None, help="py-spy raw profiles of each server process: prefix"
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    args.scenario, args.participants, args.subscribers, args.no_audio = "rooms", 3, 0, False
    profile = args.profile
    counts = [int(x) for x in args.rooms.split(",") if x.strip()]
    results = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.gmtime()),
        "machine": product_path.machine(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "argv": argv,
        "code": run_load.code_state(),
        "steps": [],
    }
    print(f"code: {results['code']}; {results['started']}; machine: {results['machine']}")
    print(f"load average before: {results['loadavg_before']}", flush=True)
    arms = (1, args.workers)
    for _ in range(args.repeat):
        for rooms in counts:
            core = run_load.build_scenario(args, rooms)
            step = {"rooms": rooms}
            for workers in arms:
                args.profile = f"{profile}-r{rooms}-w{workers}" if profile else None
                f = step[f"workers{workers}"] = run_arm(args, core, rooms, workers)
                run_load.print_run(f"{rooms} rooms, --workers {workers}", "product", f)
            results["steps"].append(step)
            print_step(step, arms)
    summary = summarize(results["steps"], arms)
    results["summary"] = summary
    results["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print("\n== summary ==")
    for key, value in summary.items():
        print(f"  {key:40s} {value}")
    print(f"load average after: {results['loadavg_after']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


def print_step(step: dict, arms) -> None:
    a, b = (step[f"workers{w}"] for w in arms)
    print(f"\n== {step['rooms']} rooms: --workers {arms[0]} vs --workers {arms[1]} ==")
    for key in (*SHOWN, "server_parts_cores", "error"):
        if key in a or key in b:
            print(f"  {key:28s} {a.get(key)!s:>24s} {b.get(key)!s:>24s}")


def summarize(steps: list[dict], arms) -> dict:
    out: dict = {}
    for w in arms:
        runs = [s[f"workers{w}"] for s in steps]
        held_rooms = [s["rooms"] for s in steps if s[f"workers{w}"].get("held")]
        out[f"workers{w}_rooms_held_max"] = max(held_rooms, default=0)
        ms = [r["ms_per_stream_s"] for r in runs if r.get("held") and r.get("ms_per_stream_s")]
        out[f"workers{w}_ms_per_stream_s_held"] = ms
        out[f"workers{w}_bot_cores"] = [r.get("bot_cores") for r in runs]
    a, b = (out[f"workers{w}_rooms_held_max"] for w in arms)
    out["rooms_held_ratio"] = round(b / a, 3) if a else None
    return out


if __name__ == "__main__":
    sys.exit(main())
