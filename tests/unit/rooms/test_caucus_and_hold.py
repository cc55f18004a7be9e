"""Caucus moves, visits, timers, ask-for-mediator, safety hold (R10), duty lawyer, chat, recording."""

from __future__ import annotations

import pytest

from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.plan import RECORDER, Edge, plan


def run(service, sid, actor, **raw):
    return service.execute(sid, actor, decode_command(raw))


@pytest.fixture
def live(service, mediation):
    """Everyone connected, consented and admitted to the joint room."""
    state, ids = mediation
    med = ids["Mediator Wang"]
    for pid in ids.values():
        run(service, state.id, "system", type="connect", participant=pid)
    for name in ("Zhang San", "Counsel Zhao", "Li Si"):
        for topic in ("online_mediation", "session_rules"):
            run(service, state.id, ids[name], type="record_consent", topic=topic, given=True)
        run(service, state.id, med, type="admit", participant=ids[name])
    return state, ids


def receivers(state, publisher):
    return {e.subscriber for e in plan(state) if e.publisher == publisher}


def test_side_moves_with_its_counsel_and_is_isolated(service, live):
    state, ids = live
    med, zhang, zhao, li = (ids[n] for n in ("Mediator Wang", "Zhang San", "Counsel Zhao", "Li Si"))
    run(service, state.id, med, type="create_caucus", caucus="side-a")
    events = run(service, state.id, med, type="move_to_caucus", caucus="side-a", side="A")
    assert [e.data["participant"] for e in events] == [zhang, zhao]
    assert receivers(state, zhang) == {zhao}  # the other side and the mediator get nothing
    assert receivers(state, li) == {med}
    run(service, state.id, med, type="visit_caucus", caucus="side-a")
    assert receivers(state, med) == {zhang, zhao}  # mic in one space at a time
    assert receivers(state, li) == set()
    run(service, state.id, med, type="close_caucus", caucus="side-a")
    assert {p.space for p in state.participants.values()} == {"joint"}
    assert receivers(state, zhang) == {med, zhao, li}


def test_caucus_timer_warns_then_returns_everyone(service, clock, live):
    state, ids = live
    med, li = ids["Mediator Wang"], ids["Li Si"]
    run(service, state.id, med, type="create_caucus", caucus="b", seconds=120)
    run(service, state.id, med, type="move_to_caucus", caucus="b", participants=[li])
    assert run(service, state.id, "system", type="tick") == []
    clock.advance(61)
    assert [e.data for e in run(service, state.id, "system", type="tick")] == [
        {"caucus": "b", "remaining": 60}
    ]
    assert run(service, state.id, "system", type="tick") == []  # warned once
    run(service, state.id, med, type="extend_caucus_timer", caucus="b", seconds=60)
    clock.advance(60)
    assert [e.data["remaining"] for e in run(service, state.id, "system", type="tick")] == [60]
    clock.advance(52)
    assert [e.data["remaining"] for e in run(service, state.id, "system", type="tick")] == [10]
    clock.advance(10)
    types = [e.type for e in run(service, state.id, "system", type="tick")]
    assert types == ["caucus.expired", "participant.moved"]
    assert state.participants[li].space == "joint" and "b" not in state.caucuses


def test_ask_for_mediator_is_cleared_by_a_visit(service, live):
    state, ids = live
    med, li = ids["Mediator Wang"], ids["Li Si"]
    run(service, state.id, med, type="create_caucus", caucus="b")
    run(service, state.id, med, type="move_to_caucus", caucus="b", participants=[li])
    run(service, state.id, li, type="ask_for_mediator")
    assert state.participants[li].asked_at is not None
    with pytest.raises(CommandError) as err:
        run(service, state.id, li, type="ask_for_mediator")
    assert err.value.code == "conflict"
    run(service, state.id, med, type="visit_caucus", caucus="b")
    assert state.participants[li].asked_at is None


def test_safety_hold_after_grace_period(service, clock, live):
    state, ids = live
    med = ids["Mediator Wang"]
    run(service, state.id, med, type="create_caucus", caucus="b")
    run(service, state.id, med, type="move_to_caucus", caucus="b", participants=[ids["Li Si"]])
    run(service, state.id, "system", type="disconnect", participant=med, reason="transport_lost")
    clock.advance(5)
    assert run(service, state.id, "system", type="tick") == []  # within the grace period
    clock.advance(5)
    events = run(service, state.id, "system", type="tick")
    assert events[0].type == "session.safety_hold"
    assert {p.space for p in state.participants.values() if p.role != "mediator"} == {"waiting"}
    assert plan(state) == frozenset()
    assert run(service, state.id, "system", type="tick") == []  # held once
    # nobody inherited host powers
    with pytest.raises(CommandError) as err:
        run(service, state.id, ids["Zhang San"], type="admit", participant=ids["Li Si"])
    assert err.value.code == "forbidden"
    run(service, state.id, "system", type="connect", participant=med)
    assert state.participants[med].space == "joint" and not state.held
    run(service, state.id, med, type="admit", participant=ids["Li Si"])


def test_mediator_back_within_grace_keeps_the_room(service, clock, live):
    state, ids = live
    med = ids["Mediator Wang"]
    run(service, state.id, "system", type="disconnect", participant=med, reason="transport_lost")
    clock.advance(4)
    run(service, state.id, "system", type="connect", participant=med)
    clock.advance(30)
    assert run(service, state.id, "system", type="tick") == []
    assert state.participants[ids["Li Si"]].space == "joint"


def test_mediator_leaving_holds_at_once(service, live):
    state, ids = live
    events = run(service, state.id, ids["Mediator Wang"], type="leave")
    assert [e.type for e in events][:2] == ["participant.left", "session.safety_hold"]
    assert state.participants[ids["Zhang San"]].space == "waiting"


def test_duty_lawyer_lands_in_the_caucus_it_was_called_to(service, live):
    state, ids = live
    med = ids["Mediator Wang"]
    run(service, state.id, med, type="create_caucus", caucus="b")
    run(service, state.id, med, type="move_to_caucus", caucus="b", participants=[ids["Li Si"]])
    (event,) = run(service, state.id, med, type="call_duty_lawyer", name="Lawyer Chen", space="b")
    lawyer = event.data["participant"]["id"]
    assert state.participants[lawyer].role == "duty_lawyer"
    run(service, state.id, "system", type="connect", participant=lawyer)
    assert state.participants[lawyer].space == "caucus:b"
    assert receivers(state, lawyer) == {ids["Li Si"]}


def test_chat_is_visible_only_in_its_space(service, live):
    state, ids = live
    med, zhang, li = ids["Mediator Wang"], ids["Zhang San"], ids["Li Si"]
    run(service, state.id, med, type="create_caucus", caucus="b")
    run(service, state.id, med, type="move_to_caucus", caucus="b", participants=[li])
    run(service, state.id, li, type="chat", text="my real bottom line")
    run(service, state.id, zhang, type="chat", text="hello all")
    assert [m["text"] for m in state.view_for(li)["chat"]] == ["my real bottom line"]
    assert [m["text"] for m in state.view_for(zhang)["chat"]] == ["hello all"]
    assert [m["text"] for m in state.view_for(med)["chat"]] == ["hello all"]
    # and the other side does not even learn who is in the caucus
    assert li not in {p["id"] for p in state.view_for(zhang)["participants"]}
    run(service, state.id, med, type="return_to_waiting", participant=zhang)
    with pytest.raises(CommandError) as err:
        run(service, state.id, zhang, type="chat", text="anyone?")
    assert err.value.code == "conflict"


def test_recording_needs_everyones_consent_and_never_takes_caucuses(service, live):
    state, ids = live
    med, li = ids["Mediator Wang"], ids["Li Si"]
    with pytest.raises(CommandError) as err:
        run(service, state.id, med, type="start_recording")
    assert err.value.code == "conflict" and "consent" in err.value.message
    for pid in ids.values():
        run(service, state.id, pid, type="record_consent", topic="recording", given=True)
    run(service, state.id, med, type="start_recording")
    run(service, state.id, med, type="create_caucus", caucus="b")
    run(service, state.id, med, type="move_to_caucus", caucus="b", participants=[li])
    recorded = {e.publisher for e in plan(state) if e.subscriber == RECORDER}
    assert li not in recorded and med in recorded
    # withdrawing consent while recording pauses it (policy.withdrawal); nobody is silenced (R8)
    zhang = ids["Zhang San"]
    run(service, state.id, zhang, type="record_consent", topic="recording", given=False)
    assert receivers(state, zhang) and not any(e.subscriber == RECORDER for e in plan(state))
    run(service, state.id, med, type="stop_recording")
    assert not any(e.subscriber == RECORDER for e in plan(state))


def test_mute_removes_audio_only(service, live):
    state, ids = live
    med, zhang = ids["Mediator Wang"], ids["Zhang San"]
    run(service, state.id, med, type="mute", participant=zhang)
    kinds = {e.kind for e in plan(state) if e.publisher == zhang}
    assert kinds == {"video"}
    run(service, state.id, med, type="unmute", participant=zhang)
    assert Edge(zhang, med, "audio") in plan(state)


def test_remove_and_end(service, live):
    state, ids = live
    med, li = ids["Mediator Wang"], ids["Li Si"]
    with pytest.raises(CommandError) as err:
        run(service, state.id, ids["Zhang San"], type="remove", participant=li)
    assert err.value.code == "forbidden"
    run(service, state.id, med, type="remove", participant=li, reason="abusive")
    assert state.participants[li].space == "removed"
    run(service, state.id, med, type="end_session", reason="settled")
    assert state.ended and plan(state) == frozenset()
    with pytest.raises(CommandError) as err:
        run(service, state.id, "system", type="tick")
    assert err.value.code == "ended"


def test_reissued_invitation_raises_the_generation(service, store, live):
    state, ids = live
    med, li = ids["Mediator Wang"], ids["Li Si"]
    assert state.participants[li].invitation_gen == 0
    run(service, state.id, med, type="reissue_invitation", participant=li)
    run(service, state.id, "staff:admin", type="reissue_invitation", participant=li)
    assert state.participants[li].invitation_gen == 2
    with pytest.raises(CommandError) as err:
        run(service, state.id, ids["Zhang San"], type="reissue_invitation", participant=li)
    assert err.value.code == "forbidden"
    from rooms.state import SessionState

    assert SessionState.from_events(store.read(state.id)).participants[li].invitation_gen == 2
