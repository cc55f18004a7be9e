# ruff: noqa: F811 - the engine fixture is imported from test_engine and used by name
"""Transfer of a consultation to a colleague on shift, and its conversion into a legal-aid case,
over the real engine, ledger and store (simulated clock): who may, to whom, what the citizen
keeps, what the desk log says."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from desk.errors import DeskError
from tests.support.redisd import redis_prefix, redis_server  # noqa: F401 - fixtures
from tests.unit.desk.test_engine import T0, desk, queue  # noqa: F401 - the fixture

LI = SimpleNamespace(username="li", display_name="李律师")
WANG = SimpleNamespace(username="wang", display_name="王律师")
ZHAO = SimpleNamespace(username="zhao", display_name="赵律师")


def link(d, path):
    """(participant, generation) of a ``/j/<token>`` path (the token's expiry moves with time)."""
    inv = d.signer.verify(path.rsplit("/", 1)[1])
    return inv.participant, inv.gen


@pytest.fixture
def serving(desk):  # noqa: F811 - the fixture above
    desk.store.add_shift("wang", "hall", T0 - 60, T0 + 3600)
    desk.store.add_point("far", "Far", "1-7 00:00-24:00")
    desk.store.add_shift("zhao", "far", T0 - 60, T0 + 3600)
    secret = queue(desk, "A", "13800138001")
    current = asyncio.run(desk.pickup(LI, None))
    return desk, secret, current


def test_a_colleague_accepts_and_the_citizen_keeps_the_same_call(serving):
    desk, secret, current = serving
    tid, session = current["id"], current["session"]
    assert [c["username"] for c in current["colleagues"]] == ["wang"]  # zhao: another point
    out = desk.transfer("li", tid, "wang")
    assert out["transfer_to"] == "wang"
    assert desk.desk_state("li")["current"]["id"] == tid  # li stays with the citizen meanwhile
    incoming = desk.desk_state("wang")["queue"]
    assert [(r["id"], r["transfer_from"]) for r in incoming] == [(tid, "li")]
    citizen_before = link(desk, desk.status(secret)["join_path"])
    taken = asyncio.run(desk.pickup(WANG, None))  # "pick up next" takes the transfer first
    assert (taken["id"], taken["session"]) == (tid, session)  # the same session: the same call
    before, after = link(desk, current["join_path"]), link(desk, taken["join_path"])
    assert after == (before[0], before[1] + 1)  # the lawyer's place, a new link generation
    assert link(desk, desk.status(secret)["join_path"]) == citizen_before  # the citizen's: same
    assert desk.desk_state("li")["current"] is None
    assert desk.store.statuses() == {"li": "available", "wang": "busy"}
    ticket = desk.store.ticket(tid)
    assert (ticket.lawyer, ticket.transfer_to) == ("wang", None)
    steps = [r[3] for r in desk.store.log_rows(tid)]
    assert steps[-2:] == ["transferred", "accepted"]
    lawyer = desk.service.state(session).participants[ticket.lawyer_pid]
    assert lawyer.invitation_gen == 1  # rooms' ledger records the new link
    with pytest.raises(DeskError) as exc:
        desk.transfer("li", tid, "wang")
    assert exc.value.code == "forbidden"  # no longer li's consultation


def test_refused_transfers(serving):
    desk, _, current = serving
    tid = current["id"]
    for who, to, code in [
        ("wang", "li", "forbidden"),  # not wang's consultation
        ("li", "li", "invalid"),
        ("li", "zhao", "not_on_shift"),  # on shift, but at another point
        ("li", "nobody", "not_on_shift"),
        ("li", "", "conflict"),  # nothing to take back
    ]:
        with pytest.raises(DeskError) as exc:
            desk.transfer(who, tid, to)
        assert exc.value.code == code, (who, to)
    with pytest.raises(DeskError) as exc:
        desk.transfer("li", 999, "wang")
    assert exc.value.code == "not_found"
    queue(desk, "B", "13800138002")
    asyncio.run(desk.pickup(WANG, None))  # wang is now busy with B
    with pytest.raises(DeskError) as exc:
        desk.transfer("li", tid, "wang")
    assert exc.value.code == "busy"


def test_the_offer_can_be_taken_back_and_only_the_named_colleague_accepts(serving):
    desk, _, current = serving
    tid = current["id"]
    desk.store.add_shift("zhao", "hall", T0 - 60, T0 + 3600)
    desk.transfer("li", tid, "wang")
    assert desk.desk_state("zhao")["queue"] == []  # offered to wang, not to everyone
    with pytest.raises(DeskError) as exc:
        asyncio.run(desk.pickup(ZHAO, tid))
    assert exc.value.code == "not_found"
    desk.transfer("li", tid, "")
    assert desk.desk_state("wang")["queue"] == []
    with pytest.raises(DeskError):
        asyncio.run(desk.pickup(WANG, tid))
    assert desk.store.ticket(tid).lawyer == "li"
    assert [r[3] for r in desk.store.log_rows(tid)][-2:] == ["transferred", "transfer_cancelled"]


def test_a_transfer_after_the_session_ended_is_refused_and_cleared(serving):
    desk, _, current = serving
    tid = current["id"]
    desk.transfer("li", tid, "wang")
    from rooms.commands import decode_command

    desk.service.execute(
        current["session"], "staff:admin", decode_command({"type": "end_session", "reason": "x"})
    )
    with pytest.raises(DeskError) as exc:
        asyncio.run(desk.pickup(WANG, tid))
    assert exc.value.code == "conflict"
    assert desk.store.ticket(tid).transfer_to is None


def test_a_consultation_becomes_a_legal_aid_case(serving):
    desk, secret, current = serving
    tid = current["id"]
    with pytest.raises(DeskError) as exc:
        asyncio.run(desk.to_legal_aid("wang", tid, "not mine"))
    assert exc.value.code == "forbidden"
    case = asyncio.run(desk.to_legal_aid("li", tid, "Unpaid wages, 8 months; eligible."))
    [row] = desk.store.legal_aid_cases()
    assert (row["id"], row["ticket"], row["lawyer"], row["name"]) == (case, tid, "li", "A")
    assert row["summary"] == "Unpaid wages, 8 months; eligible."
    status = desk.status(secret)
    assert status["state"] == "done" and status["referral"]
    assert f"#{case}" in status["referral_note"]
    assert any(f"#{case}" in text for to, _, text in desk.spool.messages() if to == "13800138001")
    assert desk.store.statuses()["li"] == "available"
    assert [r[3] for r in desk.store.log_rows(tid)][-2:] == ["legal_aid", "summary"]
    with pytest.raises(DeskError) as exc:
        asyncio.run(desk.to_legal_aid("li", tid, "again"))
    assert exc.value.code == "conflict"
    assert len(desk.store.legal_aid_cases()) == 1
