"""The command relay (cluster/relay.py) between cluster nodes in one process, each with its own
session service and Redis connections, on a real redis-server: a command for a session another
node serves runs there through its rooms rules and ledger, its refusal comes back as the same
code; no owner, a dead or a silent owner give ``session_moving`` / ``unavailable`` within the
bound; a malformed queued message is answered and the loop keeps serving."""

from __future__ import annotations

import json
import time

import pytest

from rooms.errors import CommandError
from rooms.ledger import verify_chain
from tests.integration.cluster.test_cluster_node import (  # noqa: F401
    STEADY,
    cluster,
    create,
    until,
)
from tests.support.redisd import redis_prefix, redis_server  # noqa: F401 - fixtures


def ids(node, session_id: str) -> dict[str, str]:
    return {p.role: p.id for p in node.service.state(session_id).participants.values()}


async def owned(node, session_id: str, node_id: str) -> bool:
    return await node.registry.owner(session_id) == node_id


async def test_a_command_runs_here_when_the_session_is_held_here(cluster):  # noqa: F811
    a = await cluster("a")
    s = create(a)
    who = ids(a, s)["mediator"]
    assert await a.relay.execute(s, "system", {"type": "connect", "participant": who}) == 1
    assert a.service.state(s).participants[who].connected
    assert a.relay.served == 0  # never through the queue


async def test_a_command_for_another_nodes_session_runs_on_its_owner(cluster):  # noqa: F811
    a, b = await cluster("a", settings=STEADY), await cluster("b", settings=STEADY)
    s = create(a)
    await until(lambda: owned(a, s, "a"))
    who = ids(a, s)["party"]
    seq = a.service.state(s).seq
    started = time.monotonic()
    n = await b.relay.execute(s, "system", {"type": "connect", "participant": who})
    took = time.monotonic() - started
    assert n == 1 and a.relay.served == 1 and took < 1.0
    assert a.service.state(s).participants[who].connected  # the owner's live state
    with pytest.raises(CommandError):
        b.service.state(s)  # never served on b
    mirror = b.service.peek(s)  # b reads the ledger: the same state
    assert mirror.seq == seq + 1 and mirror.participants[who].connected
    assert b.service.sessions() == []


async def test_a_refusal_on_the_owner_comes_back_with_its_code(cluster):  # noqa: F811
    a, b = await cluster("a", settings=STEADY), await cluster("b", settings=STEADY)
    s = create(a)
    await until(lambda: owned(a, s, "a"))
    party = ids(a, s)["party"]
    command = {"type": "mute", "participant": party}
    with pytest.raises(CommandError) as here:
        await a.relay.execute(s, "staff:zhao", command)
    with pytest.raises(CommandError) as there:
        await b.relay.execute(s, "staff:zhao", command)
    assert there.value.code == here.value.code == "forbidden"
    assert there.value.message == here.value.message
    with pytest.raises(CommandError) as bad:
        await b.relay.execute(s, "system", {"type": "no_such_command"})
    assert bad.value.code == "invalid"  # decoded on the owner, refused by rooms' decoder
    assert not a.service.state(s).participants[party].muted


@pytest.mark.parametrize("session", ["s-0000000000000000", "not a session id!", ""])
async def test_an_unknown_session_is_not_found(cluster, session):  # noqa: F811
    b = await cluster("b")
    with pytest.raises(CommandError) as e:
        await b.relay.execute(session, "system", {"type": "tick"})
    assert e.value.code == "not_found"


async def test_a_dead_owner_answers_session_moving_within_the_bound(cluster):  # noqa: F811
    a, b = await cluster("a"), await cluster("b")
    b.relay.timeout = 2.0
    s = create(a)
    await until(lambda: owned(a, s, "a"))
    await a.stop()  # a crash as far as the cluster can tell: no heartbeat, no queue reader
    who = ids(a, s)["mediator"]
    codes = set()
    started = time.monotonic()
    # until b takes the session over: session_moving (heartbeat late, or no lease), never a hang
    while not b.relay.here(s):
        try:
            await b.relay.execute(s, "system", {"type": "connect", "participant": who})
        except CommandError as exc:
            codes.add(exc.code)
        assert time.monotonic() - started < 10
    assert codes and codes <= {"session_moving", "unavailable"}
    # served by b now: b runs it locally
    assert await b.relay.execute(s, "system", {"type": "connect", "participant": who}) == 1


async def test_a_silent_owner_gives_unavailable_and_the_command_is_taken_back(cluster):  # noqa: F811
    a, b = await cluster("a", settings=STEADY), await cluster("b", settings=STEADY)
    b.relay.timeout = 1.0
    s = create(a)
    await until(lambda: owned(a, s, "a"))
    await a.relay.stop()  # alive (heartbeating) but its queue is not read
    who = ids(a, s)["mediator"]
    started = time.monotonic()
    with pytest.raises(CommandError) as e:
        await b.relay.execute(s, "system", {"type": "connect", "participant": who})
    took = time.monotonic() - started
    assert e.value.code == "unavailable" and "not taken" in e.value.message
    assert 0.9 < took < 2.0
    assert await a.registry.redis.llen(a.relay.queue("a")) == 0  # taken back: never runs
    a.relay.start()
    await until(lambda: _true_after(a))  # the reader runs again
    assert not a.service.state(s).participants[who].connected


async def _true_after(node) -> bool:
    return node.relay._task is not None and not node.relay._task.done()


async def test_malformed_and_late_messages_are_answered_and_the_loop_keeps_serving(cluster):  # noqa: F811
    a = await cluster("a")
    s = create(a)
    await until(lambda: owned(a, s, "a"))
    r = a.registry.redis
    queue = a.relay.queue("a")
    reply = f"{a.registry.prefix}reply:"
    who = ids(a, s)["mediator"]
    good = {"session": s, "actor": "system", "command": {"type": "connect", "participant": who}}
    cases = {
        "k1": b"{not json",
        "k2": json.dumps([1, 2]).encode(),
        "k3": json.dumps({**good, "session": "../x", "deadline": time.time() + 5}),
        "k4": json.dumps({**good, "actor": "", "deadline": time.time() + 5}),
        "k5": json.dumps({**good, "command": "connect", "deadline": time.time() + 5}),
        "k6": json.dumps({**good, "deadline": "soon"}),
        "k7": json.dumps({**good, "deadline": time.time() - 1}),  # its sender gave up
        "k8": json.dumps({**good, "deadline": time.time() + 5, "pad": "x" * 20000}),
    }
    for key, body in cases.items():
        if isinstance(body, str):
            body = json.dumps({**json.loads(body), "reply": reply + key})
        await r.rpush(queue, body)
    await r.rpush(queue, json.dumps({**good, "deadline": time.time() + 5, "reply": reply + "ko"}))
    answers = {}
    for key in [*cases, "ko"]:
        got = await r.blpop([reply + key], timeout=5) if key not in ("k1", "k2") else None
        answers[key] = json.loads(got[1]) if got else None
    assert answers["k1"] is None and answers["k2"] is None  # no reply key: nothing to answer
    for key in ("k3", "k4", "k5", "k6", "k8"):
        assert answers[key]["ok"] is False and answers[key]["code"] == "invalid", key
    assert answers["k7"] == {
        "ok": False,
        "code": "unavailable",
        "message": "the command arrived after its sender gave up",
    }
    assert answers["ko"] == {"ok": True, "events": 1}  # the loop kept serving
    assert a.service.state(s).participants[who].connected
    assert a.relay.refused == 8 and a.relay.served == 1
    # the reply keys expire (nobody waits on an answer forever)
    assert 0 < await r.ttl(reply + "k3") or await r.exists(reply + "k3") == 0


async def test_a_step_after_the_end_goes_to_the_node_that_held_it_else_is_appended_here(
    cluster,  # noqa: F811
):
    a, b = await cluster("a", settings=STEADY), await cluster("b", settings=STEADY)
    s = create(a)
    await until(lambda: owned(a, s, "a"))
    mediator = ids(a, s)["mediator"]
    await a.relay.execute(s, mediator, {"type": "end_session"})
    await until(lambda: _given_back(b, s))  # nobody serves an ended session
    await a.index.flush()

    def step(name: str) -> dict:
        return {"type": "desk_event", "step": name, "ticket": 7, "detail": {}}

    # a is alive and holds the ended case in memory: the step runs there, a's state goes on
    assert await b.relay.execute(s, "system", step("summary")) == 1
    assert a.relay.served == 1 and a.service.state(s).seq == b.service.peek(s).seq
    # a stops: b appends onto the ledger's tail itself, never served there
    await a.stop()
    await until(lambda: _silent(b, "a"))
    assert await b.relay.execute(s, "system", step("rating")) == 1
    assert a.relay.served == 1 and b.service.sessions() == []
    events = b.service.events(s)
    assert [e.type for e in events][-3:] == ["session.ended", "desk.summary", "desk.rating"]
    assert verify_chain(events) == []
    with pytest.raises(CommandError) as e:  # rooms decides what may follow an end, as anywhere
        await b.relay.execute(s, "system", {"type": "connect", "participant": mediator})
    assert e.value.code == "ended"


async def _given_back(node, session_id: str) -> bool:
    owner = await node.registry.owner(session_id)
    return owner is None and not await node.registry.listed(session_id)


async def _silent(node, other: str) -> bool:
    return await node.registry.node(other) is None or not await node.registry.fresh(other)
