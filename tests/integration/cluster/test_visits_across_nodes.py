"""The visits' officer console and live-visits clock on a node that does not serve the visit
(cluster nodes in one process, a real redis-server): the visit is opened on node A, A crashes,
B takes the session over, A comes back with the same id; A's console lists the visit from the
ledger and commands it through the relay, where B's rooms decides; A's clock ends it at its
booked end on B (``no_visit``) and closes the booking's live row."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from rooms.errors import CommandError
from signaling.tokens import TokenSigner
from signaling.visits_console import VisitsConsole
from signaling.visits_live import OPEN_MINUTES
from tests.integration.cluster.test_cluster_node import STEADY, cluster, until  # noqa: F401
from tests.integration.visits.test_live_steps import START
from tests.support.province import NOW, build
from tests.support.redisd import redis_prefix, redis_server  # noqa: F401 - fixtures
from visits.booking import Rules
from visits.model import VisitError
from visits.reservations import Request


@pytest.fixture
def province(tmp_path):
    store, _, _, ids = build(tmp_path / "visits")
    yield store, ids
    store.close()


def console_on(node, store) -> VisitsConsole:
    c = VisitsConsole(
        store,
        rules=Rules(),
        notifier=None,
        timezone="Asia/Shanghai",
        service=node.service,
        signer=TokenSigner(b"k" * 32),
    )
    c.officer.relay = c.live.relay = node.relay  # as server.py wires a clustered node
    return c


def book(c: VisitsConsole, ids: dict) -> int:
    bid = c.res.request(
        "staff:op", Request(ids["a1"], "bx-1", "pa-1", START, 15, (ids["a1v0"],)), NOW
    )
    c.res.decide("staff:off-a", bid, approve=True, reason="", supervisor=False, now=NOW)
    return bid


async def test_a_visit_served_by_another_node_is_listed_commanded_and_ended(cluster, province):  # noqa: F811
    store, ids = province
    a, b = await cluster("a", settings=STEADY), await cluster("b", settings=STEADY)
    c = console_on(a, store)
    bid = book(c, ids)
    await c.live.tick(START - dt.timedelta(minutes=OPEN_MINUTES))
    _, session, _, family, inmate, _ = c.live.row(booking=bid)
    assert a.service.state(session).time_limit == 15 * 60.0
    await until(lambda: _owner_is(a, session, "a"))

    await a.stop()  # a crash: B takes the visit over
    await until(lambda: _served(b, session))
    a2 = await cluster(
        "a", settings=STEADY
    )  # back with the same id: it does not serve the visit now
    c2 = console_on(a2, store)
    assert not a2.relay.here(session)

    # the console lists it, with the ledger's state
    [(row, booking, state, _bureau, facility)] = list(c2.officer._open_visits("prison-a"))
    assert (row[1], booking.id, facility) == (session, bid, "prison-a")
    assert state.seq == b.service.state(session).seq and not state.ended
    assert c2.officer._status(state)[0] == "waiting"
    with pytest.raises(CommandError):
        a2.service.state(session)  # never served here
    assert a2.service.sessions() == []

    # a command B's rooms refuses comes back with its code; one it accepts is in B's state
    with pytest.raises(VisitError) as e:
        await c2.officer._run(state, "staff:off-a", type="warn", reason="language")
    assert e.value.code == "conflict"  # nobody is in the visit yet: refused on B
    after = await c2.officer._run(state, "staff:off-a", type="mute", participant=inmate)
    assert b.service.state(session).participants[inmate].muted
    assert after.participants[inmate].muted and after.seq == b.service.state(session).seq
    assert a2.relay.served == 0 and b.relay.served == 1

    # B alive but not reading its queue: the console's action fails with a clear code, and
    # nothing happens on B (the command was taken back)
    await b.relay.stop()
    a2.relay.timeout = 0.5
    with pytest.raises(VisitError) as e:
        await c2.officer._run(after, "staff:off-a", type="unmute", participant=inmate)
    assert e.value.code == "unavailable"
    b.relay.start()
    assert b.service.state(session).participants[inmate].muted

    # the clock on A: before the booked end nothing; at it, the visit ends on B (no_visit)
    end = START + dt.timedelta(minutes=15)
    await c2.live.tick(end - dt.timedelta(minutes=1))
    assert not b.service.state(session).ended
    await c2.live.tick(end)
    assert b.service.state(session).ended_reason == "no_visit"
    assert b.relay.served == 2
    await c2.live.tick(end + dt.timedelta(seconds=1))  # the next beat sees it ended: row closed
    assert c2.live.row(booking=bid)[5] == 1
    assert c2.res.get(bid).status == "approved"  # a no-show stays approved (as on one node)
    assert list(c2.officer._open_visits("prison-a")) == []


async def _owner_is(node, session: str, node_id: str) -> bool:
    return await node.registry.owner(session) == node_id


async def _served(node, session: str) -> bool:
    return node.relay.here(session)


@pytest.fixture
def shared_province(tmp_path, redis_server, redis_prefix):  # noqa: F811
    """Two machines' copies of one cluster visits database (cluster/visits.py)."""
    from cluster.visits import RedisVisitStore

    a, b = (
        RedisVisitStore.from_url(tmp_path / n, redis_server.url, prefix=redis_prefix)
        for n in ("a", "b")
    )
    _, _, _, ids = build(None, store=a)
    yield a, b, ids
    a.close()
    b.close()


async def test_two_nodes_clocks_open_each_visit_once(cluster, shared_province):  # noqa: F811
    """Every node runs the live-visits clock, but only the holder of the cluster's one clock
    beats; a visit opened twice for a moment (the clock passing between nodes) keeps the first
    session and ends the other."""
    store_a, store_b, ids = shared_province
    a, b = await cluster("a", settings=STEADY), await cluster("b", settings=STEADY)
    consoles = [console_on(a, store_a), console_on(b, store_b)]
    bid = book(consoles[1], ids)  # booked through b, read on a
    due = START - dt.timedelta(minutes=OPEN_MINUTES)
    tasks = []
    for c, node in zip(consoles, (a, b), strict=True):
        c.live.now = lambda: due
        c.live.role = lambda node=node: node.registry.hold("visits-clock")
        tasks.append(asyncio.create_task(c.live.run(interval=0.05)))
    try:
        await until(lambda: _opened(consoles[0], bid))
        _, session, *_ = consoles[0].live.row(booking=bid)
        for _ in range(10):  # both clocks keep running: never a second session
            await asyncio.sleep(0.05)
            assert len(a.service.sessions()) + len(b.service.sessions()) == 1
    finally:
        for t in tasks:
            t.cancel()
    assert consoles[1].live.row(booking=bid)[1] == session  # b reads the same row
    # two clocks at once: the second opening finds the row taken and ends its own session
    late = consoles[1] if a.relay.here(session) else consoles[0]
    late.live._open(late.res.get(bid), due)
    node = b if late is consoles[1] else a
    [extra] = [s for s in node.service.sessions() if s.id != session]
    assert extra.ended and extra.ended_reason == "not_opened"
    assert consoles[0].live.row(booking=bid)[1] == session


async def _opened(console, booking: int) -> bool:
    return console.live.row(booking=booking) is not None
