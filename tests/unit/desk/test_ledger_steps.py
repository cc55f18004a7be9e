# ruff: noqa: F811 - the engine fixture is imported from test_engine and used by name
"""The desk's steps in the session's own hash-chained ledger (rooms' ``desk_event``): a
citizen's consultation carries its past from the queue (queued, offered) from the moment its
session exists, then accepted, transferred, accepted, summary, rating; a mediator's call carries
queued, offered, accepted, released. And the queue survives a restart of the desk as it stood
(on both stores: the engine fixture's SQLite and Redis)."""

from __future__ import annotations

import asyncio
import hashlib
from types import SimpleNamespace

from desk import queue as q
from rooms.commands import decode_command
from rooms.ledger import verify_chain
from rooms.service import ParticipantSpec
from signaling.desk import ConsultDesk
from tests.support.redisd import redis_prefix, redis_server  # noqa: F401 - fixtures
from tests.unit.desk.test_engine import T0, desk, queue, reopen  # noqa: F401 - the fixture

LI = SimpleNamespace(username="li", display_name="李律师")
WANG = SimpleNamespace(username="wang", display_name="王律师")


def steps(d, session):
    return [
        (e.type, e.actor, e.data) for e in d.service.events(session) if e.type.startswith("desk.")
    ]


def test_a_consultations_desk_steps_are_in_its_ledger(desk):
    desk.store.add_shift("wang", "hall", T0 - 60, T0 + 3600)
    desk.set_status("li", "available")
    secret = queue(desk, "A", "13800138001")
    desk.tick.now += 10
    current = asyncio.run(desk.pickup(LI, None))
    session, tid = current["session"], current["id"]
    desk.transfer("li", tid, "wang")
    asyncio.run(desk.pickup(WANG, tid))
    summary = "Keep the IOU."
    asyncio.run(desk.end("wang", tid, summary, False, ""))
    desk.rate(secret, 5, "clear")
    got = steps(desk, session)
    assert [t for t, _, _ in got] == [
        "desk.queued",
        "desk.offered",
        "desk.accepted",
        "desk.transferred",
        "desk.accepted",
        "desk.summary",
        "desk.rating",
    ]
    assert {a for _, a, _ in got} == {"system"}
    queued, offered, accepted, moved, taken, summed, rated = (d for _, _, d in got)
    assert queued["ticket"] == tid and queued["queued_at"] == T0 and queued["point"] == "hall"
    assert offered["lawyers"] == "li"  # li was available when A queued; wang was away
    assert accepted["lawyer"] == "li"
    assert (moved["by"], moved["to"]) == ("li", "wang")
    assert (taken["lawyer"], taken["transferred_from"]) == ("wang", "li")
    assert summed["sha256"] == hashlib.sha256(summary.encode()).hexdigest()
    assert summed["lawyer"] == "wang" and summed["referral"] is False
    assert (rated["stars"], rated["comment"]) == (5, True)
    assert verify_chain(desk.service.events(session)) == []
    types = [e.type for e in desk.service.events(session)]
    assert types.index("session.ended") < types.index("desk.summary")  # after the end too


def test_a_mediators_call_is_in_the_mediations_ledger(desk):
    state = desk.service.create_session(
        "mediation",
        actor="staff:wang",
        title="Wage dispute",
        case_number="M-1",
        participants=[ParticipantSpec("M", "mediator"), ParticipantSpec("A", "party", "A")],
    )
    mid = next(p.id for p in state.participants.values() if p.role == "mediator")
    desk.service.execute(state.id, mid, decode_command({"type": "call_duty_lawyer", "name": "L"}))
    # no loop: the steps land when the listener returns, still during the mediator's command
    assert [t for t, _, _ in steps(desk, state.id)] == ["desk.queued"]  # nobody available
    [t] = desk.store.live()
    asyncio.run(desk.pickup(LI, t.id))
    desk.service.execute(
        state.id, mid, decode_command({"type": "remove", "participant": t.lawyer_pid})
    )
    got = steps(desk, state.id)
    assert [s for s, _, _ in got] == ["desk.queued", "desk.accepted", "desk.released"]
    assert got[1][2]["lawyer"] == "li" and got[2][2]["reason"] == "left"
    types = [e.type for e in desk.service.events(state.id)]
    assert types.index("participant.added") < types.index("desk.queued")
    assert types.index("participant.removed") < types.index("desk.released")


def test_a_client_cannot_write_desk_steps(desk):
    state = desk.service.create_session(
        "mediation",
        actor="staff:wang",
        title="T",
        case_number="M-2",
        participants=[ParticipantSpec("M", "mediator"), ParticipantSpec("A", "party", "A")],
    )
    mid = next(p.id for p in state.participants.values() if p.role == "mediator")
    raw = {"type": "desk_event", "step": "accepted", "ticket": 1}
    from rooms.errors import CommandError

    for actor in (mid, "staff:wang"):
        try:
            desk.service.execute(state.id, actor, decode_command(raw))
        except CommandError as exc:
            assert exc.code == "forbidden"
        else:
            raise AssertionError(f"{actor} wrote a desk step")
    for bad in (
        raw | {"step": "deleted"},
        raw | {"ticket": 0},
        raw | {"detail": {"x" * 33: 1}},
        raw | {"detail": {"k": "x" * 201}},
        raw | {"detail": {"k": [1]}},
        raw | {"detail": {str(i): i for i in range(13)}},
    ):
        try:
            decode_command(bad)
        except CommandError as exc:
            assert exc.code == "invalid"
        else:
            raise AssertionError(f"accepted {bad}")


def test_the_queue_survives_a_restart_as_it_stood(desk, tmp_path):
    desk.store.add_shift("wang", "hall", T0 - 60, T0 + 3600)
    a = queue(desk, "A", "13800138001")
    desk.tick.now += 1
    b = queue(desk, "B", "13800138002")
    desk.tick.now += 1
    c = queue(desk, "C", "13800138003")
    served = asyncio.run(desk.pickup(LI, None))  # A
    desk.transfer("li", served["id"], "wang")

    def status(d, s):  # the join path's token carries an expiry that moves with time
        out = d.status(s)
        path = out.pop("join_path", None)
        return out, path and d.signer.verify(path.rsplit("/", 1)[1]).participant

    before = {s: status(desk, s) for s in (a, b, c)}
    wang_before = desk.desk_state("wang")["queue"]
    desk.store.close()
    store = reopen(desk.store, tmp_path)  # a new process: the same file or Redis keys
    again = ConsultDesk(store, desk.service, desk.signer, notifier=desk.notifier, clock=desk.clock)
    try:
        after = {s: status(again, s) for s in (a, b, c)}
        assert after == before
        assert before[a][1] is not None  # A, in the consultation, still has the call's link
        assert [after[s][0].get("position") for s in (b, c)] == [1, 2]
        assert again.desk_state("wang")["queue"] == wang_before  # the transfer still pending
        taken = asyncio.run(again.pickup(WANG, None))
        assert taken["id"] == served["id"]
        desk.tick.now += q.PRESENCE_SECONDS - 1
        assert asyncio.run(again.pickup(LI, None))["name"] == "B"  # the order kept
    finally:
        store.close()
        desk.store = reopen(store, tmp_path)  # for the fixture's own close
