"""Failover time: SIGKILL the node serving a mediation, time until media flows again.

    python -m bench.takeover [--kills 10] [--ttl-ms 2000] [--follow | --drain]

Starts a redis-server (deploy/redis/redis.conf, a temporary directory, a free port) and two
real ``server.py serve --redis`` nodes, A and B, sharing a token secret. Each round: A prints
its demo mediation session; a mediator and a party (aiortc bots, 160x120) join it on A, the
party is admitted, media flows both ways; A is SIGKILLed; both pages reconnect to B (as through
a front proxy) until B serves the session, and the time from the kill to the first frame from
the other person is taken for each. A is then started again (same node id) for the next round.
With ``--follow`` the nodes have their own public URLs and the bots find their node as the page
does (``Page``: they learn B from A's welcome and, after the kill, fall back to it after two
failed reconnects, waiting while B answers ``session_moving``; docs/scaling.md, redirect).
With ``--drain`` A is stopped with SIGTERM and a drain deadline of 0 instead
(docs/scaling.md, "Drain"): it hands the session over to B at once and closes the pages'
sockets; they connect to A again and are redirected to B; the time is from the signal.
Prints each round and p50/p95/max of the slower participant per round. The integration test
(tests/integration/cluster/test_takeover.py) runs one round with the same helpers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import socketio

from bench.bot import Bot
from signaling.namespace import NAMESPACE

ROOT = Path(__file__).resolve().parents[1]
CONSENTS = ("online_mediation", "session_rules")


async def until(predicate, timeout: float, interval: float = 0.02):  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
    return value


class Participant:
    """One page: a socket.io client and an aiortc bot, connected to one node."""

    def __init__(self, token: str, name: str, color) -> None:
        self.token, self.name, self.color = token, name, color
        self.sio: socketio.AsyncClient | None = None
        self.bot: Bot | None = None
        self.welcome: dict | None = None
        self.refused: dict | None = None  # the node's last refusal: {code, message[, url]}

    async def connect(self, url: str) -> bool:
        """Connect and bring media up; False when the node refuses (not serving it yet: its
        answer in ``refused``) or does not answer (``refused`` None)."""
        sio = socketio.AsyncClient(reconnection=False)
        welcomed: list[dict] = []
        self.refused = None
        sio.on("welcome", lambda data: welcomed.append(data), namespace=NAMESPACE)

        def refused(data=None):
            data = data.get("data", data) if isinstance(data, dict) else None
            self.refused = data if isinstance(data, dict) else None

        sio.on("connect_error", refused, namespace=NAMESPACE)
        try:
            await sio.connect(
                url,
                namespaces=[NAMESPACE],
                auth={"token": self.token},
                transports=["websocket"],
                wait_timeout=5,
            )
        except socketio.exceptions.ConnectionError:
            return False
        await until(lambda: welcomed, 10)
        self.sio, self.welcome = sio, welcomed[0]
        return True

    async def command(self, **cmd) -> None:
        reply = await self.sio.call(
            "command", {"v": 1, "cmd": cmd}, namespace=NAMESPACE, timeout=10
        )
        assert reply["ok"], reply

    async def media(self) -> None:
        self.bot = Bot(
            self.welcome["participant"],
            slots=self.welcome["slots"],
            color=self.color,
            tone_hz=None,
            size=(160, 120),
        )
        reply = await self.sio.call(
            "offer", {"v": 1, "sdp": await self.bot.create_offer()}, namespace=NAMESPACE, timeout=20
        )
        assert reply["ok"], reply
        await self.bot.accept_answer(reply["sdp"])
        self.bot.set_slot_map(reply["slots"])
        bot = self.bot
        self.sio.on("slots", lambda msg: bot.set_slot_map(msg["slots"]), namespace=NAMESPACE)

    async def close(self) -> None:
        if self.bot is not None:
            await self.bot.close()
        if self.sio is not None:
            await self.sio.disconnect()


MAX_HOPS, UNREACHABLE = 3, 2  # as the page (web/static/app.js)
BACKOFF = (0.5, 1.0)  # the page's socket.io reconnection delays before it moves on


class Page(Participant):
    """A participant that follows the nodes' answers as the page does."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.nodes: list[str] = []
        self.answers: list[tuple[str, str | None]] = []  # (url asked, code | None: no answer)

    async def open(self, url: str, deadline: float = 30.0) -> str:
        """Connect through redirects, waits and dead nodes; the URL of the node that serves."""
        hops, silent, end = 0, 0, time.monotonic() + deadline
        away: set[str] = set()  # nodes left because they did not answer: never sent back there
        while time.monotonic() < end:
            if await self.connect(url):
                self.nodes = self.welcome.get("nodes", [])
                return url
            code = (self.refused or {}).get("code")
            self.answers.append((url, code))
            if code == "redirect" and self.refused["url"] not in away:
                hops += 1
                if hops > MAX_HOPS:
                    raise RuntimeError(f"too many moves: {self.answers}")
                url, silent = self.refused["url"], 0
            elif code in ("session_moving", "redirect"):
                await asyncio.sleep(0.5)
            elif code is None:  # the node does not answer: back off, then another node
                silent += 1
                if silent >= UNREACHABLE and self.nodes:
                    hops += 1
                    if hops > MAX_HOPS:
                        raise RuntimeError(f"too many moves: {self.answers}")
                    away.add(url)
                    others = [n for n in self.nodes if n not in away]
                    url, silent = others[hops % len(others)], 0
                else:
                    await asyncio.sleep(BACKOFF[min(silent, len(BACKOFF)) - 1])
            else:
                raise RuntimeError(f"refused: {self.refused}")
        raise TimeoutError(f"never served: {self.answers}")


async def back_on(node_url: str, person: Participant, other: str, started: float) -> dict:
    """Reconnect to ``node_url`` until it serves the session, then wait for media from
    ``other``; the times since ``started``."""
    deadline = started + 30
    while not await person.connect(node_url):
        if time.monotonic() > deadline:
            raise TimeoutError("the node never took the session")
        await asyncio.sleep(0.05)
    welcomed = time.monotonic() - started
    await person.media()
    await until(lambda: person.bot.frames_from(other) >= 1, 20, 0.01)
    return {"welcome_s": welcomed, "media_s": time.monotonic() - started}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"nothing listening on {port}")
        time.sleep(0.05)


class Node:
    """``server.py serve`` as a subprocess; reads its LISTENING line and demo links."""

    def __init__(self, data_dir: Path, env: dict, demo: bool, port: int = 0) -> None:
        self.data_dir, self.env, self.demo, self.port = data_dir, env, demo, port
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> tuple[str, dict[str, str]]:
        cmd = [sys.executable, str(ROOT / "server.py"), "serve", "--port", str(self.port)]
        cmd += ["--data-dir", str(self.data_dir), "--log-format", "text"]
        cmd += [] if self.demo else ["--no-demo"]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        found: dict = {"links": {}}
        self.lines: list[str] = []
        ready = threading.Event()

        def pump():
            role = None
            for line in self.proc.stdout:
                self.lines.append(line.rstrip())
                if m := re.match(r"LISTENING (\S+):(\d+)", line):
                    found["url"] = f"http://127.0.0.1:{m.group(2)}"
                    if not self.demo:
                        ready.set()
                if m := re.match(r"\s+(\w+)\s+\S", line):
                    role = m.group(1)
                if m := re.search(r"https?://\S+/j/(\S+)", line):
                    found["links"].setdefault(role, m.group(1))
                if "admits the parties" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            raise RuntimeError("node did not start")
        return found["url"], found["links"]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


async def flowing_pair(
    url: str, tokens: dict[str, str], people: list[Participant]
) -> tuple[Participant, Participant, str, str]:
    """A mediator and a party (``tokens`` by role) join on ``url`` (and are added to ``people``
    for closing), the party is admitted and media flows both ways. Returns them and their ids."""
    mediator = Participant(tokens["mediator"], "mediator", (200, 30, 30))
    party = Participant(tokens["party"], "party", (30, 200, 30))
    people += [mediator, party]
    assert await mediator.connect(url) and await party.connect(url)
    return await flowing(mediator, party)


async def flowing(mediator: Participant, party: Participant) -> tuple:
    """Both connected: the party consents and is admitted, media flows both ways."""
    for topic in CONSENTS:
        await party.command(type="record_consent", topic=topic, given=True)
    await mediator.media()
    await party.media()
    m_id, p_id = mediator.welcome["participant"], party.welcome["participant"]
    await mediator.command(type="admit", participant=p_id)
    await until(lambda: mediator.bot.frames_from(p_id) > 5 and party.bot.frames_from(m_id) > 5, 30)
    return mediator, party, m_id, p_id


async def rejoin_pair(
    url: str, pair: tuple[Participant, Participant, str, str], started: float, people: list
) -> tuple[Participant, Participant, list[dict]]:
    """The pages of ``flowing_pair`` reconnect to ``url`` with the same links (their old
    connections died with their node); returns the new ones and ``back_on``'s times for each."""
    mediator, party, m_id, p_id = pair
    m2 = Participant(mediator.token, "mediator", mediator.color)
    p2 = Participant(party.token, "party", party.color)
    people += [m2, p2]
    times = await asyncio.gather(back_on(url, m2, p_id, started), back_on(url, p2, m_id, started))
    return m2, p2, list(times)


async def one_round(a: Node, b_url: str) -> tuple[float, float]:
    a_url, links = await asyncio.to_thread(a.start)
    people: list[Participant] = []
    try:
        pair = await flowing_pair(a_url, links, people)
        started = time.monotonic()
        a.kill()
        _, _, times = await rejoin_pair(b_url, pair, started, people)
        print(
            "  welcome after {:.2f} / {:.2f} s".format(
                times[0]["welcome_s"], times[1]["welcome_s"]
            ),
            flush=True,
        )
        return times[0]["media_s"], times[1]["media_s"]
    finally:
        for person in people:
            with contextlib.suppress(Exception):
                await person.close()


async def follow_round(a: Node, b_url: str) -> tuple[float, float]:
    """As ``one_round``, but the bots find their node as the page does (``Page``): they join on
    A, learn B from A's welcome, and after the kill fall back to B by themselves."""
    a_url, links = await asyncio.to_thread(a.start)
    mediator = Page(links["mediator"], "mediator", (200, 30, 30))
    party = Page(links["party"], "party", (30, 200, 30))
    people = [mediator, party]
    try:
        deadline = time.monotonic() + 10
        for page in people:  # A names B once its rounds have read B's heartbeat
            while (await page.open(a_url), page.nodes)[1] != [b_url]:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"A never named B: {page.nodes}")
                await page.close()
        _, _, m_id, p_id = await flowing(mediator, party)
        started = time.monotonic()
        a.kill()

        async def back(page: Page, other: str) -> tuple[float, float]:
            await page.bot.close()
            page.bot = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(page.sio.disconnect(), 5)
            page.sio = None
            if await page.open(a_url) != b_url:
                raise RuntimeError(f"not served by B: {page.answers}")
            welcomed = time.monotonic() - started
            await page.media()
            await until(lambda: page.bot.frames_from(other) >= 1, 20, 0.01)
            return welcomed, time.monotonic() - started

        (mw, mediator_s), (pw, party_s) = await asyncio.gather(
            back(mediator, p_id), back(party, m_id)
        )
        print(f"  welcome after {mw:.2f} / {pw:.2f} s", flush=True)
        return mediator_s, party_s
    finally:
        for person in people:
            with contextlib.suppress(Exception):
                await person.close()


async def handed_over(page: Page, node_url: str, other: str, started: float) -> tuple:
    """A draining node hands the page's session over: wait until it closes the page's socket
    (``io server disconnect``), then connect again to the same node as the page does
    (``session_moving``, then ``redirect`` to the new owner) and wait for media from ``other``.
    Returns the node that serves it and the times (welcome, media) since ``started``."""
    await until(lambda: not page.sio.connected, 60, 0.01)
    await page.bot.close()
    page.bot = None
    with contextlib.suppress(Exception):
        await asyncio.wait_for(page.sio.disconnect(), 5)
    page.sio = None
    served = await page.open(node_url)
    welcomed = time.monotonic() - started
    await page.media()
    await until(lambda: page.bot.frames_from(other) >= 1, 20, 0.01)
    return served, welcomed, time.monotonic() - started


WELCOMED: list[float] = []  # drain rounds: signal -> both pages welcomed on B (the slower)


async def drain_round(a: Node, b_url: str) -> tuple[float, float]:
    """As ``follow_round``, but A is stopped with SIGTERM and a drain deadline of 0
    (``PARLEY_DRAIN_SECONDS``): it hands the session over at once and closes the pages'
    sockets; they connect to A again and are redirected to B. A must exit 0."""
    a_url, links = await asyncio.to_thread(a.start)
    mediator = Page(links["mediator"], "mediator", (200, 30, 30))
    party = Page(links["party"], "party", (30, 200, 30))
    people = [mediator, party]
    try:
        deadline = time.monotonic() + 10
        for page in people:  # A names B once its rounds have read B's heartbeat
            while (await page.open(a_url), page.nodes)[1] != [b_url]:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"A never named B: {page.nodes}")
                await page.close()
        _, _, m_id, p_id = await flowing(mediator, party)
        started = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        (ms, mw, mediator_s), (ps, pw, party_s) = await asyncio.gather(
            handed_over(mediator, a_url, p_id, started), handed_over(party, a_url, m_id, started)
        )
        if ms != b_url or ps != b_url:
            raise RuntimeError(f"not served by B: {mediator.answers} {party.answers}")
        code = await asyncio.to_thread(a.proc.wait, 30)
        if code != 0:
            raise RuntimeError(f"A exited {code}")
        print(f"  welcome after {mw:.2f} / {pw:.2f} s; A exited 0", flush=True)
        WELCOMED.append(max(mw, pw))
        return mediator_s, party_s
    finally:
        for person in people:
            with contextlib.suppress(Exception):
                await person.close()


async def rounds(a: Node, b_url: str, kills: int, follow: bool = False, drain=False) -> list:
    slowest = []
    for k in range(kills):
        try:
            if drain:
                mediator_s, party_s = await drain_round(a, b_url)
            else:
                mediator_s, party_s = await (follow_round if follow else one_round)(a, b_url)
        except Exception as exc:  # noqa: BLE001 - a failed round is reported, not hidden
            print(f"round {k + 1}: FAILED {exc!r}", flush=True)
            for line in getattr(a, "lines", []):
                if "lease" in line or "taken over" in line:
                    print("  node a:", line[:200], flush=True)
            a.kill()
            slowest.append(float("inf"))
            continue
        slowest.append(max(mediator_s, party_s))
        print(f"round {k + 1}: mediator {mediator_s:.2f} s, party {party_s:.2f} s", flush=True)
    return slowest


def run(kills: int, ttl_ms: int, follow: bool = False, drain: bool = False) -> None:
    follow = follow or drain
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        port = _free_port()
        redis_proc = subprocess.Popen(
            ["redis-server", str(ROOT / "deploy/redis/redis.conf"), "--port", str(port)]
            + ["--bind", "127.0.0.1", "--dir", str(folder)],
            stdout=subprocess.DEVNULL,
        )
        a = b = None
        try:
            _wait_port(port, redis_proc)
            env = {
                "PARLEY_SECRET": secrets.token_hex(32),
                "PARLEY_REDIS_URL": f"redis://127.0.0.1:{port}/0",
                "PARLEY_LEASE_TTL_MS": str(ttl_ms),
                "PARLEY_DRAIN_SECONDS": "0",  # the last SIGTERM hands over at once (no wait)
            }
            pa, pb = (_free_port(), _free_port()) if follow else (0, 0)
            public = {  # follow: each node's own URL, the redirect's target
                p: {"PARLEY_PUBLIC_URL": f"http://127.0.0.1:{p}"} if p else {} for p in (pa, pb)
            }
            a = Node(folder / "a", {**env, "PARLEY_NODE_ID": "a", **public[pa]}, True, pa)
            b = Node(folder / "b", {**env, "PARLEY_NODE_ID": "b", **public[pb]}, False, pb)
            b_url, _ = b.start()
            slowest = sorted(asyncio.run(rounds(a, b_url, kills, follow, drain)))
            p95 = slowest[min(len(slowest) - 1, int(round(0.95 * len(slowest))) - 1)]
            what = "SIGTERM (drain deadline 0)" if drain else "kill"
            print(
                f"{what} -> media again, slower participant, {kills} rounds, lease TTL {ttl_ms} ms"
                f"{', pages following redirects' if follow else ''}: "
                f"p50 {statistics.median(slowest):.2f} s, p95 {p95:.2f} s, max {slowest[-1]:.2f} s"
            )
            if WELCOMED:
                print(
                    f"SIGTERM -> both pages welcomed on B, {len(WELCOMED)} rounds: "
                    f"p50 {statistics.median(WELCOMED):.2f} s, max {max(WELCOMED):.2f} s"
                )
        finally:
            for node in (a, b):
                if node is not None:
                    node.stop()
            redis_proc.terminate()
            redis_proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--ttl-ms", type=int, default=2000)
    ap.add_argument(
        "--follow",
        action="store_true",
        help="the bots find the node as the page does: redirect, fall back, session_moving",
    )
    ap.add_argument(
        "--drain",
        action="store_true",
        help="SIGTERM instead of SIGKILL, drain deadline 0: A hands the session over (--follow)",
    )
    args = ap.parse_args()
    run(args.kills, args.ttl_ms, args.follow, args.drain)


if __name__ == "__main__":
    main()
