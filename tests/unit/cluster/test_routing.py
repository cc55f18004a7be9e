"""Where a page goes for a session this node does not serve (cluster/routing.py), against a real
redis-server: redirect only to a live, fresh, non-draining lease holder with a web URL; wait
(``session_moving``) while a session is between nodes; nothing (``session_not_found``) for a
session no node holds or lists."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from cluster.registry import LeaseSettings, NodeLoad, Registry
from cluster.routing import MOVING, REDIRECT, Route, Router
from tests.support.redisd import redis_prefix, redis_server  # noqa: F401 - fixtures

# a long TTL: nothing expires by itself during a test; staleness is made by hand (PEXPIRE)
LONG = LeaseSettings(ttl_ms=10_000, interval=1.0)


@pytest.fixture
async def make(redis_server, redis_prefix):  # noqa: F811
    made: list[Registry] = []

    async def make(node_id: str, url: str | None = None) -> Registry:
        registry = Registry(
            aioredis.Redis.from_url(redis_server.url),
            node_id,
            url or f"https://{node_id}.example.org",
            prefix=redis_prefix,
            settings=LONG,
        )
        await registry.heartbeat(NodeLoad())
        made.append(registry)
        return registry

    yield make
    for registry in made:
        await registry.close()


async def test_a_session_held_by_a_live_node_redirects_there(make):
    a, b = await make("a"), await make("b")
    assert await a.acquire("s-1")
    assert await Router(b).route("s-1") == Route(REDIRECT, "https://a.example.org")
    assert await Router(a).route("s-1") == Route(MOVING)  # its own: being rebuilt


async def test_unknown_and_ended_sessions_are_not_found(make):
    a, b = await make("a"), await make("b")
    assert await Router(b).route("nobody-knows") is None
    assert await a.acquire("s-2")
    assert await a.release("s-2")  # ended: lease given back, off a's list
    assert await Router(b).route("s-2") is None


async def test_a_session_between_nodes_says_moving(make):
    a, b = await make("a"), await make("b")
    assert await a.acquire("s-3")
    # a draining holder hands its leases over: nobody holds it, a still lists it
    await a.release("s-3", hand_over=True)
    assert await Router(b).route("s-3") == Route(MOVING)
    # a dead holder (heartbeat expired) whose lease has not run out yet
    assert await a.acquire("s-3")
    await a.redis.delete(f"{a.prefix}node:a")
    assert await Router(b).route("s-3") == Route(MOVING)


async def test_a_holder_that_missed_two_beats_gets_no_pages_a_draining_one_keeps_its_own(make):
    a, b = await make("a"), await make("b")
    assert await a.acquire("s-4")
    router = Router(b)
    assert (await router.route("s-4")).code == REDIRECT
    # its heartbeat last renewed 2.5 beats ago (Redis's clock: the TTL left)
    left = LONG.ttl_ms - int(2.5 * LONG.interval * 1000)
    await a.redis.pexpire(f"{a.prefix}node:a", left)
    assert await router.route("s-4") == Route(MOVING)
    await a.heartbeat(NodeLoad())  # beating again
    assert (await router.route("s-4")).code == REDIRECT
    # draining: it still serves what it holds until it hands it over (lease deleted)
    a.draining = True
    await a.heartbeat(NodeLoad())
    assert (await router.route("s-4")).code == REDIRECT
    await a.release("s-4", hand_over=True)
    assert await router.route("s-4") == Route(MOVING)


async def test_a_holder_without_a_web_url_gets_no_pages(make):
    a, b = await make("a", url="javascript:alert(1)"), await make("b")
    assert await a.acquire("s-5")
    assert await Router(b).route("s-5") == Route(MOVING)


async def test_the_fallback_list_is_the_other_live_nodes_that_take_sessions(make):
    a, _b, c = await make("a"), await make("b"), await make("c", url="https://c.example.org/")
    c.draining = True
    await c.heartbeat(NodeLoad())
    await make("d", url="ftp://d")
    router = Router(a)
    router.live, _ = await a.nodes()
    assert router.others() == ["https://b.example.org"]
