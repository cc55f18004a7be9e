"""The product path against the media core: `server.py serve` and the bench's MediaEngine server,
the same rooms of the same bots, side by side in one invocation.

    .venv/bin/python -m bench.product_path --rooms 10 --bot-procs 2 --window 15 --warmup 5
    .venv/bin/python -m bench.product_path --rooms 10 --repeat 3        # core, product, x3
    .venv/bin/python -m bench.product_path --rooms 5 --profile /tmp/pp  # py-spy of both servers

*core*: bench/load_server.py (a MediaEngine behind three HTTP routes; the plan is every
publisher of a room to every other member), bots offering one slot pair per other member (2).
*product*: `server.py serve` in its own process, the whole product: socket.io `/parley`, the
rooms service and its SQLite ledger, the conductor (plan, views, the 1 s tick), the agreement
desk and recorder wiring, metrics. Each room is a three-party mediation session (mediator,
party A, party B) created through `rooms.SessionService` in the server's data directory before
the server starts (the server recovers it from the ledger, as after a restart). Each bot
connects to `/parley` with its invitation token, parties record their consents, every bot sends
the `offer` event with the number of slot pairs `welcome` asks for (7, as the phone page does),
follows `slots` events, and the mediator admits both parties once everyone's media is up.

Both runs use bench/run_load.py's measurement (same window, same figures, bench/README.md); the
core server runs without its event-loop lag probe, as the product server has none. The product's
overhead is the ratio product / core of server CPU per forwarded stream-second (all streams,
audio and video), and of memory. TTFF means different things here: from the offer (core), from
the admission (product).

Memory per participant: both servers load the aiortc stack (aiortc, PyAV, aioice, pylibsrtp,
~36 MB) with their first participant, not at start, so ``rss_mb_per_participant`` (loaded minus
idle, over the participants) carries that one-time cost divided by the participant count.
``rss_mb_per_participant_stack_loaded`` takes it out: ``media_stack_mb`` is what importing the
stack adds to a fresh interpreter that has imported the same server module first (the median of
five interpreters, once per server kind in the invocation, `stack_rss_mb`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace

from bench import run_load
from bench.run_load import HOST, Participant, Scenario

CONSENTS = ("online_mediation", "session_rules")
ROLES = (("mediator", None), ("party", "A"), ("party", "B"))
COMPARED = (
    "server_cores",
    "ms_per_stream_s",
    "ms_per_video_stream_s",
    "ms_per_packet",
    "packets_per_s",
    "delivery_ratio",
    "frame_loss_gaps",
    "latency_p50_ms",
    "latency_p95_ms",
    "ttff_p95_s",
    "rss_idle_mb",
    "rss_mb",
    "rss_mb_per_participant",
    "media_stack_mb",
    "rss_mb_per_participant_stack_loaded",
    "bot_cores",
    "other_cores",
    "machine_busy",
    "verdict",
)


# ---------------------------------------------------------------------------------------------
# the product server
# ---------------------------------------------------------------------------------------------


def create_sessions(data_dir: str, rooms: int) -> list[list[dict]]:
    """One three-party mediation session per room, created through the rooms service in the
    server's data directory; each participant with its invitation token."""
    from pathlib import Path

    from rooms.ledger import SqliteLedgerStore
    from rooms.service import ParticipantSpec, SessionService
    from signaling.tokens import TokenSigner, load_or_create_secret

    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    signer = TokenSigner(load_or_create_secret(root / "secret.key"))
    store = SqliteLedgerStore(root / "ledger.sqlite3")
    service = SessionService(store)
    out = []
    for r in range(rooms):
        specs = [
            ParticipantSpec(f"{role.title()} {side or 'M'}{r}", role, side) for role, side in ROLES
        ]
        state = service.create_session(
            "mediation",
            actor="staff:bench",
            title=f"Bench room {r}",
            case_number=f"B-{r}",
            participants=specs,
        )
        people = sorted(state.participants.values(), key=lambda p: (p.role != "mediator", p.side))
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
    with contextlib.suppress(Exception):
        store.close()
    return out


def product_scenario(core: Scenario, sessions: list[list[dict]], slots: int) -> Scenario:
    """The core scenario's rooms, each participant renamed to its session participant id and
    offering the slot pairs `welcome` asks for."""
    rooms = []
    for room, people in zip(core.rooms, sessions, strict=True):
        rooms.append(
            [
                replace(p, name=who["pid"], room=room[0].room, slots=slots)
                for p, who in zip(room, people, strict=True)
            ]
        )
    return Scenario("product", rooms, core.fps, core.bitrate, notes=list(core.notes))


def metrics(url: str) -> dict:
    """`parley_media_*` gauges of the product server's /metrics (loopback, no token)."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("parley_media_"):
            name, _, value = line.partition(" ")
            out[name.removeprefix("parley_media_")] = int(float(value))
    return out


# `server.py serve` under tracemalloc (`-X tracemalloc=1 -c TRACED_SERVE PREFIX serve ...`):
# SIGUSR2 dumps a snapshot to PREFIX-<n>.tracemalloc (written aside, then renamed into place)
TRACED_SERVE = """
import os, runpy, signal, sys, tracemalloc
prefix, taken = sys.argv.pop(1), [0]
def dump(signum, frame):
    taken[0] += 1
    path = f"{prefix}-{taken[0]}.tracemalloc"
    tracemalloc.take_snapshot().dump(path + ".part")
    os.rename(path + ".part", path)
signal.signal(signal.SIGUSR2, dump)
sys.argv[0] = "server.py"
runpy.run_path("server.py", run_name="__main__")
"""


def memory_growth(idle: str, loaded: str, participants: int, top: int = 25) -> list[str]:
    """What the loaded server holds beyond the idle one, by source line and by file, per
    participant (Python allocations only: C libraries' own mallocs are not traced)."""
    import tracemalloc

    a, b = tracemalloc.Snapshot.load(idle), tracemalloc.Snapshot.load(loaded)
    total = sum(s.size_diff for s in b.compare_to(a, "filename"))
    lines = [
        f"Python heap growth {total / 2**20:.2f} MiB for {participants} participants:"
        f" {total / 1024 / max(1, participants):.0f} KiB each"
    ]
    for group in ("filename", "lineno"):
        lines.append(f"-- by {group} (KiB per participant, objects per participant)")
        for s in b.compare_to(a, group)[:top]:
            frame = s.traceback[0]
            where = frame.filename.replace(os.getcwd() + "/", "")
            where = where.split("site-packages/")[-1]
            if group == "lineno":
                where += f":{frame.lineno}"
            each = s.size_diff / 1024 / max(1, participants)
            lines.append(f"{each:8.1f}  {s.count_diff / max(1, participants):7.1f}  {where}")
    return lines


class ProductServer:
    """`server.py serve` in its own process, on a data directory holding the bench's sessions."""

    def __init__(self, args: argparse.Namespace, data_dir: str, sessions: list[list[dict]]):
        self.args = args
        self.data_dir = data_dir
        self.tokens = {who["pid"]: who for room in sessions for who in room}
        port = run_load.free_port()
        self.url = f"http://127.0.0.1:{port}"
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.log = open(os.path.join(data_dir, "server.log"), "w")  # noqa: SIM115
        self.traced = getattr(args, "tracemalloc", None)
        self.snapshots: list[str] = []
        launch = [sys.executable, os.path.join(root, "server.py")]
        if self.traced:  # server.py run by TRACED_SERVE: a tracemalloc snapshot on each SIGUSR2
            launch = [sys.executable, "-X", "tracemalloc=1", "-c", TRACED_SERVE, self.traced]
        self.proc = subprocess.Popen(
            launch
            + ["serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", data_dir]
            + ["--ice-host", HOST, "--no-demo", "--log-format", "json"]
            + ["--event-loop", args.event_loop],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            cwd=root,
            # what `welcome` asks for: --slots (7 is the server's default, as on the phone page)
            env={**os.environ, "PARLEY_MAX_SLOTS": str(args.slots)},
        )
        self.pid = self.proc.pid

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server.py serve exited ({self.proc.returncode}); see {self.log.name}"
                )
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if json.loads(r.read()).get("status") == "ready":
                        self.snapshot()  # the idle server (before any bot)
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError("server.py serve not ready within 60 s")

    def bot_spec(self) -> dict:
        return {"server": self.url, "verify": "bytes", "tokens": self.tokens, "product": True}

    def stats(self) -> dict:
        return metrics(self.url)

    def lag(self, reset: bool = False) -> dict:
        if not reset:  # run_mode's last reading, every bot still connected: the loaded server
            self.snapshot()
        return {"note": "server.py runs no lag probe"}

    def snapshot(self) -> None:
        """With --tracemalloc: have the server dump a tracemalloc snapshot and wait for it."""
        if not self.traced:
            return
        path = f"{self.traced}-{len(self.snapshots) + 1}.tracemalloc"
        os.kill(self.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 120
        while not os.path.exists(path):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise TimeoutError(f"no tracemalloc snapshot {path}")
            time.sleep(0.1)
        self.snapshots.append(path)

    def counters(self, stats: dict) -> dict:
        return {k: v for k, v in stats.items() if k in run_load.SERVER_COUNTERS}

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, 15)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, 9)
                self.proc.wait(timeout=5)
        self.log.close()


class CoreServer(run_load.ParleyServer):
    """bench/load_server.py without its event-loop lag probe (the product server runs none)."""

    def __init__(self, mode: str, args: argparse.Namespace) -> None:
        super().__init__(mode, argparse.Namespace(**{**vars(args), "scenario": "janus"}))


@contextlib.contextmanager
def servers(product: ProductServer | None):
    """run_load.run_mode with this module's servers, and its bot processes for the product."""
    make_server, child = run_load.make_server, run_load.Child

    class BotChild(child):
        def __init__(self, module: str, argv: list[str], label: str) -> None:
            if product is not None and module == "bench.load_bots":
                module, argv = "bench.product_path", ["bots", *argv]
            super().__init__(module, argv, label)

    run_load.make_server = lambda mode, args: (
        product if mode == "product" else CoreServer(mode, args)
    )
    run_load.Child = BotChild
    try:
        yield
    finally:
        run_load.make_server, run_load.Child = make_server, child


# ---------------------------------------------------------------------------------------------
# the product's bots (a bot process: python -m bench.product_path bots '<spec>')
# ---------------------------------------------------------------------------------------------


def product_bot_process():
    import asyncio

    import socketio

    from bench import load_bots
    from signaling.namespace import NAMESPACE

    class ProductBotProcess(load_bots.BotProcess):
        """load_bots' rooms, joined through socket.io /parley as the phone page joins."""

        def __init__(self, spec: dict) -> None:
            super().__init__(spec)
            self.sio: dict[str, socketio.AsyncClient] = {}
            self._waiting: dict[str, set[str]] = {}
            for room in self.rooms:
                self._waiting[room[0]["room"]] = {p["name"] for p in room}

        async def call(self, sio, event: str, payload: dict, within: float = 30) -> dict:
            reply = await sio.call(event, {"v": 1, **payload}, namespace=NAMESPACE, timeout=within)
            if not reply.get("ok"):
                raise RuntimeError(f"{event} refused: {reply}")
            return reply

        def socket_for(self, bot):
            """A client that follows the bot's slot map, and the future of its welcome."""
            sio = socketio.AsyncClient(reconnection=False)
            welcome = asyncio.get_running_loop().create_future()

            def on_welcome(data):
                if not welcome.done():
                    welcome.set_result(data)

            sio.on("welcome", on_welcome, namespace=NAMESPACE)
            sio.on("slots", lambda msg: bot.set_slot_map(msg["slots"]), namespace=NAMESPACE)
            return sio, welcome

        @staticmethod
        async def open(sio, url: str, token: str) -> None:
            await sio.connect(
                url,
                namespaces=[NAMESPACE],
                auth={"token": token},
                transports=["websocket"],
                wait_timeout=20,
            )

        async def connect(self, name: str, bot, token: str):
            """The bot's socket, connected to this server, and the future of its welcome."""
            sio, welcome = self.socket_for(bot)
            await self.open(sio, self.url, token)
            return sio, welcome

        async def join(self, session, p: dict) -> None:
            name, bot = p["name"], self.bots[p["name"]]
            who = self.spec["tokens"][name]
            sio, welcome = await self.connect(name, bot, who["token"])
            self.sio[name] = sio
            data = await asyncio.wait_for(welcome, 20)
            if data["slots"] != p["slots"]:
                raise RuntimeError(f"welcome asks for {data['slots']} slots, spec {p['slots']}")
            if who["role"] == "party":
                for topic in CONSENTS:
                    cmd = {"type": "record_consent", "topic": topic, "given": True}
                    await self.call(sio, "command", {"cmd": cmd})
            reply = await self.call(sio, "offer", {"sdp": await bot.create_offer()})
            await bot.accept_answer(reply["sdp"])
            bot.set_slot_map(reply["slots"])
            load_bots.receive_directly(bot.pc)
            await bot.wait_connected(within=60)
            waiting = self._waiting[p["room"]]
            waiting.discard(name)
            if not waiting:
                await self.admit(p["room"])

        async def admit(self, room_name: str) -> None:
            """Everyone's media is up: the mediator admits the parties (one command each)."""
            room = next(r for r in self.rooms if r[0]["room"] == room_name)
            roles = {p["name"]: self.spec["tokens"][p["name"]]["role"] for p in room}
            mediator = next(n for n, role in roles.items() if role == "mediator")
            at = time.monotonic()
            for name, role in roles.items():
                if role == "party":
                    cmd = {"type": "admit", "participant": name}
                    await self.call(self.sio[mediator], "command", {"cmd": cmd})
            for name in roles:  # TTFF from the admission: before it nobody sees anybody
                self.bots[name].joined_at = at

        async def refresh_slots(self, session) -> None:
            return  # the bots follow the `slots` events

        async def close(self) -> None:
            await asyncio.gather(
                *(s.disconnect() for s in self.sio.values()), return_exceptions=True
            )
            await super().close()

    return load_bots, ProductBotProcess


def bots_main(argv: list[str]) -> int:
    load_bots, cls = product_bot_process()
    load_bots.BotProcess = cls
    return load_bots.main(argv)


# ---------------------------------------------------------------------------------------------
# orchestrator
# ---------------------------------------------------------------------------------------------


def machine() -> dict:
    lscpu = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
    model = next(
        (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if "Model name" in ln), ""
    )
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release()}


def ratio(a: dict, b: dict, key: str) -> float | None:
    x, y = a.get(key), b.get(key)
    return (
        round(y / x, 3) if isinstance(x, int | float) and isinstance(y, int | float) and x else None
    )


def compare(core: dict, product: dict) -> dict:
    return {
        "product_over_core_ms_per_stream_s": ratio(core, product, "ms_per_stream_s"),
        "product_over_core_ms_per_packet": ratio(core, product, "ms_per_packet"),
        "product_over_core_rss_per_participant": ratio(core, product, "rss_mb_per_participant"),
        "product_over_core_rss_per_participant_stack_loaded": ratio(
            core, product, "rss_mb_per_participant_stack_loaded"
        ),
    }


def print_side_by_side(core: dict, product: dict, cmp: dict) -> None:
    print(f"\n  {'figure':32s} {'core':>14s} {'product':>14s}")
    for key in COMPARED:
        a, b = core.get(key), product.get(key)
        if key == "verdict":
            print(f"  {'verdict':32s} core: {a}\n  {'':32s} product: {b}")
            continue
        print(f"  {key:32s} {a!s:>14s} {b!s:>14s}")
    for key, value in cmp.items():
        print(f"  {key:44s} {value}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bots"]:
        return bots_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1, help="core/product pairs to run")
    parser.add_argument("--fps", type=int, choices=(15, 30), default=None)
    parser.add_argument("--bitrate", type=int, default=None)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--bot-procs", type=int, default=2)
    parser.add_argument("--stagger", type=float, default=0.2)
    parser.add_argument("--join-timeout", type=float, default=180.0)
    parser.add_argument("--rcvbuf", type=int, default=0)
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument(
        "--slots", type=int, default=7, help="what `welcome` asks for (PARLEY_MAX_SLOTS)"
    )
    parser.add_argument("--only", choices=("core", "product"), default=None)
    parser.add_argument("--profile", default=None, help="py-spy raw profile path prefix")
    parser.add_argument(
        "--tracemalloc",
        default=None,
        metavar="PREFIX",
        help="run server.py under tracemalloc; snapshots idle and loaded, and what each"
        " participant adds to the Python heap (its RSS figures then include tracemalloc's own)",
    )
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--idle",
        type=int,
        default=0,
        help="instead: N connected participants that publish nothing and receive nothing, each"
        " offering --slots slot pairs (the media core's cost of idle slots)",
    )
    args = parser.parse_args(argv)
    # what run_load.run_mode and build_scenario read
    args.scenario, args.participants, args.subscribers, args.no_audio = "rooms", 3, 0, False
    if args.idle:
        return idle_main(args)
    core_scenario = run_load.build_scenario(args, args.rooms)
    results = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "argv": argv,
        "code": run_load.code_state(),
        "scenario": core_scenario.notes,
        "runs": [],
    }
    print(f"code: {results['code']}; {results['started']}; machine: {results['machine']}")
    print(f"load average before: {results['loadavg_before']}")
    print(f"scenario: {'; '.join(core_scenario.notes)}; {core_scenario.fps} fps")
    for i in range(args.repeat):
        pair: dict = {}
        if args.only != "product":
            with servers(None):
                pair["core"] = run_one(core_scenario, "passthrough", args)
            run_load.print_run("core (bench/load_server.py)", "passthrough", pair["core"])
        if args.only != "core":
            data_dir = tempfile.mkdtemp(prefix="parley-product-")
            try:
                sessions = create_sessions(data_dir, args.rooms)
                scenario = product_scenario(core_scenario, sessions, args.slots)
                server = ProductServer(args, data_dir, sessions)
                with servers(server):
                    pair["product"] = run_one(scenario, "product", args)
                if len(server.snapshots) == 2:
                    people = sum(len(room) for room in scenario.rooms)
                    growth = memory_growth(*server.snapshots, people)
                    pair["product"]["python_heap_growth"] = growth
                    print("\n".join(growth))
            finally:
                shutil.rmtree(data_dir, ignore_errors=True)
            run_load.print_run("product (server.py serve)", "product", pair["product"])
        if "core" in pair and "product" in pair:
            pair["compare"] = compare(pair["core"], pair["product"])
            print(f"\n== set {i + 1}: core vs product, {args.rooms} rooms ==")
            print_side_by_side(pair["core"], pair["product"], pair["compare"])
        results["runs"].append(pair)
    results["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"\nload average after: {results['loadavg_after']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


def idle_main(args: argparse.Namespace) -> int:
    """Server CPU and memory of N connected, idle participants offering K slot pairs each."""
    rooms = [
        [Participant(f"idle{i}", f"idle{i}", False, args.slots, False)] for i in range(args.idle)
    ]
    scenario = Scenario("idle", rooms, 15, 0, notes=[f"{args.idle} idle x {args.slots} slots"])
    print(f"code: {run_load.code_state()}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"machine: {machine()}; load average before: {os.getloadavg()}")
    results = []
    for _ in range(args.repeat):
        with servers(None):
            f = run_one(scenario, "passthrough", args)
        keep = ("server_cores", "rss_idle_mb", "rss_mb_per_participant", "machine_busy")
        out = {k: f.get(k) for k in keep} | {"error": f.get("error")}
        out["server_pct_core"] = (
            round(100 * f["server_cores"], 2) if f.get("server_cores") is not None else None
        )
        results.append(out)
        print(f"{args.idle} idle participants x {args.slots} slot pairs: {out}")
    if args.json:
        with open(args.json, "w") as fp:
            json.dump(results, fp, indent=2)
    return 0


# run in a child interpreter: import the server's module, then the aiortc stack the way the
# engine does (media.engine._import_stack); print both VmRSS readings in KiB
_STACK_RSS = """
import importlib, sys
def rss():
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))
importlib.import_module(sys.argv[1])
before = rss()
from media.engine import _import_stack
_import_stack()
print(before, rss())
"""
_stack_mb: dict[str, float] = {}


def stack_rss_mb(module: str, runs: int = 5) -> float:
    """RSS the aiortc stack adds to an interpreter that already imported `module`: the median
    of `runs` fresh interpreters (one reading varies by ~2 MB), once per module."""
    if module not in _stack_mb:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        readings = []
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, "-c", _STACK_RSS, module],
                cwd=root,
                env={**os.environ, "PYTHONPATH": root},
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            ).stdout.split()
            readings.append((int(out[1]) - int(out[0])) / 1024)
        _stack_mb[module] = round(statistics.median(readings), 1)
    return _stack_mb[module]


def run_one(scenario: Scenario, mode: str, args: argparse.Namespace) -> dict:
    try:
        result = run_load.run_mode(scenario, mode, args)
    except (RuntimeError, TimeoutError, OSError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    people = sum(len(room) for room in scenario.rooms)
    if result.get("rss_mb_per_participant") is not None:
        idle = result["rss_mb"] - result["rss_mb_per_participant"] * people
        result["rss_idle_mb"] = round(idle, 1)
        stack = stack_rss_mb("server" if mode == "product" else "bench.load_server")
        result["media_stack_mb"] = stack
        result["rss_mb_per_participant_stack_loaded"] = round(
            (result["rss_mb"] - idle - stack) / people, 2
        )
    return result


if __name__ == "__main__":
    sys.exit(main())
