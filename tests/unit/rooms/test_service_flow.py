"""The phase-1 flow: create, connect, admit, return to waiting, disconnect, leave."""

from __future__ import annotations

import pytest

from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.ledger import verify_chain


def run(service, sid, actor, **raw):
    return service.execute(sid, actor, decode_command(raw))


def consent(service, sid, pid):
    run(service, sid, pid, type="record_consent", topic="online_mediation", given=True)
    run(service, sid, pid, type="record_consent", topic="session_rules", given=True)


def test_create_session_writes_the_first_event(service, store, mediation):
    state, ids = mediation
    assert state.kind == "mediation" and state.seq == 1
    assert all(pid.startswith("p-") and len(pid) == 10 for pid in ids.values())
    events = store.read(state.id)
    assert [e.type for e in events] == ["session.created"]
    assert events[0].actor == "staff:wang"
    assert verify_chain(events) == []


def test_host_lands_in_joint_and_party_waits_until_admitted(service, mediation):
    state, ids = mediation
    med, zhang = ids["Mediator Wang"], ids["Zhang San"]
    # a party who arrives before the mediator is not admitted when the mediator comes (A1)
    run(service, state.id, "system", type="connect", participant=zhang)
    run(service, state.id, "system", type="connect", participant=med)
    assert state.participants[med].space == "joint"
    assert state.participants[zhang].space == "waiting"
    with pytest.raises(CommandError) as err:
        run(service, state.id, med, type="admit", participant=zhang)
    assert err.value.code == "conflict" and "consented" in err.value.message  # R7
    consent(service, state.id, zhang)
    run(service, state.id, med, type="admit", participant=zhang)
    assert state.participants[zhang].space == "joint"
    run(service, state.id, med, type="return_to_waiting", participant=zhang)
    assert state.participants[zhang].space == "waiting"


def test_reconnect_keeps_the_space(service, mediation):
    state, ids = mediation
    med, zhang = ids["Mediator Wang"], ids["Zhang San"]
    for pid in (med, zhang):
        run(service, state.id, "system", type="connect", participant=pid)
    consent(service, state.id, zhang)
    run(service, state.id, med, type="admit", participant=zhang)
    run(service, state.id, "system", type="disconnect", participant=zhang, reason="transport_lost")
    assert not state.participants[zhang].connected
    run(service, state.id, "system", type="connect", participant=zhang)
    assert state.participants[zhang].space == "joint"


def test_leave_is_for_good(service, mediation):
    state, ids = mediation
    li = ids["Li Si"]
    run(service, state.id, "system", type="connect", participant=li)
    run(service, state.id, li, type="leave")
    assert state.participants[li].space == "left" and not state.participants[li].connected
    with pytest.raises(CommandError) as err:
        run(service, state.id, "system", type="connect", participant=li)
    assert err.value.code == "conflict"
    with pytest.raises(CommandError) as err:
        run(service, state.id, li, type="chat", text="hello")
    assert err.value.code == "forbidden"


def test_listeners_see_state_and_events(service, mediation):
    state, ids = mediation
    seen = []
    service.subscribe(lambda st, evs: seen.append((st.id, [e.type for e in evs])))
    run(service, state.id, "system", type="connect", participant=ids["Mediator Wang"])
    assert seen == [(state.id, ["participant.connected"])]


def test_unknown_session_is_not_found(service):
    with pytest.raises(CommandError) as err:
        service.state("s-nope")
    assert err.value.code == "not_found"
    with pytest.raises(CommandError) as err:
        run(service, "s-nope", "system", type="tick")
    assert err.value.code == "not_found"


def test_recover_rebuilds_spaces_and_marks_everyone_disconnected(store, clock, service, mediation):
    from rooms.service import SessionService

    state, ids = mediation
    med, zhang = ids["Mediator Wang"], ids["Zhang San"]
    for pid in (med, zhang):
        run(service, state.id, "system", type="connect", participant=pid)
    consent(service, state.id, zhang)
    run(service, state.id, med, type="admit", participant=zhang)
    fresh = SessionService(store, clock=clock)
    assert fresh.recover() == 1
    again = fresh.state(state.id)
    assert again.participants[zhang].space == "joint"
    assert not any(p.connected for p in again.participants.values())
    run(fresh, state.id, "system", type="connect", participant=zhang)
    assert again.participants[zhang].space == "joint"
    assert verify_chain(store.read(state.id)) == []
