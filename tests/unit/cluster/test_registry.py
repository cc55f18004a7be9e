"""Node registry and session leases against a real redis-server: exactly one holder per
session, a lease that is not renewed is lost after its TTL (real time, bounded by a deadline),
heartbeats with load, dead nodes and the adoption of their sessions, drain."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from cluster.registry import LeaseSettings, NodeAgent, NodeLoad, Registry
from tests.support.redisd import redis_prefix, redis_server  # noqa: F401 - fixtures

SHORT = LeaseSettings(ttl_ms=300, interval=0.05)


@pytest.fixture
async def make(redis_server, redis_prefix):  # noqa: F811
    made: list[Registry] = []

    def make(node_id: str, settings: LeaseSettings = SHORT) -> Registry:
        registry = Registry(
            aioredis.Redis.from_url(redis_server.url),
            node_id,
            f"https://{node_id}.example.org",
            prefix=redis_prefix,
            settings=settings,
        )
        made.append(registry)
        return registry

    yield make
    for registry in made:
        await registry.close()


async def test_two_nodes_racing_for_sessions_exactly_one_holds_each(make):
    a, b = make("a"), make("b")
    sessions = [f"s-{i}" for i in range(50)]
    results = await asyncio.gather(*(asyncio.gather(a.acquire(s), b.acquire(s)) for s in sessions))
    for session, (got_a, got_b) in zip(sessions, results, strict=True):
        assert got_a != got_b, session  # exactly one of the two
        assert await a.owner(session) == ("a" if got_a else "b")
    assert sorted(await a.owned() + await b.owned()) == sorted(sessions)
    # the holder acquiring again extends; the other still cannot
    held_by_a = [s for s, (got, _) in zip(sessions, results, strict=True) if got]
    assert await a.acquire(held_by_a[0]) and not await b.acquire(held_by_a[0])


async def test_only_the_holder_renews_or_releases(make):
    a, b = make("a"), make("b")
    assert await a.acquire("s-1")
    assert await b.renew(["s-1"]) == ["s-1"]  # not b's
    assert not await b.release("s-1")
    assert await a.owner("s-1") == "a"
    assert await a.renew(["s-1"]) == []
    assert await a.release("s-1")
    assert await a.owner("s-1") is None and await a.owned() == []
    assert await b.acquire("s-1")


async def test_a_lease_not_renewed_is_lost_after_its_ttl(make):
    """A holds with a 300 ms TTL and stops renewing; B keeps trying. B gets it no earlier than
    the TTL and soon after it (polling every 10 ms, bounded by a deadline)."""
    a, b = make("a"), make("b")
    assert await a.acquire("s-1")
    start = time.monotonic()
    deadline = start + 3.0
    while not await b.acquire("s-1"):
        assert time.monotonic() < deadline, "the lease never expired"
        await asyncio.sleep(0.01)
    waited = time.monotonic() - start
    assert 0.25 <= waited <= 0.3 + 1.5, waited  # never early; late only by a busy machine
    assert await a.owner("s-1") == "b"
    assert await a.renew(["s-1"]) == ["s-1"]  # A finds out at its next renewal


async def test_a_renewing_agent_keeps_its_lease_and_reports_a_stolen_one(make):
    # renewals every 0.1 s against a 1.5 s TTL: only a stall of over a second (a machine far
    # busier than any test run's) could lose it
    steady = LeaseSettings(ttl_ms=1500, interval=0.1)
    a, b = make("a", steady), make("b", steady)
    lost: list[str] = []
    agent = NodeAgent(a, lambda: NodeLoad(sessions=2), on_lost=lost.append)
    await agent.start()
    try:
        assert await agent.acquire("s-1") and await agent.acquire("s-2")
        end = time.monotonic() + 2.0  # beyond the TTL: only the renewals can have kept it
        while time.monotonic() < end:
            assert not await b.acquire("s-1")
            await asyncio.sleep(0.05)
        # an operator (or a split brain) deletes s-2's lease and b takes it: a is told
        await b.redis.delete(f"{b.prefix}lease:s-2")
        assert await b.acquire("s-2")
        deadline = time.monotonic() + 2.0
        while not lost:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert lost == ["s-2"] and agent.held == {"s-1"}
    finally:
        await agent.stop()


async def test_heartbeats_list_live_nodes_with_their_load_and_expire(make):
    a, b = make("a"), make("b")
    await a.heartbeat(NodeLoad(sessions=3, participants=9, streams=18, cpu=0.4))
    await b.heartbeat(NodeLoad())
    live, dead = await a.nodes()
    assert [n.id for n in live] == ["a", "b"] and dead == []
    assert live[0].load == NodeLoad(sessions=3, participants=9, streams=18, cpu=0.4)
    assert live[0].url == "https://a.example.org" and not live[0].draining
    # b stops; a keeps beating: b is listed dead once its heartbeat's TTL ran out
    deadline = time.monotonic() + 3.0
    while True:
        await a.heartbeat(NodeLoad())
        live, dead = await a.nodes()
        if dead == ["b"]:
            break
        assert time.monotonic() < deadline, "b's heartbeat never expired"
        await asyncio.sleep(0.02)
    assert [n.id for n in live] == ["a"]


async def test_a_dead_nodes_sessions_are_adopted_then_it_is_forgotten(make):
    a, b = make("a"), make("b")
    await b.heartbeat(NodeLoad())
    for s in ("s-1", "s-2"):
        assert await b.acquire(s)
    assert not await a.adopt("b", "s-1")  # still b's lease
    assert not await a.forget("b")  # still alive
    deadline = time.monotonic() + 3.0
    while (await a.nodes())[1] != ["b"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert not await a.forget("b")  # dead, but still listed as holding sessions
    for s in ("s-1", "s-2"):
        while not await a.adopt("b", s):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
    assert await a.owned() == ["s-1", "s-2"] and await a.owned("b") == []
    assert await a.owner("s-1") == "a"
    assert await a.forget("b")
    assert (await a.nodes()) == ([], [])


async def test_drain_marks_the_node_and_hands_its_sessions_over(make):
    a, b = make("a"), make("b")
    agent = NodeAgent(a, lambda: NodeLoad(sessions=1))
    await agent.start()
    try:
        assert await agent.acquire("s-1")
        assert await agent.drain() == ["s-1"]
        live, _ = await b.nodes()
        assert live[0].draining
        # handed over: no lease, still listed under a until a live node adopts it
        assert await b.owner("s-1") is None and await a.owned() == ["s-1"]
        assert agent.held == set()
        assert await b.adopt("a", "s-1")
        assert await a.owned() == [] and await b.owned() == ["s-1"]
        assert await b.owner("s-1") == "b"
    finally:
        await agent.stop()


async def test_bad_node_ids_and_damaged_entries(make):
    with pytest.raises(ValueError):
        make("a:b")
    with pytest.raises(ValueError):
        make("")
    with pytest.raises(ValueError):
        LeaseSettings(ttl_ms=100, interval=0.2)
    a = make("a")
    await a.redis.sadd(f"{a.prefix}nodes", "ghost")
    await a.redis.set(f"{a.prefix}node:ghost", b"\xff not json")
    await a.redis.sadd(f"{a.prefix}nodes", "liar")
    await a.redis.set(
        f"{a.prefix}node:liar",
        b'{"id": "liar", "url": "u", "load": {"sessions": -3}, "draining": false, "seen": 0}',
    )
    await a.heartbeat(NodeLoad())
    live, dead = await a.nodes()
    assert [n.id for n in live] == ["a"] and dead == ["ghost", "liar"]


async def test_a_session_is_given_only_when_nobody_holds_it(make):
    a, b = make("a"), make("b")
    assert await a.give("s-new", "b")  # a gives a session nobody holds to b
    assert await a.owner("s-new") == "b" and await b.owned() == ["s-new"]
    assert await a.owned() == []
    assert not await a.give("s-new", "a")  # held: not given again
    assert await b.acquire("s-new")  # b holds it: acquiring extends
    assert await a.acquire("s-held")
    assert not await b.give("s-held", "b") and await b.owner("s-held") == "a"


async def test_placements_count_as_pending_until_the_nodes_heartbeat_counts_them(make):
    """``reserve``: each placement is counted on the chosen node in Redis, so placers on any
    node (racing under WATCH) see it; the node's heartbeat removes what it holds; an entry
    older than the TTL no longer counts (a session the node never took)."""
    from cluster.placement import place

    a, b = make("a"), make("b")
    await a.heartbeat(NodeLoad())
    await b.heartbeat(NodeLoad())
    chosen = await asyncio.gather(
        *(r.reserve(f"s{i}-{r.node_id}", place) for i in range(5) for r in (a, b))
    )
    assert sorted(n.id for n in chosen) == ["a"] * 5 + ["b"] * 5  # ten at once: five each
    assert (await a.pending("a"), await a.pending("b")) == (5, 5)
    held = [f"s{i}-{r}" for i in range(5) for r in "ab"]
    mine = [s for s, n in zip(held, chosen, strict=True) if n.id == "b"][:3]
    await b.heartbeat(NodeLoad(sessions=3), mine)  # b now holds and counts three of them
    assert await a.pending("b") == 2
    deadline = time.monotonic() + 5
    while await a.pending("a"):  # never taken: aged out after the TTL
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    # nothing to choose: no placement, nothing counted
    assert await a.reserve("s-none", lambda live, pending: None) is None


def test_the_cpu_figure_is_the_sustained_use_not_a_burst():
    """A 0.2 s burst (a login's password hash) in a half-second beat reads as 0.4 of a core
    over that beat; the smoothed figure stays under placement's quiet threshold, and a node
    that stays busy climbs to its real use within a few time constants."""
    from cluster.placement import CPU_QUIET
    from cluster.registry import CpuMeter

    now, used = [0.0], [0.0]
    meter = CpuMeter(seconds=5.0, clock=lambda: now[0], cpu=lambda: used[0])

    def beat(cpu_seconds: float) -> float:
        now[0] += 0.5
        used[0] += cpu_seconds
        return meter()

    figures = [beat(0.005) for _ in range(10)]  # idle: 1 % of a core
    assert max(figures) < 0.02
    assert beat(0.2) < CPU_QUIET  # the burst
    busy = [beat(0.4) for _ in range(60)]  # 0.8 of a core for 30 s
    assert busy[-1] == pytest.approx(0.8, abs=0.01) and busy[3] < busy[-1]


async def test_a_role_has_one_holder_who_keeps_it_while_calling_and_loses_it_when_silent(make):
    steady = LeaseSettings(ttl_ms=1000, interval=0.2)  # a busy machine's stall is no silence
    a, b = make("a", steady), make("b", steady)
    held = await asyncio.gather(*(r.hold("visits-clock") for r in (a, b, a, b)))
    assert held.count(True) == 2 and held[0] == held[2] and held[1] == held[3]  # one holder
    holder, other = (a, b) if held[0] else (b, a)
    deadline = time.monotonic() + steady.ttl_ms / 1000 * 2
    while time.monotonic() < deadline:  # calls within the TTL: the holder keeps it
        assert await holder.hold("visits-clock") and not await other.hold("visits-clock")
        await asyncio.sleep(steady.ttl_ms / 1000 / 10)
    # the holder stops calling (dead, stalled): after one TTL the next caller has it
    deadline = time.monotonic() + 10
    while not await other.hold("visits-clock"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert not await holder.hold("visits-clock")
    assert await a.hold("another-role") != await b.hold("another-role")  # roles are apart
