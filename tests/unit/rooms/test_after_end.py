"""``SessionService.execute_ended``: what rooms allows after a session's end (the desk's summary,
the citizen's rating), appended by a service that does not hold the session (a cluster node that
never served it, or served it before a restart) onto the ledger's tail, and the service that
still holds the ended case in memory going on after it. One ledger, one chain."""

from __future__ import annotations

import pytest

from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.ledger import verify_chain
from rooms.service import SessionService
from tests.unit.rooms.conftest import MEDIATION_PEOPLE


def step(name: str, ticket: int = 1):
    return decode_command({"type": "desk_event", "step": name, "ticket": ticket, "detail": {}})


def mediation(service: SessionService):
    return service.create_session(
        "mediation",
        actor="staff:wang",
        title="t",
        case_number=None,
        participants=list(MEDIATION_PEOPLE),
    )


@pytest.fixture
def ended(store, clock):
    """(the service that served and ended a mediation, another one on the same ledger, its id)"""
    owner = SessionService(store, clock=clock)
    state = mediation(owner)
    mediator = next(p.id for p in state.participants.values() if p.role == "mediator")
    owner.execute(state.id, mediator, decode_command({"type": "end_session"}))
    assert state.ended
    return owner, SessionService(store, clock=clock), state.id


def test_a_step_after_the_end_is_appended_by_a_service_that_does_not_hold_it(ended, store):
    owner, other, session = ended
    before = store.read(session)[-1].seq
    events = other.execute_ended(session, "system", step("summary"))
    assert [(e.seq, e.type) for e in events] == [(before + 1, "desk.summary")]
    assert other.sessions() == []  # still held nowhere but on the owner
    # the owner's memory is behind the ledger: its next step folds what was appended, then goes on
    owner.execute(session, "system", step("rating"))
    assert owner.state(session).seq == before + 2
    types = [e.type for e in store.read(session)]
    assert types[-2:] == ["desk.summary", "desk.rating"]
    assert verify_chain(store.read(session)) == []
    assert other.peek(session).seq == before + 2  # and the other service reads both


def test_the_holder_appends_as_execute_does(ended, store):
    owner, _, session = ended
    got = []
    owner.subscribe(lambda state, events: got.extend(e.type for e in events))
    owner.execute_ended(session, "system", step("summary"))
    assert got == ["desk.summary"] and owner.state(session).seq == store.read(session)[-1].seq


def test_only_what_rooms_allows_after_an_end(ended, store):
    _, other, session = ended
    before = store.read(session)[-1].seq
    party = next(p.id for p in other.peek(session).participants.values() if p.role == "party")
    with pytest.raises(CommandError) as e:
        other.execute_ended(
            session, "system", decode_command({"type": "connect", "participant": party})
        )
    assert e.value.code == "ended"
    with pytest.raises(CommandError) as e:
        other.execute_ended(session, "", step("summary"))
    assert e.value.code == "forbidden"
    with pytest.raises(CommandError) as e:
        other.execute_ended(session, "staff:wang", step("summary"))  # only the system writes these
    assert e.value.code == "forbidden"
    assert store.read(session)[-1].seq == before  # nothing appended


@pytest.mark.parametrize("session", ["s-0000000000000000", "", "x" * 100])
def test_an_unknown_session_is_not_found(store, clock, session):
    with pytest.raises(CommandError) as e:
        SessionService(store, clock=clock).execute_ended(session, "system", step("summary"))
    assert e.value.code == "not_found"


def test_a_live_session_is_commanded_where_it_is_served(store, clock):
    owner, other = SessionService(store, clock=clock), SessionService(store, clock=clock)
    state = mediation(owner)
    with pytest.raises(CommandError) as e:
        other.execute_ended(state.id, "system", step("summary"))
    assert e.value.code == "conflict"
    assert store.read(state.id)[-1].seq == state.seq
