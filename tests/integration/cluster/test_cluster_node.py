"""Cluster nodes in one process, each with its own session service and Redis connections, on a
real redis-server with short leases: sessions created on a node are leased to it; when it dies
its sessions are spread over the live nodes by placement and rebuilt there, each held by exactly
one; a draining node hands its sessions over at once; a restarted node takes its own back;
an ended session's lease is given back."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import redis
import redis.asyncio as aioredis

from cluster.ledger import RedisLedgerStore
from cluster.node import ClusterNode
from cluster.registry import LeaseSettings, NodeLoad, Registry
from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.service import ParticipantSpec, SessionService
from tests.support.redisd import redis_prefix, redis_server  # noqa: F401 - fixtures

SHORT = LeaseSettings(ttl_ms=400, interval=0.05)  # a crash's takeover within half a second
# For tests where an owner must stay alive: the nodes share one event loop here, and on a busy
# machine it may stall past SHORT's two beats (0.15 s), so the owner would look silent
STEADY = LeaseSettings()


async def until(predicate, timeout: float = 10.0):  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not (value := await predicate()):
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.02)
    return value


@pytest.fixture
async def cluster(redis_server, redis_prefix):  # noqa: F811
    made: list[tuple[ClusterNode, RedisLedgerStore]] = []

    async def node(
        node_id: str, sync: str = "full", place_new: bool = False, settings=SHORT
    ) -> ClusterNode:
        store = RedisLedgerStore.from_url(redis_server.url, prefix=redis_prefix, sync=sync)
        service = SessionService(store)
        lost: list[tuple[str, list[str]]] = []
        registry = Registry(
            aioredis.Redis.from_url(redis_server.url),
            node_id,
            f"https://{node_id}",
            prefix=redis_prefix,
            settings=settings,
        )
        n = ClusterNode(
            service,
            registry,
            load=lambda: NodeLoad(sessions=sum(not s.ended for s in service.sessions())),
            on_lost=lambda s, people: lost.append((s, people)),
            store=store,
            place_new=place_new,
        )
        n.lost = lost
        await n.start()
        made.append((n, store))
        return n

    yield node
    for n, store in made:
        await n.stop()
        await n.registry.close()
        store.close()


def create(node: ClusterNode, title: str = "T") -> str:
    """A session created on ``node`` as the visits clock or the desk does: it stays there."""
    return _make(node, title)().id


def _make(node: ClusterNode, title: str, by: str = "staff:wang"):
    return lambda: node.service.create_session(
        "mediation",
        actor=by,
        title=title,
        case_number=f"C-{title}",
        participants=[ParticipantSpec("M", "mediator"), ParticipantSpec("A", "party", "A")],
    )


async def placed(node: ClusterNode, title: str = "T", by: str = "staff:wang") -> str:
    """A session created as the staff console does (``ClusterNode.create``): placed."""
    return (await node.create(_make(node, title, by))).id


async def test_a_dead_nodes_sessions_are_spread_over_the_live_nodes(cluster):
    # x dies fast (SHORT leases); the survivors' heartbeats and grace are STEADY's: on a busy
    # machine the shared event loop stalls past SHORT's TTL, y's heartbeat expired, and z (seeing
    # y dead) rightly took all four, which is not what this test is about
    x = await cluster("x")
    y, z = await cluster("y", settings=STEADY), await cluster("z", settings=STEADY)
    sessions = [create(x, f"s{i}") for i in range(4)]
    await until(lambda: _all_owned_by(x, sessions, "x"))
    mediator = next(iter(x.service.state(sessions[0]).participants))
    x.service.execute(
        sessions[0], "system", decode_command({"type": "connect", "participant": mediator})
    )
    await x.stop()  # a crash, as far as the cluster can tell: no more heartbeats or renewals

    async def taken():
        owners = [await y.registry.owner(s) for s in sessions]
        return owners if all(o in ("y", "z") for o in owners) else None

    owners = await until(taken)
    # placement spreads them (2 and 2 when both nodes run their rounds in time; a node that
    # stalls past the grace period (2 s here) leaves more to the other)
    assert set(owners) == {"y", "z"}
    for s, owner in zip(sessions, owners, strict=True):
        here, there = (y, z) if owner == "y" else (z, y)
        assert here.service.state(s).id == s
        with pytest.raises(CommandError):
            there.service.state(s)
    # the one connected participant was marked gone by the takeover; spaces kept
    first = (y if owners[0] == "y" else z).service.state(sessions[0])
    assert not first.participants[mediator].connected
    assert await until(lambda: _forgotten(y, "x"))


def record(node: ClusterNode, session_id: str) -> None:
    """Both join and consent (the party to the mediation too), the mediator admits the party
    and starts the recording."""
    ids = {p.role: p.id for p in node.service.state(session_id).participants.values()}

    def run(actor: str, **command) -> None:
        node.service.execute(session_id, actor, decode_command(command))

    for role, topics in (("mediator", ()), ("party", ("online_mediation", "session_rules"))):
        run("system", type="connect", participant=ids[role])
        for topic in (*topics, "recording"):
            run(ids[role], type="record_consent", topic=topic, given=True)
    if node.service.state(session_id).participants[ids["party"]].space == "waiting":
        run(ids["mediator"], type="admit", participant=ids["party"])
    run(ids["mediator"], type="start_recording")


async def test_a_taken_over_recording_records_the_gap_from_its_start(cluster):
    x, y = await cluster("x"), await cluster("y")
    recorded, quiet = create(x, "recorded"), create(x, "quiet")
    record(x, recorded)
    started = x.service.events(recorded)[-1]
    assert started.type == "recording.started"
    await until(lambda: _all_owned_by(x, [recorded, quiet], "x"))
    await x.stop()  # a crash: the recorder's media died with the node

    async def taken():
        return all([await y.registry.owner(s) == "y" for s in (recorded, quiet)])

    await until(taken)
    gaps = [e for e in y.service.events(recorded) if e.type == "recording.gap"]
    assert len(gaps) == 1, gaps
    gap = gaps[0]
    assert (gap.actor, gap.data["reason"]) == ("system", "node_restart")
    assert gap.data["wall_start"] == round(started.ts, 6)  # nothing held since the start
    assert started.ts <= gap.data["wall_end"] <= time.time()
    assert y.service.state(recorded).recording  # it resumes here when the media come back
    assert not [e for e in y.service.events(quiet) if e.type.startswith("recording.")]


async def test_a_draining_node_hands_its_sessions_over_at_once(cluster):
    x, y = await cluster("x"), await cluster("y")
    sessions = [create(x) for _ in range(2)]
    await until(lambda: _all_owned_by(x, sessions, "x"))
    started = time.monotonic()
    assert sorted(await x.drain()) == sorted(sessions)
    assert {s for s, _ in x.lost} == set(sessions) and all(people for _, people in x.lost)
    await until(lambda: _all_owned_by(y, sessions, "y"))

    async def served_by_y():  # the lease is taken a moment before the session is rebuilt
        return {s.id for s in y.service.sessions()} == set(sessions)

    await until(served_by_y)
    assert time.monotonic() - started < SHORT.ttl_ms / 1000  # no waiting for a lease to expire
    assert x.service.sessions() == []
    # a draining node gets nothing new: y takes no session of x's back, x is not forgotten
    assert await y.registry.owned("x") == []


async def test_a_restarted_node_takes_its_own_sessions_back(cluster):
    x = await cluster("x")
    s = create(x)
    await until(lambda: _all_owned_by(x, [s], "x"))
    await x.stop()
    again = await cluster("x")  # the same node id, a fresh process
    assert again.service.state(s).id == s
    assert await again.registry.owner(s) == "x"


async def test_an_ended_session_gives_its_lease_back(cluster):
    x = await cluster("x")
    s = create(x)
    await until(lambda: _all_owned_by(x, [s], "x"))
    x.service.execute(s, "staff:wang", decode_command({"type": "end_session", "reason": "done"}))

    async def released():
        return await x.registry.owner(s) is None and s not in await x.registry.owned()

    assert await until(released)


async def test_a_refused_append_drops_the_session_and_rebuilds_it_from_the_ledger(
    cluster,
    redis_server,  # noqa: F811
    redis_prefix,  # noqa: F811
):
    """Group mode: something else appended to a session this node serves (a split brain); the
    node's next append is refused when it is stored, the session is dropped (its sockets
    closed) and, the lease being still this node's, rebuilt from the ledger."""
    x = await cluster("x", sync="group")
    s = create(x)
    await until(lambda: _all_owned_by(x, [s], "x"))
    await x.service.durable()
    intruder = RedisLedgerStore.from_url(redis_server.url, prefix=redis_prefix)
    mediator = next(iter(x.service.state(s).participants))
    chat = decode_command({"type": "chat", "text": "from the other node"})
    intruder_state = SessionService(intruder)
    intruder_state.adopt(s, mark_disconnected=False)
    intruder_state.execute(
        s, "system", decode_command({"type": "connect", "participant": mediator})
    )
    intruder_state.execute(s, mediator, chat)
    intruder.close()
    x.service.execute(s, "system", decode_command({"type": "tick"}))  # nothing due: no append
    x.service.execute(s, "system", decode_command({"type": "connect", "participant": mediator}))
    with pytest.raises(CommandError):
        await x.service.durable()  # the answer to that command is never "ok"

    async def rebuilt():
        return (
            x.lost and s in {st.id for st in x.service.sessions()} and x.service.state(s).seq == 4
        )

    assert await until(rebuilt)
    assert [p for p, _ in x.lost] == [s]
    state = x.service.state(s)
    assert state.chat  # the other node's chat is in the rebuilt state
    await x.service.durable()  # forgiven: barriers pass again


async def _all_owned_by(node: ClusterNode, sessions: list[str], owner: str) -> bool:
    try:
        return all([await node.registry.owner(s) == owner for s in sessions])
    except redis.exceptions.ConnectionError:
        # after a Redis restart, each connection the node's pool kept from before fails once
        # (the node's own loops retry on their next beat): not yet
        return False


async def _forgotten(node: ClusterNode, dead: str) -> bool:
    return dead.encode() not in await node.registry.redis.smembers(f"{node.registry.prefix}nodes")


async def test_a_redis_restart_longer_than_the_ttl_keeps_the_session_here(
    cluster,
    redis_server,  # noqa: F811
):
    """Redis goes away for longer than a lease lives (SIGKILL, then started again from its
    AOF): nobody else took the session, so the node keeps serving it; the command answered
    while Redis was away is acknowledged only once it is stored, and nothing is lost."""
    x = await cluster("x", sync="group")
    s = create(x)
    await until(lambda: _all_owned_by(x, [s], "x"))
    await x.service.durable()
    mediator = next(iter(x.service.state(s).participants))
    redis_server.kill()
    x.service.execute(s, "system", decode_command({"type": "connect", "participant": mediator}))
    answer = asyncio.ensure_future(x.service.durable())
    await asyncio.sleep(SHORT.ttl_ms / 1000 * 2)  # leases and heartbeats run out meanwhile
    assert not answer.done()  # nothing acknowledged while Redis is away
    redis_server.start()
    await asyncio.wait_for(answer, 30)
    assert await until(lambda: _all_owned_by(x, [s], "x"))
    await asyncio.sleep(SHORT.ttl_ms / 1000 * 2)  # several renewals later: still here
    assert x.lost == [] and x.service.state(s).participants[mediator].connected
    assert [e.type for e in x.service.events(s)][-1] == "participant.connected"


async def test_a_node_never_takes_over_its_own_sessions_when_its_heartbeat_has_expired(cluster):
    """After Redis was away longer than the TTL, a node's own heartbeat has expired until its
    next beat: its takeover round must not count itself dead and rebuild its own sessions from
    the ledger (that marked everyone disconnected under open sockets)."""
    x = await cluster("x")
    s = create(x)
    await until(lambda: _all_owned_by(x, [s], "x"))
    mediator = next(iter(x.service.state(s).participants))
    x.service.execute(s, "system", decode_command({"type": "connect", "participant": mediator}))
    await x.service.durable()
    await x.stop()  # no beats or rounds in the background: the round below is the only one
    redis = x.registry.redis
    await redis.delete(f"{x.registry.prefix}node:x", f"{x.registry.prefix}lease:{s}")
    assert await x.take_over() == []
    assert x.service.state(s).participants[mediator].connected
    assert [e.type for e in x.service.events(s)][-1] == "participant.connected"


async def test_a_new_session_goes_to_the_least_loaded_node(cluster):
    """With ``place_new`` a session the console creates on a busy node is given to the emptier
    one: it is stored first, leased to that node, rebuilt there from the ledger and dropped
    where it was created; a session created while this node is the emptiest stays here, and so
    does one not created through ``create`` (a visit's, a desk's)."""
    x = await cluster("x", sync="group", place_new=True)
    kept = [await placed(x, f"k{i}") for i in range(3)]  # alone: the least loaded, keeps them
    await until(lambda: _all_owned_by(x, kept, "x"))
    y = await cluster("y", sync="group")

    async def x_sees_both():
        live, _ = await x.registry.nodes()
        loads = {n.id: n.load.sessions for n in live}
        return loads.get("x") == 3 and loads.get("y") == 0

    await until(x_sees_both)
    visit = create(x, "visit")  # not the console's: stays although y is emptier
    s = await placed(x, "placed")
    await until(lambda: _all_owned_by(y, [s], "y"))

    async def served_by_y():
        return s in {st.id for st in y.service.sessions()}

    await until(served_by_y)
    assert x.placed == [(s, "y")]
    with pytest.raises(CommandError):
        x.service.state(s)
    assert s in await y.registry.owned() and s not in await x.registry.owned()
    state = y.service.state(s)
    assert state.title == "placed" and len(state.participants) == 2
    # it carries on there, chained onto what x stored
    mediator = next(iter(state.participants))
    y.service.execute(s, "system", decode_command({"type": "connect", "participant": mediator}))
    await y.service.durable()
    assert {st.id for st in x.service.sessions()} == {*kept, visit}
    assert await x.registry.owner(visit) == "x"


async def test_a_burst_of_new_sessions_on_two_nodes_at_once_spreads_evenly(cluster):
    """Sixteen sessions created at once, eight through each node's console: every placement
    counts as pending on its node in Redis until that node's heartbeat counts the session, and
    placements race under WATCH, so the two empty nodes end with eight each (without the
    pending count each node's burst would go to whichever looked emptiest)."""
    x = await cluster("x", place_new=True)
    y = await cluster("y", place_new=True)

    async def both_live():
        return len((await x.registry.nodes())[0]) == 2

    await until(both_live)
    made = await asyncio.gather(
        *(placed(node, f"{node.node_id}{i}") for i in range(8) for node in (x, y))
    )

    async def spread():
        owners = [await x.registry.owner(s) for s in made]
        return owners if None not in owners else None

    owners = await until(spread)
    assert sorted(owners).count("x") == 8 and owners.count("y") == 8, owners

    async def served():
        return len(x.service.sessions()) == 8 and len(y.service.sessions()) == 8

    await until(served)

    async def settled():  # every heartbeat has counted its sessions: nothing pending
        return await x.registry.pending("x") == 0 and await x.registry.pending("y") == 0

    await until(settled)


async def test_a_draining_node_gets_no_new_session(cluster):
    x = await cluster("x", place_new=True)
    y = await cluster("y", place_new=True)
    for i in range(2):
        await placed(x, f"busy{i}")
    await y.agent.mark_draining()

    async def x_sees_y_draining():
        live, _ = await x.registry.nodes()
        return any(n.id == "y" and n.draining for n in live)

    await until(x_sees_y_draining)
    before, on_y = list(x.placed), len(y.service.sessions())  # the second went to y
    made = [await placed(x, f"n{i}") for i in range(3)]
    assert all([await x.registry.owner(s) == "x" for s in made])
    assert x.placed == before and len(y.service.sessions()) == on_y


async def test_the_index_lists_every_nodes_sessions_and_locate_finds_them(cluster):
    """The console's view across nodes (cluster/index.py): a session placed on y is listed for
    its creator by either node, its summary follows what the list shows (the waiting room,
    the end) and is written only when that changes; ``locate`` answers where its pages go."""
    x = await cluster("x", place_new=True)
    for i in range(2):
        await placed(x, f"busy{i}")
    y = await cluster("y", place_new=True)

    async def x_sees_y():
        return len((await x.registry.nodes())[0]) == 2

    await until(x_sees_y)
    s = await placed(x, "case")
    other = await placed(x, "theirs", by="staff:li")
    assert dict(x.placed)[s] == "y"
    mine = [e.id for e in await x.index.sessions("staff:wang")]
    assert s in mine and other not in mine  # listed as soon as ``create`` returns
    assert {e.id for e in await y.index.sessions(None)} >= {s, other}  # an administrator's
    # y adopts it the moment a page asks for it there (no waiting for its round)
    assert (await y.locate(s)).code == "here"
    route = await x.locate(s)
    assert (route.code, route.url) == ("redirect", "https://y")
    assert await x.locate("s-0000000000000000") is None and await x.locate("../x") is None

    writes = []
    write = y.index._write

    async def counted(batch):
        writes.append([b.id for b in batch])
        await write(batch)

    y.index._write = counted
    ids = {p.role: p.id for p in y.service.state(s).participants.values()}
    run = lambda actor, **c: y.service.execute(s, actor, decode_command(c))  # noqa: E731
    run("system", type="connect", participant=ids["party"])  # into the waiting room

    async def waiting(n):
        entry = await x.index.get(s)
        return entry.waiting == n and entry.node == "y"

    await until(lambda: waiting(1))
    await y.index.flush()
    before = len(writes)
    run(ids["party"], type="record_consent", topic="online_mediation", given=True)
    await y.index.flush()
    assert len(writes) == before  # the list shows nothing new: nothing written
    run("staff:wang", type="end_session", reason="done")

    async def ended():
        entry = await x.index.get(s)
        return entry.ended and entry.waiting == 0

    await until(ended)

    async def released():
        return await y.registry.owner(s) is None

    await until(released)
    # nobody holds an ended session: the index names the node that still has it in memory
    route = await x.locate(s)
    assert (route.code, route.url) == ("redirect", "https://y")


async def test_retiring_with_no_other_live_node_waits_the_deadline_then_hands_over(cluster, caplog):
    """SIGTERM on the only node (``ClusterNode.retire``): it waits the whole deadline, logs that
    nobody takes its sessions, and hands them over all the same (leases deleted, listed under
    it): a node that starts afterwards takes them at its first round."""
    x = await cluster("x")
    s = create(x)
    await until(lambda: _all_owned_by(x, [s], "x"))
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="parley.cluster"):
        assert await x.retire(0.5, asyncio.Event(), linger=0) == [s]
    assert time.monotonic() - started >= 0.5  # the whole deadline
    assert any("no other live node" in r.getMessage() for r in caplog.records)
    assert [p for _, p in x.lost] and x.service.sessions() == []
    assert await x.registry.owner(s) is None and await x.registry.owned("x") == [s]
    y = await cluster("y")
    await until(lambda: _all_owned_by(y, [s], "y"))
    assert time.monotonic() - started < 0.5 + SHORT.ttl_ms / 1000 + 2  # no TTL to wait for


async def test_retiring_ends_early_when_its_sessions_end_or_a_second_signal_comes(cluster):
    x, y = await cluster("x"), await cluster("y")
    ending, staying = create(x, "ends"), create(x, "stays")
    await until(lambda: _all_owned_by(x, [ending, staying], "x"))
    hurry = asyncio.Event()
    retiring = asyncio.get_running_loop().create_task(x.retire(60, hurry, linger=0))
    await until(lambda: _draining(y, "x"))
    assert not retiring.done() and x.lost == []  # still serving both
    x.service.execute(ending, "staff:wang", decode_command({"type": "end_session"}))
    await until(lambda: _released(x, ending))
    assert not retiring.done()  # the other one is still open
    started = time.monotonic()
    hurry.set()  # the second signal
    assert await asyncio.wait_for(retiring, 10) == [staying]
    assert time.monotonic() - started < SHORT.ttl_ms / 1000 + 1
    assert await y.registry.owner(staying) == "y"  # adopted before the sockets were closed
    assert [s for s, _ in x.lost] == [staying]


async def _draining(node: ClusterNode, node_id: str) -> bool:
    live, _ = await node.registry.nodes()
    return any(n.id == node_id and n.draining for n in live)


async def _released(node: ClusterNode, session_id: str) -> bool:
    return session_id not in node.agent.held and await node.registry.owner(session_id) is None


async def test_retiring_without_redis_gives_up_and_stops_as_on_a_crash(cluster, caplog):
    x = await cluster("x")
    s = create(x)
    await until(lambda: _all_owned_by(x, [s], "x"))
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reachable, x.registry.redis = x.registry.redis, aioredis.Redis(port=port)
    try:
        with caplog.at_level("ERROR", logger="parley.cluster"):
            assert await asyncio.wait_for(x.retire(60, asyncio.Event(), linger=0), 30) == []
        assert any("drain given up" in r.getMessage() for r in caplog.records)
        assert x.service.state(s).id == s  # nothing dropped: the lease runs out as on a crash
    finally:
        await x.registry.redis.aclose()
        x.registry.redis = reachable


async def test_locate_says_moving_while_a_dead_nodes_session_is_not_taken_yet(cluster):
    """A console page for a session whose node is gone and whose lease has not expired yet:
    ``session_moving`` (the console answers 503 with ``Refresh: 1``); once taken over, here."""
    slow = LeaseSettings(ttl_ms=3000, interval=0.05)  # the lease outlives the checks below
    x, y = await cluster("x", settings=slow), await cluster("y", settings=slow)
    s = await placed(x, "orphan")  # place_new off: stays on x
    await until(lambda: _all_owned_by(x, [s], "x"))
    await x.stop()  # a crash; its heartbeat key removed as if it had expired
    await y.registry.redis.delete(f"{y.registry.prefix}node:x")
    assert (await y.locate(s)).code == "session_moving"

    async def here():
        return (await y.locate(s)).code == "here"

    await until(here)
    assert (await y.index.get(s)).node == "y"  # the adopting node rewrote its summary
