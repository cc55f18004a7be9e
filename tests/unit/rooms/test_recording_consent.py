"""The recording question and its answers in the ledger (R8, R15), and consent withdrawn while
the recording runs: pure rules through the service and an in-memory ledger, no media.

Every step is an event with its actor: the question (``recording.asked``: who, when), its
withdrawal, each answer (``participant.consent`` naming the question), a withdrawal during the
run (``recording.consent_withdrawn``), and the gap it makes (``recording.paused`` then
``recording.resumed`` with its length)."""

from __future__ import annotations

import dataclasses

import pytest

from recording.manifest import manifest
from rooms.commands import SERVER_ONLY, decode_command
from rooms.errors import CommandError
from rooms.ledger import SqliteLedgerStore
from rooms.plan import RECORDER, plan
from rooms.policy import CONSULTATION, MEDIATION
from rooms.service import ParticipantSpec, SessionService
from rooms.state import SessionState

PARTY = ("online_mediation", "session_rules")


class World:
    def __init__(self, **policy_changes) -> None:
        self.now = 1000.0
        self.store = SqliteLedgerStore(":memory:")
        self.service = SessionService(self.store, clock=lambda: self.now)
        self.state = self.service.create_session(
            "mediation",
            actor="staff:x",
            title="t",
            case_number=None,
            participants=[
                ParticipantSpec("Med", "mediator"),
                ParticipantSpec("A", "party", "A"),
                ParticipantSpec("B", "party", "B"),
                ParticipantSpec("Obs", "observer"),
            ],
        )
        if policy_changes:
            self.state.policy = dataclasses.replace(MEDIATION, **policy_changes)
        self.id = {p.name: p.id for p in self.state.participants.values()}
        self.name = {v: k for k, v in self.id.items()}
        self.join("Med")
        self.join("A", *PARTY)
        self.join("B", *PARTY)

    def join(self, name: str, *topics: str) -> None:
        self.run("system", type="connect", participant=self.id[name])
        for topic in topics:
            self.run(name, type="record_consent", topic=topic, given=True)
        if self.state.participants[self.id[name]].space == "waiting":
            self.run("Med", type="admit", participant=self.id[name])

    def run(self, actor: str, **raw):
        return self.service.execute(self.state.id, self.id.get(actor, actor), decode_command(raw))

    def refused(self, actor: str, code: str, **raw) -> str:
        seq = self.state.seq
        with pytest.raises(CommandError) as err:
            self.run(actor, **raw)
        assert err.value.code == code, err.value.message
        assert self.state.seq == seq  # nothing recorded
        return err.value.message

    def consent(self, name: str, given: bool = True):
        return self.run(name, type="record_consent", topic="recording", given=given)

    def recorded(self) -> set[str]:
        return {self.name[e.publisher] for e in plan(self.state) if e.subscriber == RECORDER}

    def recording_running(self) -> None:
        for name in ("Med", "A", "B"):
            self.consent(name)
        self.run("Med", type="start_recording")
        assert self.recorded() == {"Med", "A", "B"}


def test_the_question_and_every_answer_are_ledger_events_with_their_actor():
    w = World()
    w.consent("Med")
    w.now = 1010.0
    [asked] = w.run("Med", type="ask_recording", action="ask")
    assert (asked.type, asked.actor, asked.ts, asked.data) == (
        "recording.asked",
        w.id["Med"],
        1010.0,
        {"ask": 1},
    )
    assert w.state.recording_question() == {"id": 1, "by": "Med", "at": 1010.0}
    w.now = 1015.0
    [yes] = w.consent("A")
    [no] = w.consent("B", False)
    for event, who, given in ((yes, "A", True), (no, "B", False)):
        assert (event.type, event.actor) == ("participant.consent", w.id[who])
        assert event.data == {
            "participant": w.id[who],
            "topic": "recording",
            "given": given,
            "ask": 1,
        }
    # the mediator sees who did not agree; nobody is ejected
    assert w.state.view_for(w.id["Med"])["recording_missing"] == [w.id["B"]]
    assert w.state.participants[w.id["B"]].space == "joint"
    # asked again (a new question, numbered on from the ledger), then B agrees and it starts
    [again] = w.run("Med", type="ask_recording", action="ask")
    assert again.data == {"ask": 2}
    [b_yes] = w.consent("B")
    assert b_yes.data["ask"] == 2
    [started] = w.run("Med", type="start_recording")
    assert started.actor == w.id["Med"]
    assert w.state.recording_ask is None  # the start closes the question
    # after a restart the fold gives the same question state
    again_state = SessionState.from_events(w.store.read(w.state.id))
    assert (again_state.recording_ask, again_state.recording_asks) == (None, 2)


def test_the_question_survives_a_restart_and_is_withdrawn_in_the_ledger():
    w = World()
    w.consent("Med")
    w.run("Med", type="ask_recording", action="ask")
    restarted = SessionState.from_events(w.store.read(w.state.id))
    assert restarted.recording_question() == w.state.recording_question()
    [cancelled] = w.run("Med", type="ask_recording", action="cancel")
    assert (cancelled.type, cancelled.actor, cancelled.data) == (
        "recording.ask_cancelled",
        w.id["Med"],
        {"ask": 1},
    )
    assert w.state.recording_question() is None
    [answer] = w.consent("A")  # an answer with no open question names none
    assert "ask" not in answer.data


@pytest.mark.parametrize(
    ("actor", "action", "setup", "code", "words"),
    [
        ("A", "ask", None, "forbidden", "may not ask recording"),
        ("Obs", "ask", None, "forbidden", "may not ask recording"),
        ("Med", "ask", None, "conflict", "your own consent"),
        ("Med", "cancel", None, "conflict", "no recording question"),
        ("Med", "ask", "running", "conflict", "already on"),
        ("Med", "cancel", "cancelled", "conflict", "no recording question"),
    ],
)
def test_bad_questions_are_refused(actor, action, setup, code, words):
    w = World()
    if actor == "Obs":
        w.join("Obs", "session_rules")
    if setup == "running":
        w.recording_running()
    if setup == "cancelled":
        w.consent("Med")
        w.run("Med", type="ask_recording", action="ask")
        w.run("Med", type="ask_recording", action="cancel")
    assert words in w.refused(actor, code, type="ask_recording", action=action)


def test_the_question_is_server_only_and_only_where_consent_gates_recording():
    assert "ask_recording" in SERVER_ONLY  # pages send socket.io "recording"; signaling checks
    assert CONSULTATION.allows("duty_lawyer", "ask_recording")
    with pytest.raises(CommandError):
        decode_command({"type": "ask_recording", "action": "maybe"})


def test_a_withdrawal_pauses_the_recording_names_the_person_and_the_gap_is_recorded():
    w = World()
    w.recording_running()
    w.now = 1100.0
    withdrawal = w.consent("A", False)
    assert [(e.type, e.actor) for e in withdrawal] == [
        ("participant.consent", w.id["A"]),
        ("recording.consent_withdrawn", w.id["A"]),
        ("recording.paused", w.id["A"]),
    ]
    assert withdrawal[1].data == {"participant": w.id["A"], "effect": "pause"}
    assert withdrawal[2].data == {"reason": "consent_withdrawn", "participants": [w.id["A"]]}
    # paused for everyone, nobody silenced or ejected; the mediator sees who withdrew
    assert w.recorded() == set()
    a_sends = {e.subscriber for e in plan(w.state) if e.publisher == w.id["A"]}
    assert a_sends == {w.id["Med"], w.id["B"]}
    med_view = w.state.view_for(w.id["Med"])
    assert med_view["session"]["recording"] and med_view["session"]["recording_paused"]
    assert med_view["recording_withdrawn"] == [{"participant": w.id["A"], "at": 1100.0}]
    assert med_view["recording_missing"] == [w.id["A"]]
    assert "recording_withdrawn" not in w.state.view_for(w.id["B"])  # staff only
    # A agrees again: it resumes, and the ledger has the gap's length
    w.now = 1130.5
    back = w.consent("A")
    assert [e.type for e in back] == ["participant.consent", "recording.resumed"]
    assert back[1].data == {"paused_at": 1100.0, "seconds": 30.5}
    assert w.recorded() == {"Med", "A", "B"}
    assert w.state.view_for(w.id["Med"])["recording_withdrawn"] == []
    # the manifest, from the ledger alone, lists the gap
    [pause] = manifest(w.store.read(w.state.id))["pauses"]
    assert (pause["ts"], pause["resumed"], pause["why"], pause["by"]) == (
        1100.0,
        1130.5,
        "recording.resumed",
        w.id["A"],
    )
    assert pause["reason"] == "consent_withdrawn" and pause["participants"] == [w.id["A"]]


@pytest.mark.parametrize("how", ["caucus", "leave", "stop"])
def test_the_pause_ends_when_the_person_leaves_the_recorded_room_or_recording_stops(how):
    w = World()
    w.recording_running()
    w.consent("B", False)
    w.now = 1060.0
    if how == "caucus":
        w.run("Med", type="create_caucus", caucus="c")
        events = w.run("Med", type="move_to_caucus", caucus="c", participants=[w.id["B"]])
        assert events[-1].type == "recording.resumed" and events[-1].actor == w.id["Med"]
        assert w.recorded() == {"Med", "A"}
        # back in the joint room without consent: paused again, B still named
        events = w.run("Med", type="close_caucus", caucus="c")
        assert events[-1].type == "recording.paused"
        assert events[-1].data["reason"] == "consent_withdrawn"
    elif how == "leave":
        events = w.run("B", type="leave")
        assert [e.type for e in events][-1] == "recording.resumed"
        assert events[-1].data["seconds"] == 60.0
        assert w.recorded() == {"Med", "A"}
    else:
        events = w.run("Med", type="stop_recording")
        assert [e.type for e in events] == ["recording.stopped"]  # the stop closes the gap
        assert w.state.paused_since is None and not w.state.withdrawn


def test_withdrawal_under_a_hold_policy_holds_the_person_and_recording_goes_on():
    w = World(withdrawal="hold")
    w.recording_running()
    events = w.consent("A", False)
    assert [e.type for e in events] == ["participant.consent", "recording.consent_withdrawn"]
    assert events[1].data["effect"] == "hold"
    assert w.recorded() == {"Med", "B"}
    assert not any(e.publisher == w.id["A"] for e in plan(w.state))  # held: nobody gets A
    assert w.state.participants[w.id["A"]].space == "joint"  # never ejected


def test_a_late_joiner_under_a_pause_policy_pauses_with_reason_no_consent():
    w = World(late_joiner="pause")
    w.run("system", type="disconnect", participant=w.id["B"], reason="left")  # to waiting
    for name in ("Med", "A"):
        w.consent(name)
    w.run("Med", type="start_recording")
    w.run("system", type="connect", participant=w.id["B"])
    events = w.run("Med", type="admit", participant=w.id["B"])
    assert [e.type for e in events] == ["participant.admitted", "recording.paused"]
    assert events[1].data == {"reason": "no_consent", "participants": [w.id["B"]]}
    assert w.recorded() == set()
    events = w.consent("B")
    assert [e.type for e in events] == ["participant.consent", "recording.resumed"]


def test_bad_withdrawals_change_nothing_else():
    w = World()
    w.join("Obs", "session_rules")
    # a refusal before any recording is only an answer, not a withdrawal
    w.consent("A")
    assert [e.type for e in w.consent("A", False)] == ["participant.consent"]
    w.consent("A")
    w.consent("Med")
    w.consent("B")
    w.run("Med", type="start_recording")
    # an observer is never recorded: their "no" pauses nothing
    assert [e.type for e in w.consent("Obs", False)] == ["participant.consent"]
    assert w.recorded() == {"Med", "A", "B"}
    # the same answer twice is refused, and the ledger does not move
    w.consent("A", False)
    w.refused("A", "conflict", type="record_consent", topic="recording", given=False)
    # someone who is gone cannot answer
    w.run("B", type="leave")
    w.refused("B", "forbidden", type="record_consent", topic="recording", given=False)
    # a bad value is refused by the schema
    with pytest.raises(CommandError) as err:
        decode_command({"type": "record_consent", "topic": "recording", "given": "no"})
    assert err.value.code == "invalid"
