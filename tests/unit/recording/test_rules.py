"""The recording rules in rooms/ (pure: service + in-memory ledger, no media): consent (R8), the
late joiner (hold or pause), caucuses (R9), the visitation gate (R1), privileged sessions (R2)."""

from __future__ import annotations

import dataclasses

import pytest

from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.ledger import SqliteLedgerStore
from rooms.plan import RECORDER, plan
from rooms.policy import MEDIATION
from rooms.service import ParticipantSpec, SessionService

SEGMENT = {
    "type": "record_segment",
    "space": "joint",
    "kinds": ["audio", "video"],
    "index": 0,
    "file": "seg.bin",
    "key_id": "0" * 16,
    "media_start": 0.0,
    "media_end": 10.0,
    "wall_start": 1.0,
    "wall_end": 11.0,
    "video_frames": 150,
    "audio_frames": 500,
    "bytes": 100,
    "sha256": "a" * 64,
    "plain_sha256": "b" * 64,
}


class World:
    def __init__(self, kind: str, people: list[ParticipantSpec]) -> None:
        self.service = SessionService(SqliteLedgerStore(":memory:"), clock=lambda: 1000.0)
        self.state = self.service.create_session(
            kind, actor="staff:x", title="t", case_number=None, participants=people
        )
        self.id = {p.name: p.id for p in self.state.participants.values()}

    def run(self, actor: str, **raw):
        actor = self.id.get(actor, actor)
        return self.service.execute(self.state.id, actor, decode_command(raw))

    def refused(self, actor: str, code: str, **raw) -> str:
        with pytest.raises(CommandError) as err:
            self.run(actor, **raw)
        assert err.value.code == code, err.value.message
        return err.value.message

    def recorded(self) -> set[str]:
        names = {v: k for k, v in self.id.items()}
        return {names[e.publisher] for e in plan(self.state) if e.subscriber == RECORDER}

    def join(self, name: str, *topics: str) -> None:
        self.run("system", type="connect", participant=self.id[name])
        for topic in topics:
            self.run(name, type="record_consent", topic=topic, given=True)
        if self.state.participants[self.id[name]].space == "waiting":
            self.run("Med", type="admit", participant=self.id[name])


PARTY = ("online_mediation", "session_rules")


def mediation(**policy_changes) -> World:
    w = World(
        "mediation",
        [
            ParticipantSpec("Med", "mediator"),
            ParticipantSpec("A", "party", "A"),
            ParticipantSpec("B", "party", "B"),
        ],
    )
    if policy_changes:
        w.state.policy = dataclasses.replace(MEDIATION, **policy_changes)
    w.join("Med")
    w.join("A", *PARTY)
    return w


def test_the_mediator_must_consent_too_and_start_stop_name_the_actor():
    w = mediation()
    w.run("A", type="record_consent", topic="recording", given=True)
    message = w.refused("Med", "conflict", type="start_recording")
    assert "your own consent" in message
    w.run("Med", type="record_consent", topic="recording", given=True)
    [started] = w.run("Med", type="start_recording")
    assert (started.type, started.actor) == ("recording.started", w.id["Med"])
    assert w.recorded() == {"Med", "A"}
    [stopped] = w.run("Med", type="stop_recording")
    assert (stopped.type, stopped.actor) == ("recording.stopped", w.id["Med"])
    assert w.recorded() == set()


def test_a_refusal_does_not_eject_and_the_mediator_sees_who_has_not_consented():
    w = mediation()
    w.run("Med", type="record_consent", topic="recording", given=True)
    w.run("A", type="record_consent", topic="recording", given=False)
    a = w.state.participants[w.id["A"]]
    assert a.connected and a.space == "joint"
    assert "A" in w.refused("Med", "conflict", type="start_recording")
    assert w.state.view_for(w.id["Med"])["recording_missing"] == [w.id["A"]]
    assert "recording_missing" not in w.state.view_for(w.id["A"])  # staff only


@pytest.mark.parametrize("late_joiner", ["hold", "pause"])
def test_a_late_joiner_is_held_or_the_recording_pauses(late_joiner):
    w = mediation(late_joiner=late_joiner)
    for name in ("Med", "A"):
        w.run(name, type="record_consent", topic="recording", given=True)
    w.run("Med", type="start_recording")
    w.join("B", *PARTY)  # admitted while recording, no recording consent yet
    edges = plan(w.state)
    b_sends = {e.subscriber for e in edges if e.publisher == w.id["B"]}
    b_gets = {e.publisher for e in edges if e.subscriber == w.id["B"]}
    if late_joiner == "hold":  # muted and camera off for everyone, the recording goes on
        assert b_sends == set() and b_gets == {w.id["Med"], w.id["A"]}
        assert w.recorded() == {"Med", "A"}
        assert not w.state.view_for(w.id["B"])["session"]["recording_paused"]
    else:  # everyone sees everyone, nothing is recorded
        assert b_sends == {w.id["Med"], w.id["A"]}
        assert w.recorded() == set()
        assert w.state.view_for(w.id["B"])["session"]["recording_paused"]
    w.run("B", type="record_consent", topic="recording", given=True)
    assert w.recorded() == {"Med", "A", "B"}


def test_caucuses_are_never_recorded():
    w = mediation()
    w.join("B", *PARTY)
    for name in ("Med", "A", "B"):
        w.run(name, type="record_consent", topic="recording", given=True)
    w.run("Med", type="start_recording")
    w.run("Med", type="create_caucus", caucus="c")
    w.run("Med", type="move_to_caucus", caucus="c", side="A")
    assert w.recorded() == {"Med", "B"}
    w.refused("system", "conflict", **SEGMENT | {"participant": w.id["A"], "space": "caucus:c"})


def test_segments_and_gaps_are_checked_and_arrive_after_the_end():
    w = mediation()
    seg = SEGMENT | {"participant": w.id["A"]}
    [event] = w.run("system", **seg)
    assert event.type == "recording.segment" and event.data["sha256"] == "a" * 64
    assert "type" not in event.data and "cid" not in event.data
    w.refused("system", "conflict", **seg)  # the same index twice
    w.refused("system", "invalid", **seg | {"index": 1, "wall_end": 0.5})
    w.refused("A", "forbidden", **seg | {"index": 1})  # never a client
    w.run("Med", type="end_session", reason="done")
    w.run("system", **seg | {"index": 1})  # the last open segment closes after the end
    [gap] = w.run("system", type="record_gap", reason="queue_full", wall_start=1, wall_end=2)
    assert gap.data["reason"] == "queue_full" and gap.actor == "system"
    w.refused("system", "ended", type="start_recording")


def visitation() -> World:
    w = World(
        "visitation",
        [
            ParticipantSpec("Op", "operator"),
            ParticipantSpec("Mother", "visitor"),
            ParticipantSpec("Son", "inmate"),
        ],
    )
    for name in w.id:
        w.run("system", type="connect", participant=w.id[name])
    w.run("Mother", type="record_consent", topic="session_rules", given=True)
    w.run("Op", type="mark_identity_checked", participant=w.id["Mother"], method="in_person")
    return w


def test_no_visit_before_the_recorder_is_ready_and_recording():
    w = visitation()
    assert "recorder" in w.refused("Op", "conflict", type="admit", participant=w.id["Son"])
    assert "recorder" in w.refused("Op", "conflict", type="start_recording")
    w.run("system", type="report_recorder", status="ready")
    assert "recording" in w.refused("Op", "conflict", type="admit", participant=w.id["Son"])
    w.run("Op", type="start_recording")
    w.run("Op", type="admit", participant=w.id["Son"])
    w.run("Op", type="admit", participant=w.id["Mother"])
    assert w.recorded() == {"Son", "Mother"}
    w.refused("Op", "forbidden", type="stop_recording")  # nobody may stop it (R1)


def test_a_recorder_failure_holds_the_visit_and_is_recorded():
    w = visitation()
    w.run("system", type="report_recorder", status="ready")
    w.run("system", type="start_recording")
    w.run("Op", type="admit", participant=w.id["Son"])
    w.run("Op", type="admit", participant=w.id["Mother"])
    events = w.run("system", type="report_recorder", status="failed", reason="disk full")
    assert events[0].type == "recording.failed" and events[0].data["reason"] == "disk full"
    moved = {e.data["participant"] for e in events if e.type == "participant.moved"}
    assert moved == {w.id["Son"], w.id["Mother"]}
    assert all(e.data["reason"] == "recorder_failed" for e in events[1:])
    assert not w.state.recording and w.state.recorder == "failed"
    assert plan(w.state) == frozenset()
    w.run("system", type="record_gap", reason="recorder_failed", wall_start=1.0, wall_end=2.0)
    w.refused("Op", "conflict", type="admit", participant=w.id["Son"])


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "report_recorder", "status": "ready"},
        SEGMENT | {"participant": "p-00000000", "space": "visit"},
        {"type": "record_gap", "reason": "node_restart", "wall_start": 1, "wall_end": 2},
        {"type": "start_recording"},
    ],
)
def test_a_privileged_session_takes_no_recorder_report(raw):
    w = World("privileged", [ParticipantSpec("Law", "lawyer"), ParticipantSpec("In", "inmate")])
    for actor in ("system", "staff:admin", "Law"):
        w.refused(actor, "forbidden", **raw)
