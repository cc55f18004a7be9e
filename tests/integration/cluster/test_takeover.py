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

import msgspec
import pytest
import redis

from bench.takeover import Participant, flowing_pair, rejoin_pair
from cluster.ledger import RedisLedgerStore
from cluster.registry import NodeInfo
from rooms.ledger import verify_chain
from signaling.tokens import TokenSigner
from tests.integration.signaling.conftest import until
from tests.support.redisd import redis_server  # noqa: F401 - fixture
from tests.support.server_proc import ServerProcess

pytestmark = pytest.mark.slow


def _node_info(raw: bytes | None):
    return msgspec.json.decode(raw, type=NodeInfo) if raw else None


TARGET = 5.0  # seconds from the kill to media flowing again, for every participant


async def test_a_killed_nodes_session_is_served_by_the_other_within_5_s(
    tmp_path,
    redis_server,  # noqa: F811
):
    url = redis_server.url.rsplit("/", 1)[0] + "/5"  # a database of its own on the test server
    redis.Redis.from_url(url).flushdb()
    secret = secrets.token_hex(32)
    env = {"PARLEY_SECRET": secret, "PARLEY_REDIS_URL": url, "PARLEY_LEASE_TTL_MS": "2000"}
    env["PARLEY_DRAIN_SECONDS"] = "0"  # the teardown's SIGTERM hands over at once (no wait)
    a = ServerProcess(tmp_path / "a", env={**env, "PARLEY_NODE_ID": "a"})
    b = ServerProcess(tmp_path / "b", "--no-demo", env={**env, "PARLEY_NODE_ID": "b"})
    people: list[Participant] = []
    try:
        a.start()  # prints the demo session's links
        b.start_quiet()
        token_of = {role: links[0].rsplit("/j/", 1)[1] for role, links in a.links.items()}
        session = TokenSigner(bytes.fromhex(secret)).verify(token_of["mediator"]).session
        pair = await flowing_pair(a.url, token_of, people)
        m_id, p_id = pair[2], pair[3]

        started = time.monotonic()
        a.stop(sig_kill=True)  # mid-session: both pages are connected with media flowing
        mediator2, party2, times = await rejoin_pair(b.url, pair, started, people)
        print(f"\ntakeover after SIGKILL (lease TTL 2 s): mediator {times[0]}, party {times[1]}")
        assert party2.welcome["session"]["space"] == "joint"  # the same space as before
        assert mediator2.welcome["session"]["space"] == "joint"
        assert max(t["media_s"] for t in times) < TARGET, times

        # node B's heartbeat reports what it serves now (two peers, the session)
        raw = redis.Redis.from_url(url)

        def b_load():
            info = _node_info(raw.get("parley:node:b"))
            return info if info and info.load.participants == 2 else None

        info = await until(b_load, 10)
        assert info.load.sessions >= 1 and info.load.streams >= 2 and not info.draining
        assert (await asyncio.to_thread(raw.smembers, "parley:owned:b")) >= {session.encode()}
        raw.close()

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
