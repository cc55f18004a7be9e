"""Event-loop lag of the real server while blocking work runs next to live media.

    .venv/bin/python -m bench.loop_lag                # this checkout
    .venv/bin/python bench/loop_lag.py --root DIR     # another tree (e.g. `git archive` of a commit)

The server is ``server.create_app`` in a process of its own (uvloop, as ``server.py serve``),
with bench/load_server.py's ``LoopLag`` probe (a 20 ms timer; how late it fires is how late any
packet handler on that loop could run) behind ``GET /_bench/lag``. A staff account is made with
``server.py user add``. This process then runs, over socket.io like the phones:

* 10 live three-party mediation rooms of bench/bot.py media bots (VGA-ish VP8 clip + Opus tone,
  sent through ``RelayPublisher``), every party admitted by its mediator;
* phases of ``--window`` seconds, each measured from a fresh lag window:
  ``rooms`` (baseline), ``+logins`` (10 logins/s on /login with the real account),
  ``+uploads`` (``--upload-mib`` MiB PDFs, ``--uploads-per-s``), ``+seal`` (one agreement
  drafted, frozen, signed by three Python phones and sealed, as
  tests/integration/signaling/test_agreement_session.py does), and ``all`` (everything at once).

Prints one line per phase: loop lag p50/p99/max in ms, what the side load achieved, the load
average. Compare phases within one run; the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
ROOMS = 10
PASSWORD = "bench-password-" + "x" * 8
TERMS = ["李四于2026年12月31日前向张三支付人民币5000元。", "双方就本纠纷再无其他争议。"]


def _root_first(root: Path) -> None:
    sys.path.insert(0, str(root))


# -- the server process ---------------------------------------------------------------------


async def serve(data_dir: Path, port: int, rooms: int) -> None:
    from aiohttp import web

    from bench.load_server import LoopLag
    from rooms.commands import decode_command
    from rooms.service import ParticipantSpec
    from server import SERVICE, SIGNER, Config, create_app

    config = Config(data_dir=data_dir, demo=False, host="127.0.0.1", port=port)
    app = create_app(config)
    service, signer = app[SERVICE], app[SIGNER]
    lag = LoopLag()

    async def lag_route(request: web.Request) -> web.Response:
        ordered = sorted(lag.samples)
        if request.query.get("reset") == "1":
            lag.samples = []
        if not ordered:
            return web.json_response({"samples": 0})
        pick = lambda q: round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * q))], 2)  # noqa: E731
        return web.json_response(
            {"samples": len(ordered), "p50": pick(0.5), "p99": pick(0.99), "max": pick(1.0)}
        )

    async def prepare_signing(request: web.Request) -> web.Response:
        """What the agreement test does in-process: connected, consented, admitted, checked."""
        body = await request.json()
        sid = body["session"]
        run = lambda actor, **c: service.execute(sid, actor, decode_command(c))  # noqa: E731
        for pid in body["all"]:
            run("system", type="connect", participant=pid)
        for pid in body["parties"]:
            for topic in ("online_mediation", "session_rules"):
                run(pid, type="record_consent", topic=topic, given=True)
            run(body["mediator"], type="admit", participant=pid)
            run(body["mediator"], type="mark_identity_checked", participant=pid, method="video")
        return web.json_response({"ok": True})

    app.router.add_get("/_bench/lag", lag_route)
    app.router.add_post("/_bench/prepare_signing", prepare_signing)

    def people(n_parties: int):
        return [ParticipantSpec(name="Mediator M", role="mediator")] + [
            ParticipantSpec(name=f"Party {chr(65 + i)}", role="party", side=chr(65 + i))
            for i in range(n_parties)
        ]

    listing = []
    for i in range(rooms + 2):  # the rooms, then two for agreement ceremonies
        state = service.create_session(
            "mediation",
            actor="staff:bench",
            title=f"Bench {i}",
            case_number=f"B-{i}",
            participants=people(2),
        )
        entry = {"session": state.id, "people": []}
        for p in state.participants.values():
            extra = {"staff": "bench"} if p.role == "mediator" else {}
            token = signer.issue(state.id, p.id, p.role, ttl=3600, **extra)
            entry["people"].append({"id": p.id, "role": p.role, "token": token})
        listing.append(entry)

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    lag.start()
    print(json.dumps({"ready": True, "sessions": listing}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        lag.stop()
        await runner.cleanup()


# -- the ledger's append on the loop ---------------------------------------------------------


async def ledger_cost(n: int, directory: str | None) -> None:
    """Time ``append`` (what the loop waits for) in both durability modes, and the barrier."""
    from rooms.events import EventDraft
    from rooms.ledger import SqliteLedgerStore

    def pct(values: list[float]) -> str:
        v = sorted(values)
        return (
            f"p50 {1000 * v[len(v) // 2]:.2f} p99 {1000 * v[int(len(v) * 0.99)]:.2f} "
            f"max {1000 * v[-1]:.2f} ms"
        )

    for mode in ("full", "group"):
        folder = tempfile.mkdtemp(prefix="parley-ledger-", dir=directory)
        store = SqliteLedgerStore(Path(folder) / "ledger.sqlite3", sync=mode)
        appends, barriers = [], []
        for i in range(n):
            draft = EventDraft(time.time(), "p-00000001", "chat.sent", {"text": f"hello {i}" * 8})
            t0 = time.perf_counter()
            store.append("s-bench", [draft])
            t1 = time.perf_counter()
            await store.durable()  # the acknowledgement's wait; the loop is free meanwhile
            appends.append(t1 - t0)
            barriers.append(time.perf_counter() - t1)
        syncs = store.syncs
        store.close()
        print(
            f"ledger sync={mode:5s} {n} appends: append (on the loop) {pct(appends)}; "
            f"durable() wait {pct(barriers)}; fdatasyncs {syncs if mode == 'group' else n}; "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )


# -- the driver -------------------------------------------------------------------------------


class Phone:
    """A bench bot behind a socket.io connection, as the phone page is."""

    def __init__(self, url: str, person: dict, index: int, media: bool) -> None:
        self.url, self.person, self.index, self.media = url, person, index, media
        self.sio = None
        self.bot = None
        self.welcome = asyncio.get_running_loop().create_future()

    async def connect(self) -> None:
        import socketio

        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("welcome", self._welcome, namespace="/parley")
        self.sio.on("slots", self._slots, namespace="/parley")
        await self.sio.connect(
            self.url,
            namespaces=["/parley"],
            auth={"token": self.person["token"]},
            transports=["websocket"],
            wait_timeout=30,
        )
        await asyncio.wait_for(self.welcome, 30)

    def _welcome(self, data) -> None:
        if not self.welcome.done():
            self.welcome.set_result(data)

    def _slots(self, data) -> None:
        if self.bot is not None:
            self.bot.set_slot_map(data.get("slots", []))

    async def call(self, event: str, payload: dict) -> dict:
        return await self.sio.call(event, {"v": 1, **payload}, namespace="/parley", timeout=120)

    def make_bot(self) -> None:
        """Encode the bot's clip (seconds of CPU) before any socket is open to miss pings."""
        from bench.bot import Bot

        i = self.index
        self.bot = Bot(
            f"{self.person['id']}",
            slots=2,
            color=((50 * i) % 256, (90 * i) % 256, (130 * i) % 256),
            tone_hz=300 + 10 * i,
            decode=False,
            relay=True,
        )

    async def publish(self) -> None:
        self.bot.slot_count = self.welcome.result()["slots"]
        reply = await self.call("offer", {"sdp": await self.bot.create_offer()})
        if not reply.get("ok"):
            raise RuntimeError(f"offer refused: {reply}")
        await self.bot.accept_answer(reply["sdp"])
        self.bot.set_slot_map(reply.get("slots", []))
        await self.bot.wait_connected(within=60)

    async def close(self) -> None:
        if self.bot is not None:
            await self.bot.close()
        if self.sio is not None and self.sio.connected:
            await self.sio.disconnect()


async def open_rooms(url: str, sessions: list[dict]) -> list[Phone]:
    phones: list[Phone] = []
    rooms = [
        [Phone(url, p, 3 * r + k, media=True) for k, p in enumerate(entry["people"])]
        for r, entry in enumerate(sessions)
    ]
    for room in rooms:
        for ph in room:
            ph.make_bot()
    for room in rooms:
        for ph in room:
            await ph.connect()
        mediator = next(ph for ph in room if ph.person["role"] == "mediator")
        await asyncio.gather(*(ph.publish() for ph in room))
        for ph in room:
            if ph is mediator:
                continue
            for topic in ("online_mediation", "session_rules"):
                await ph.call(
                    "command", {"cmd": {"type": "record_consent", "topic": topic, "given": True}}
                )
            reply = await mediator.call(
                "command", {"cmd": {"type": "admit", "participant": ph.person["id"]}}
            )
            if not reply.get("ok"):
                raise RuntimeError(f"admit refused: {reply}")
        phones += room
        print(f"# room {len(phones) // 3} up", file=sys.stderr, flush=True)
    return phones


class Side:
    """Counts of what a side load achieved during a phase."""

    def __init__(self) -> None:
        self.done = 0
        self.failed = 0
        self.latency: list[float] = []

    def summary(self) -> str:
        lat = sorted(self.latency)
        p50 = f"{1000 * lat[len(lat) // 2]:.0f}" if lat else "-"
        p99 = f"{1000 * lat[int(len(lat) * 0.99)]:.0f}" if lat else "-"
        return f"{self.done} ok, {self.failed} failed, latency p50 {p50} p99 {p99} ms"


async def login_storm(url: str, per_s: float, stop: asyncio.Event, side: Side) -> None:
    import aiohttp

    async def one() -> None:
        t0 = time.perf_counter()
        try:
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                async with http.get(url + "/login") as r:
                    await r.read()
                csrf = next(c.value for c in jar if c.key == "parley_login_csrf")
                form = {"csrf": csrf, "username": "bench", "password": PASSWORD}
                async with http.post(url + "/login", data=form, allow_redirects=False) as r:
                    await r.read()
                    ok = r.status == 303
        except (aiohttp.ClientError, StopIteration):
            ok = False
        side.latency.append(time.perf_counter() - t0)
        side.done += ok
        side.failed += not ok

    await _paced(one, per_s, stop)


async def upload_loop(url: str, sid: str, token: str, mib: float, per_s: float, stop, side) -> None:
    import aiohttp

    body = b"%PDF-1.4\n" + secrets.token_bytes(int(mib * 2**20))

    async def one() -> None:
        t0 = time.perf_counter()
        form = aiohttp.FormData()
        form.add_field("file", body, filename="bench.pdf", content_type="application/pdf")
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{url}/api/sessions/{sid}/documents",
                    data=form,
                    headers={"Authorization": f"Bearer {token}"},
                ) as r,
            ):
                await r.read()
                ok = r.status == 200
        except aiohttp.ClientError:
            ok = False
        side.latency.append(time.perf_counter() - t0)
        side.done += ok
        side.failed += not ok

    await _paced(one, per_s, stop)


async def _paced(one, per_s: float, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task] = set()
    due = loop.time()
    while not stop.is_set():
        task = loop.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        due += 1.0 / per_s
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, due - loop.time()))
        except TimeoutError:
            pass
    if tasks:
        await asyncio.gather(*tasks)


async def seal_ceremony(url: str, entry: dict, side: Side) -> None:
    """Draft, freeze, three signers enrol and sign in turn, seal: the in-session ceremony."""
    import aiohttp
    import msgspec

    from esign.phone import PythonPhone
    from esign.protocol import EnrolChallenge, Enrolment, SignatureRequest

    t0 = time.perf_counter()
    people = [Phone(url, p, 0, media=False) for p in entry["people"]]
    for ph in people:
        await ph.connect()
    med = next(ph for ph in people if ph.person["role"] == "mediator")
    parties = [ph for ph in people if ph is not med]
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url + "/_bench/prepare_signing",
            json={
                "session": entry["session"],
                "mediator": med.person["id"],
                "parties": [p.person["id"] for p in parties],
                "all": [p.person["id"] for p in people],
            },
        ) as r:
            assert r.status == 200, await r.text()

        async def pdf(ph) -> bytes:
            async with http.get(
                f"{url}/api/sessions/{entry['session']}/agreement.pdf",
                headers={"Authorization": f"Bearer {ph.person['token']}"},
            ) as r:
                assert r.status == 200, await r.text()
                return await r.read()

        def must(reply):
            if not reply.get("ok"):
                raise RuntimeError(f"ceremony step refused: {reply}")
            return reply

        draft = {"action": "draft", "case_type": "debt", "language": "zh-CN", "terms": TERMS}
        must(await med.call("agreement", draft))
        must(await med.call("agreement", {"action": "freeze"}))
        phones = {ph.person["id"]: PythonPhone(ph.person["id"]) for ph in people}
        for ph in people:
            r = must(await ph.call("esign", {"action": "challenge"}))
            req = phones[ph.person["id"]].enrol_request(
                msgspec.convert(r["challenge"], EnrolChallenge)
            )
            r = must(
                await ph.call("esign", {"action": "enrol", "request": msgspec.to_builtins(req)})
            )
            phones[ph.person["id"]].accept(msgspec.convert(r["enrolment"], Enrolment))
        for ph in [*parties, med]:
            phone = phones[ph.person["id"]]
            phone.review(await pdf(ph))
            r = must(await ph.call("esign", {"action": "prepare"}))
            reply = phone.sign(msgspec.convert(r["request"], SignatureRequest))
            must(await ph.call("esign", {"action": "sign", "reply": msgspec.to_builtins(reply)}))
        must(await med.call("agreement", {"action": "seal"}))
    for ph in people:
        await ph.close()
    side.latency.append(time.perf_counter() - t0)
    side.done += 1


async def drive(args, root: Path) -> None:
    import aiohttp

    data_dir = Path(tempfile.mkdtemp(prefix="parley-looplag-"))
    env = dict(os.environ, PYTHONPATH=str(root), PARLEY_DATA_DIR=str(data_dir))
    added = subprocess.run(  # noqa: ASYNC221 - setup, before any measurement
        [
            sys.executable,
            str(root / "server.py"),
            "user",
            "add",
            "bench",
            "--name",
            "Bench",
            "--role",
            "mediator",
            "--password-stdin",
            "--data-dir",
            str(data_dir),
        ],
        input=PASSWORD + "\n",
        text=True,
        capture_output=True,
        cwd=root,
        env=env,
    )
    if added.returncode != 0:
        raise SystemExit(f"user add failed: {added.stderr}{added.stdout}")
    port = args.port
    proc = subprocess.Popen(  # noqa: ASYNC220 - setup
        [
            sys.executable,
            str(Path(__file__).resolve()),  # noqa: ASYNC240
            "serve",
            "--root",
            str(root),
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--rooms",
            str(args.rooms),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        listing = json.loads(line)
        sessions = listing["sessions"]
        t0 = time.perf_counter()
        phones = await open_rooms(url, sessions[: args.rooms])
        print(f"# {args.rooms} rooms x 3 up in {time.perf_counter() - t0:.1f} s", flush=True)
        party = sessions[0]["people"][1]
        async with aiohttp.ClientSession() as http:

            async def lag(reset: bool) -> dict:
                async with http.get(url + "/_bench/lag" + ("?reset=1" if reset else "")) as r:
                    return await r.json()

            await asyncio.sleep(args.warmup)  # media settles (keyframes, bandwidth) before phase 1
            results = []
            for phase in args.phases.split(","):
                stop = asyncio.Event()
                sides: dict[str, Side] = {}
                jobs = []
                if phase in ("logins", "all"):
                    sides["logins"] = Side()
                    jobs.append(login_storm(url, args.logins_per_s, stop, sides["logins"]))
                if phase in ("uploads", "all"):
                    sides["uploads"] = Side()
                    jobs.append(
                        upload_loop(
                            url,
                            sessions[0]["session"],
                            party["token"],
                            args.upload_mib,
                            args.uploads_per_s,
                            stop,
                            sides["uploads"],
                        )
                    )
                ceremony = None
                if phase in ("seal", "all"):
                    sides["seal"] = Side()
                    entry = sessions[args.rooms + (phase == "all")]  # one agreement per session
                    ceremony = seal_ceremony(url, entry, sides["seal"])
                await lag(reset=True)
                started = time.perf_counter()
                tasks = [asyncio.ensure_future(j) for j in jobs]
                if ceremony is not None:
                    try:
                        await ceremony  # the phase lasts at least the whole ceremony
                    except Exception as exc:  # noqa: BLE001 - reported with the figures
                        sides["seal"].failed += 1
                        print(f"    seal failed: {type(exc).__name__}: {exc}"[:300], flush=True)
                remaining = args.window - (time.perf_counter() - started)
                if remaining > 0:
                    await asyncio.sleep(remaining)
                stop.set()
                await asyncio.gather(*tasks)
                figures = await lag(reset=False)
                elapsed = time.perf_counter() - started
                load = os.getloadavg()
                label = "rooms" if phase == "rooms" else f"rooms + {phase}"
                print(
                    f"{label:18s} {elapsed:5.1f} s  loop lag p50 {figures.get('p50')} "
                    f"p99 {figures.get('p99')} max {figures.get('max')} ms "
                    f"({figures.get('samples')} samples)  load {load[0]:.1f}  "
                    f"room sockets up {sum(ph.sio.connected for ph in phones)}/{len(phones)}"
                    + "".join(f"\n    {k}: {s.summary()}" for k, s in sides.items()),
                    flush=True,
                )
                results.append({"phase": phase, **figures, "load1": load[0]})
        for ph in phones:
            await ph.close()
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))  # noqa: ASYNC240 - after the phases
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", nargs="?", default="drive", choices=["drive", "serve", "ledger"])
    p.add_argument("--root", default=str(HERE), help="the Parley tree to run (default: this one)")
    p.add_argument("--rooms", type=int, default=ROOMS)
    p.add_argument("--port", type=int, default=18765)
    p.add_argument("--window", type=float, default=15.0, help="seconds per phase (at least)")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--phases", default="rooms,logins,uploads,seal,all")
    p.add_argument("--logins-per-s", type=float, default=10.0)
    p.add_argument("--uploads-per-s", type=float, default=1.5)
    p.add_argument("--upload-mib", type=float, default=3.0)
    p.add_argument("--data-dir")
    p.add_argument("--appends", type=int, default=500, help="ledger mode: appends per mode")
    p.add_argument("--json")
    args = p.parse_args(argv)
    root = Path(args.root).resolve()
    _root_first(root)
    import uvloop

    if args.mode == "ledger":
        uvloop.run(ledger_cost(args.appends, args.data_dir))
    elif args.mode == "serve":
        uvloop.run(serve(Path(args.data_dir), args.port, args.rooms))
    else:
        uvloop.run(drive(args, root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
