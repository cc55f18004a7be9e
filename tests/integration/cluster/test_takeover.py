"""Two real server processes on one real redis-server: a mediation on node A with media flowing
between two aiortc participants; SIGKILL node A; node B takes the session over (its lease
expires, B rebuilds it from the Redis ledger) and both participants, reconnecting to B, are
back in the same space with media flowing again. The time from the kill to media flowing for
every participant is measured and must stay under the 5 s target; the ledger verifies.

The participants connect to B directly: they stand for the pages reconnecting through the front
proxy, which sends them to a live node (docs/scaling.md, routing)."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest
import redis
import socketio

from bench.bot import Bot
from cluster.ledger import RedisLedgerStore
from rooms.ledger import verify_chain
from signaling.namespace import NAMESPACE
from signaling.tokens import TokenSigner
from tests.integration.signaling.conftest import until
from tests.support.redisd import redis_server  # noqa: F401 - fixture
from tests.support.server_proc import ServerProcess

pytestmark = pytest.mark.slow
TARGET = 5.0  # seconds from the kill to media flowing again, for every participant
CONSENTS = ("online_mediation", "session_rules")


class Participant:
    """One page: a socket.io client and an aiortc bot, connected to one node."""

    def __init__(self, token: str, name: str, color) -> None:
        self.token, self.name, self.color = token, name, color
        self.sio: socketio.AsyncClient | None = None
        self.bot: Bot | None = None
        self.welcome: dict | None = None

    async def connect(self, url: str) -> bool:
        """Connect and bring media up; False when the node refuses (not serving it yet)."""
        sio = socketio.AsyncClient(reconnection=False)
        welcomed: list[dict] = []
        sio.on("welcome", lambda data: welcomed.append(data), namespace=NAMESPACE)
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


async def back_on(node_url: str, person: Participant, other: str, started: float) -> dict:
    """Reconnect to ``node_url`` until it serves the session, then wait for media from
    ``other``; the times since ``started``."""
    deadline = started + 30
    while not await person.connect(node_url):
        assert time.monotonic() < deadline, "node B never took the session"
        await asyncio.sleep(0.05)
    welcomed = time.monotonic() - started
    await person.media()
    await until(lambda: person.bot.frames_from(other) >= 1, 20, 0.01)
    return {"welcome_s": welcomed, "media_s": time.monotonic() - started}


async def test_a_killed_nodes_session_is_served_by_the_other_within_5_s(
    tmp_path,
    redis_server,  # noqa: F811
):
    url = redis_server.url.rsplit("/", 1)[0] + "/5"  # a database of its own on the test server
    redis.Redis.from_url(url).flushdb()
    secret = secrets.token_hex(32)
    env = {"PARLEY_SECRET": secret, "PARLEY_REDIS_URL": url, "PARLEY_LEASE_TTL_MS": "2000"}
    a = ServerProcess(tmp_path / "a", env={**env, "PARLEY_NODE_ID": "a"})
    b = ServerProcess(tmp_path / "b", "--no-demo", env={**env, "PARLEY_NODE_ID": "b"})
    people: list[Participant] = []
    try:
        a.start()  # prints the demo session's links
        b.start_quiet()
        token_of = {role: links[0].rsplit("/j/", 1)[1] for role, links in a.links.items()}
        session = TokenSigner(bytes.fromhex(secret)).verify(token_of["mediator"]).session
        mediator = Participant(token_of["mediator"], "mediator", (200, 30, 30))
        party = Participant(token_of["party"], "party", (30, 200, 30))
        people += [mediator, party]
        assert await mediator.connect(a.url) and await party.connect(a.url)
        for topic in CONSENTS:
            await party.command(type="record_consent", topic=topic, given=True)
        await mediator.media()
        await party.media()
        m_id, p_id = mediator.welcome["participant"], party.welcome["participant"]
        await mediator.command(type="admit", participant=p_id)
        await until(
            lambda: mediator.bot.frames_from(p_id) > 5 and party.bot.frames_from(m_id) > 5, 30
        )

        started = time.monotonic()
        a.stop(sig_kill=True)  # mid-session: both pages are connected with media flowing
        # the same links, as the pages reconnecting (their old connections died with node A)
        mediator2 = Participant(mediator.token, "mediator", mediator.color)
        party2 = Participant(party.token, "party", party.color)
        people += [mediator2, party2]
        times = await asyncio.gather(
            back_on(b.url, mediator2, p_id, started), back_on(b.url, party2, m_id, started)
        )
        print(f"\ntakeover after SIGKILL (lease TTL 2 s): mediator {times[0]}, party {times[1]}")
        assert party2.welcome["session"]["space"] == "joint"  # the same space as before
        assert mediator2.welcome["session"]["space"] == "joint"
        assert max(t["media_s"] for t in times) < TARGET, times

        store = RedisLedgerStore.from_url(url)
        events = store.read(session)
        store.close()
        assert verify_chain(events) == []
        restarts = [e for e in events if e.data.get("reason") == "node_restart"]
        assert {e.data["participant"] for e in restarts} == {m_id, p_id}
    finally:
        for person in people:
            await person.close()
        a.stop()
        b.stop()
