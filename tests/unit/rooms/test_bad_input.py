"""Every class of bad input gets a clear error code and leaves the ledger untouched."""

from __future__ import annotations

import pytest

from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.service import ParticipantSpec


@pytest.mark.parametrize(
    "raw,field",
    [
        ("admit", "object"),
        ([], "object"),
        ({}, "`type`"),
        ({"type": "teleport"}, "$.type"),
        ({"type": 5}, "$.type"),
        ({"type": "admit"}, "`participant`"),
        ({"type": "admit", "participant": 5}, "$.participant"),
        ({"type": "admit", "participant": "p-XYZ"}, "$.participant"),
        ({"type": "admit", "participant": "p-0000000a", "extra": 1}, "`extra`"),
        ({"type": "disconnect", "participant": "p-0000000a", "reason": "bored"}, "$.reason"),
        ({"type": "chat", "text": "x" * 2001}, "$.text"),
        ({"type": "chat", "text": ""}, "$.text"),
        ({"type": "chat", "text": "hi", "cid": "c" * 65}, "$.cid"),
        ({"type": "create_caucus", "caucus": "Bad Name"}, "$.caucus"),
        ({"type": "create_caucus", "caucus": "a", "seconds": 3}, "$.seconds"),
        ({"type": "create_caucus", "caucus": "a", "seconds": "60"}, "$.seconds"),
        ({"type": "move_to_caucus", "caucus": "a"}, "exactly one"),
        ({"type": "move_to_caucus", "caucus": "a", "side": "A", "participants": []}, "exactly one"),
        ({"type": "move_to_caucus", "caucus": "a", "participants": []}, "$.participants"),
        (
            {"type": "move_to_caucus", "caucus": "a", "participants": ["p-0000000a"] * 17},
            "$.participants",
        ),
        ({"type": "record_consent", "topic": "recording", "given": "yes"}, "$.given"),
        ({"type": "call_duty_lawyer", "name": "n" * 81}, "$.name"),
    ],
)
def test_schema_errors_name_the_field(raw, field):
    with pytest.raises(CommandError) as err:
        decode_command(raw)
    assert err.value.code == "invalid"
    assert field in err.value.message


def run(service, sid, actor, **raw):
    return service.execute(sid, actor, decode_command(raw))


def refused(service, store, sid, actor, raw, code):
    before = store.read(sid)
    with pytest.raises(CommandError) as err:
        service.execute(sid, actor, decode_command(raw))
    assert err.value.code == code, err.value.message
    assert store.read(sid) == before
    assert service.state(sid).seq == len(before)
    return err.value


def test_foreign_and_unknown_ids(service, store, mediation):
    state, ids = mediation
    other = service.create_session(
        "consultation",
        actor="system",
        title="other",
        case_number=None,
        participants=[ParticipantSpec("L", "duty_lawyer"), ParticipantSpec("C", "citizen")],
    )
    stranger = next(iter(other.participants))
    med = ids["Mediator Wang"]
    run(service, state.id, "system", type="connect", participant=med)
    # a participant of another session, as target and as actor
    refused(service, store, state.id, med, {"type": "admit", "participant": stranger}, "not_found")
    refused(service, store, state.id, stranger, {"type": "chat", "text": "hi"}, "forbidden")
    refused(service, store, state.id, "p-00000000", {"type": "leave"}, "forbidden")
    refused(service, store, state.id, "staff:", {"type": "end_session"}, "forbidden")
    refused(service, store, state.id, "", {"type": "end_session"}, "forbidden")
    refused(service, store, state.id, med, {"type": "visit_caucus", "caucus": "nope"}, "not_found")
    with pytest.raises(CommandError) as err:
        run(service, "s-0000", "system", type="tick")
    assert err.value.code == "not_found"


def test_replayed_command_id(service, store, mediation):
    state, ids = mediation
    zhang = ids["Zhang San"]
    run(service, state.id, "system", type="connect", participant=zhang)
    raw = {"type": "record_consent", "topic": "session_rules", "given": True, "cid": "c-1"}
    run(service, state.id, zhang, **raw)
    err = refused(service, store, state.id, zhang, {**raw, "given": False}, "duplicate")
    assert "c-1" in err.message
    # command ids are per actor: another participant may use the same id
    li = ids["Li Si"]
    run(service, state.id, li, type="record_consent", topic="session_rules", given=True, cid="c-1")
    # and they survive a restart, because they live in the ledger
    from rooms.service import SessionService

    fresh = SessionService(store)
    fresh.recover(mark_disconnected=False)
    refused(fresh, store, state.id, zhang, {**raw, "given": False}, "duplicate")


def test_out_of_order_commands(service, store, mediation):
    state, ids = mediation
    med, zhang = ids["Mediator Wang"], ids["Zhang San"]
    sid = state.id
    refused(
        service,
        store,
        sid,
        "system",
        {"type": "disconnect", "participant": zhang, "reason": "left"},
        "conflict",
    )
    refused(
        service, store, sid, med, {"type": "admit", "participant": zhang}, "conflict"
    )  # not here
    run(service, sid, "system", type="connect", participant=zhang)
    refused(service, store, sid, "system", {"type": "connect", "participant": zhang}, "conflict")
    refused(
        service, store, sid, med, {"type": "return_to_waiting", "participant": zhang}, "conflict"
    )
    refused(
        service, store, sid, med, {"type": "return_to_waiting", "participant": med}, "forbidden"
    )
    refused(service, store, sid, med, {"type": "unmute", "participant": zhang}, "conflict")
    refused(
        service,
        store,
        sid,
        med,
        {"type": "extend_caucus_timer", "caucus": "x", "seconds": 60},
        "not_found",
    )
    refused(service, store, sid, med, {"type": "stop_recording"}, "conflict")
    refused(service, store, sid, "system", {"type": "leave"}, "invalid")
    refused(service, store, sid, zhang, {"type": "leave", "participant": med}, "forbidden")
    refused(service, store, sid, zhang, {"type": "chat", "text": "   "}, "conflict")  # waiting
    run(service, sid, med, type="end_session")
    refused(service, store, sid, med, {"type": "admit", "participant": zhang}, "ended")


def test_forbidden_role(service, store, mediation):
    state, ids = mediation
    zhang, li = ids["Zhang San"], ids["Li Si"]
    refused(service, store, state.id, zhang, {"type": "admit", "participant": li}, "forbidden")
    refused(service, store, state.id, zhang, {"type": "connect", "participant": zhang}, "forbidden")
    refused(service, store, state.id, ids["Mediator Wang"], {"type": "tick"}, "forbidden")
    refused(
        service, store, state.id, "staff:admin", {"type": "admit", "participant": li}, "forbidden"
    )


@pytest.mark.parametrize(
    "kwargs,code",
    [
        ({"kind": "party"}, "invalid"),
        ({"actor": "p-12345678"}, "forbidden"),
        ({"actor": "staff:bad name"}, "forbidden"),
        ({"title": ""}, "invalid"),
        ({"title": "t" * 201}, "invalid"),
        ({"title": 7}, "invalid"),
        ({"case_number": "c" * 65}, "invalid"),
        ({"participants": []}, "invalid"),
        ({"participants": [ParticipantSpec("x", "judge")]}, "invalid"),
        ({"participants": [ParticipantSpec("", "mediator")]}, "invalid"),
        ({"participants": [ParticipantSpec("p", "party", "A")]}, "invalid"),  # no host
        ({"participants": [ParticipantSpec("m", "mediator")] * 2}, "invalid"),  # one mediator
        ({"participants": [ParticipantSpec("m", "mediator")] * 17}, "invalid"),
        ({"participants": [{"name": "m", "role": "mediator"}]}, "invalid"),
        ({"participants": [ParticipantSpec("m", "mediator", "s" * 17)]}, "invalid"),
    ],
)
def test_create_session_validates(service, store, kwargs, code):
    args = {
        "kind": "mediation",
        "actor": "staff:wang",
        "title": "t",
        "case_number": None,
        "participants": [ParticipantSpec("m", "mediator")],
        **kwargs,
    }
    kind = args.pop("kind")
    with pytest.raises(CommandError) as err:
        service.create_session(kind, **args)
    assert err.value.code == code
    assert store.session_ids() == [] and service.sessions() == []


def test_privileged_session_cannot_hold_an_observer(service):
    for role in ("observer", "officer", "monitor"):
        with pytest.raises(CommandError) as err:
            service.create_session(
                "privileged",
                actor="system",
                title="t",
                case_number=None,
                participants=[ParticipantSpec("L", "lawyer"), ParticipantSpec("x", role)],
            )
        assert err.value.code == "invalid"
