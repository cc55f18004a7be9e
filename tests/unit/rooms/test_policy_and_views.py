"""Policies as data (the rules of each kind) and what each viewer may see."""

from __future__ import annotations

import pytest

from rooms.commands import COMMAND_TYPES, decode_command
from rooms.errors import CommandError
from rooms.plan import RECORDER, plan
from rooms.policy import POLICIES, STAFF, SYSTEM
from rooms.service import ParticipantSpec


def test_policies_are_complete_and_consistent():
    for kind, policy in POLICIES.items():
        assert set(policy.permissions) == set(COMMAND_TYPES)
        assert set(policy.landing) == set(policy.roles)
        for roles in policy.permissions.values():
            assert roles <= policy.roles | {SYSTEM, STAFF}
        for name in ("connect", "disconnect", "tick"):
            assert policy.permissions[name] == {SYSTEM}, (kind, name)
        assert policy.host_roles <= policy.staff_roles
        assert policy.observer_roles <= policy.roles
        assert policy.recorded_spaces.isdisjoint({"waiting", "console"})
        assert not any(s.startswith("caucus:") for s in policy.recorded_spaces)


def test_the_four_kinds():
    assert POLICIES["privileged"].privileged
    assert POLICIES["privileged"].recording == "forbidden"
    assert not POLICIES["privileged"].observer_roles
    assert not any(POLICIES["privileged"].permissions[c] for c in ("mute", "start_recording"))
    assert POLICIES["visitation"].recording == "required"
    assert POLICIES["visitation"].permissions["stop_recording"] == frozenset()
    assert POLICIES["visitation"].role_limits["visitor"] == 3
    assert POLICIES["mediation"].recording == "consent_gated"
    assert POLICIES["mediation"].caucuses and not POLICIES["consultation"].caucuses
    for kind in ("mediation", "consultation"):
        assert POLICIES[kind].host_grace_seconds is not None


def run(service, sid, actor, **raw):
    return service.execute(sid, actor, decode_command(raw))


def test_visitation_officer_watches_from_the_console_and_is_recorded_nowhere(service):
    state = service.create_session(
        "visitation",
        actor="staff:op",
        title="visit",
        case_number="V-1",
        participants=[
            ParticipantSpec("Operator", "operator"),
            ParticipantSpec("Officer", "officer"),
            ParticipantSpec("Mother", "visitor"),
            ParticipantSpec("Son", "inmate"),
        ],
    )
    op, officer, mother, son = state.participants
    for pid in state.participants:
        run(service, state.id, "system", type="connect", participant=pid)
    assert state.participants[officer].space == "console"
    run(service, state.id, mother, type="record_consent", topic="session_rules", given=True)
    with pytest.raises(CommandError) as err:  # R1: no visit before the recorder is ready
        run(service, state.id, op, type="admit", participant=son)
    assert err.value.code == "conflict" and "recorder" in err.value.message
    run(service, state.id, "system", type="report_recorder", status="ready")
    run(service, state.id, "system", type="start_recording")
    run(service, state.id, op, type="admit", participant=son)
    with pytest.raises(CommandError) as err:  # identity not yet checked (R6)
        run(service, state.id, op, type="admit", participant=mother)
    assert err.value.code == "conflict" and "identity" in err.value.message
    run(service, state.id, op, type="mark_identity_checked", participant=mother, method="in_person")
    run(service, state.id, op, type="admit", participant=mother)
    edges = plan(state)
    assert {(e.publisher, e.subscriber) for e in edges if e.kind == "video"} == {
        (mother, son),
        (son, mother),
        (mother, officer),
        (son, officer),
        (mother, RECORDER),
        (son, RECORDER),
    }
    assert not any(e.publisher in (op, officer) for e in edges)
    # the visitor does not see the staff console in her view
    seen = {p["id"] for p in state.view_for(mother)["participants"]}
    assert seen == {mother, son}
    assert {p["id"] for p in state.view_for(officer)["participants"]} == set(state.participants)


def test_privileged_visit_has_only_the_two_of_them(service):
    state = service.create_session(
        "privileged",
        actor="staff:op",
        title="legal visit",
        case_number=None,
        participants=[
            ParticipantSpec("Operator", "operator"),
            ParticipantSpec("Supervisor", "supervisor"),
            ParticipantSpec("Lawyer", "lawyer"),
            ParticipantSpec("Client", "inmate"),
        ],
    )
    op, sup, lawyer, client = state.participants
    for pid in state.participants:
        run(service, state.id, "system", type="connect", participant=pid)
    run(service, state.id, op, type="mark_identity_checked", participant=lawyer)
    run(service, state.id, op, type="admit", participant=lawyer)
    run(service, state.id, op, type="admit", participant=client)
    assert {(e.publisher, e.subscriber) for e in plan(state)} == {
        (lawyer, client),
        (client, lawyer),
    }
    # the supervisor sees status only: no chat of the visit room
    run(service, state.id, lawyer, type="chat", text="privileged words")
    assert state.view_for(sup)["chat"] == []
    assert [m["text"] for m in state.view_for(client)["chat"]] == ["privileged words"]
