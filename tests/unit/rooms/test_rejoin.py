"""Leaving is not for good: a party who left comes back through its link into the waiting room
(the mediator admits them again); a host comes straight back into the session; ``removed``
stays final. A second device taking over sends a party back to the waiting room; a host keeps
their place. Every step is in the ledger."""

from __future__ import annotations

import pytest

from rooms.commands import decode_command
from rooms.errors import CommandError


def run(service, sid, actor, **raw):
    return service.execute(sid, actor, decode_command(raw))


def consent(service, sid, pid):
    run(service, sid, pid, type="record_consent", topic="online_mediation", given=True)
    run(service, sid, pid, type="record_consent", topic="session_rules", given=True)


def in_joint(service, state, ids):
    med, zhang = ids["Mediator Wang"], ids["Zhang San"]
    for pid in (med, zhang):
        run(service, state.id, "system", type="connect", participant=pid)
    consent(service, state.id, zhang)
    run(service, state.id, med, type="admit", participant=zhang)
    return med, zhang


def test_a_party_who_left_comes_back_to_the_waiting_room(service, store, mediation):
    state, ids = mediation
    med, zhang = in_joint(service, state, ids)
    run(service, state.id, zhang, type="leave")
    assert state.participants[zhang].space == "left"
    events = run(service, state.id, "system", type="connect", participant=zhang, rejoin=True)
    assert [(e.type, e.data["space"]) for e in events] == [("participant.rejoined", "waiting")]
    p = state.participants[zhang]
    assert p.space == "waiting" and not p.connected
    # media up: connected, still waiting; the mediator must admit them again
    run(service, state.id, "system", type="connect", participant=zhang)
    assert p.space == "waiting" and p.connected
    run(service, state.id, med, type="admit", participant=zhang)
    assert p.space == "joint"
    assert "participant.rejoined" in [e.type for e in store.read(state.id)]


def test_the_mediator_who_left_comes_straight_back_into_the_session(service, mediation):
    state, ids = mediation
    med, zhang = in_joint(service, state, ids)
    run(service, state.id, med, type="leave")
    assert state.held and state.participants[zhang].space == "waiting"  # R10 at once
    run(service, state.id, "system", type="connect", participant=med, rejoin=True)
    assert state.participants[med].space == "joint"
    run(service, state.id, "system", type="connect", participant=med)
    assert state.participants[med].connected and not state.held
    run(service, state.id, med, type="admit", participant=zhang)


def test_removed_stays_final_and_rejoin_needs_a_leave(service, mediation):
    state, ids = mediation
    med, zhang = in_joint(service, state, ids)
    li = ids["Li Si"]
    with pytest.raises(CommandError) as err:  # never left: nothing to come back from
        run(service, state.id, "system", type="connect", participant=li, rejoin=True)
    assert err.value.code == "conflict"
    run(service, state.id, med, type="remove", participant=zhang, reason="rude")
    with pytest.raises(CommandError) as err:
        run(service, state.id, "system", type="connect", participant=zhang, rejoin=True)
    assert err.value.code == "conflict"
    assert state.participants[zhang].space == "removed"


def test_rejoin_is_server_only(service, mediation):
    state, ids = mediation
    zhang = ids["Zhang San"]
    with pytest.raises(CommandError) as err:
        run(service, state.id, zhang, type="connect", participant=zhang, rejoin=True)
    assert err.value.code == "forbidden"


def test_a_new_device_sends_a_party_back_to_the_waiting_room(service, store, mediation):
    state, ids = mediation
    med, zhang = in_joint(service, state, ids)
    run(service, state.id, "system", type="disconnect", participant=zhang, reason="replaced")
    p = state.participants[zhang]
    assert p.space == "waiting" and not p.connected
    moved = [e for e in store.read(state.id) if e.type == "participant.moved"][-1]
    assert moved.data["reason"] == "new_device"
    run(service, state.id, "system", type="connect", participant=zhang)
    assert p.space == "waiting"


def test_a_new_device_keeps_the_mediators_place_without_a_hold(service, clock, mediation):
    state, ids = mediation
    med, zhang = in_joint(service, state, ids)
    run(service, state.id, "system", type="disconnect", participant=med, reason="replaced")
    assert state.participants[med].space == "joint" and not state.held
    assert state.participants[zhang].space == "joint"
    run(service, state.id, "system", type="connect", participant=med)
    clock.advance(30)
    run(service, state.id, "system", type="tick")
    assert not state.held and state.participants[zhang].space == "joint"
