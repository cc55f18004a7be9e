"""The live visit in rooms/, pure and with a simulated clock: the session clock (R17), the
officer's warning and listen-in (R4, R2), the counter's check-in as the identity check (R6).

The clock is table-tested: each row is a script of (second, step) for a 10-minute visit and
the expected remaining time, warnings and end. Steps: ``live`` (both terminals connected in the
visit), ``drop X`` / ``back X`` (a terminal's connection lost / back), ``tick``.
"""

from __future__ import annotations

import pytest

from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.ledger import SqliteLedgerStore
from rooms.plan import plan
from rooms.policy import POLICIES
from rooms.service import ParticipantSpec, SessionService

T0 = 1_800_000_000.0


class Visit:
    """A visitation (or privileged) session with a hand-driven clock."""

    def __init__(self, kind: str = "visitation", limit: int = 600) -> None:
        self.now = T0
        self.service = SessionService(SqliteLedgerStore(":memory:"), clock=lambda: self.now)
        guest = "visitor" if kind == "visitation" else "lawyer"
        self.state = self.service.create_session(
            kind,
            actor="system",
            title="Visit #1",
            case_number="V-1",
            participants=[
                ParticipantSpec("Family room", guest),
                ParticipantSpec("Inmate", "inmate"),
            ],
        )
        self.guest, self.inmate = list(self.state.participants)
        self.ids = {"family": self.guest, "inmate": self.inmate}
        self.run("system", type="set_time_limit", seconds=limit)
        self.run(
            "system",
            type="mark_identity_checked",
            participant=self.guest,
            method="check_in",
            detail="家属 (parent, …0297, id_card, staff:op)",
        )

    def run(self, actor: str, **raw):
        return self.service.execute(self.state.id, actor, decode_command(raw))

    def types(self) -> list[str]:
        return [e.type for e in self.service.events(self.state.id)]

    def live(self) -> None:
        for pid in (self.guest, self.inmate):
            self.run("system", type="connect", participant=pid)
        if self.state.policy.admission_consents.get("visitor"):
            self.run(self.guest, type="record_consent", topic="session_rules", given=True)
        if self.state.policy.recording == "required":
            self.run("system", type="report_recorder", status="ready")
            self.run("system", type="start_recording")
        for pid in (self.inmate, self.guest):
            self.run("system", type="admit", participant=pid)

    def step(self, at: float, what: str) -> None:
        self.now = T0 + at
        if what == "live":
            self.live()
        elif what == "tick":
            self.run("system", type="tick")
        else:
            verb, who = what.split()
            pid = self.ids[who]
            if verb == "drop":
                self.run("system", type="disconnect", participant=pid, reason="transport_lost")
            else:
                self.run("system", type="connect", participant=pid)


# (name, script, (second to read remaining, expected remaining), warnings, end reason)
CLOCK = [
    ("not started: nothing counts", [(0, "tick"), (900, "tick")], (900, 600), [], None),
    ("runs from the moment both are in", [(10, "live"), (110, "tick")], (110, 500), [], None),
    ("warns at 5 minutes", [(0, "live"), (300, "tick")], (300, 300), [300], None),
    (
        "both warnings once each",
        [(0, "live"), (300, "tick"), (301, "tick"), (540, "tick"), (545, "tick")],
        (545, 55),
        [300, 60],
        None,
    ),
    (
        "a late start goes straight to the 1-minute warning",
        [(0, "live"), (560, "tick")],
        (560, 40),
        [60],
        None,
    ),
    (
        "ends by itself at zero",
        [(0, "live"), (300, "tick"), (540, "tick"), (600, "tick")],
        (600, 0),
        [300, 60],
        "time_up",
    ),
    (
        "an outage is not counted",
        [(0, "live"), (100, "drop inmate"), (120, "tick"), (160, "back inmate"), (200, "tick")],
        (200, 460),
        [],
        None,
    ),
    (
        "either end's outage pauses it",
        [(0, "live"), (100, "drop family"), (400, "back family"), (450, "tick")],
        (450, 450),
        [],
        None,
    ),
    (
        "the time is credited even past the booked end",
        [(0, "live"), (500, "drop inmate"), (700, "back inmate"), (750, "tick")],
        (750, 50),
        [60],
        None,
    ),
    (
        "an outage beyond the grace ends the visit",
        [(0, "live"), (100, "drop inmate"), (399, "tick"), (400, "tick")],
        (400, 500),
        [],
        "outage",
    ),
]


@pytest.mark.parametrize("name,script,reading,warned,ended", CLOCK, ids=[c[0] for c in CLOCK])
def test_session_clock(name, script, reading, warned, ended):
    v = Visit()
    for at, what in script:
        v.step(at, what)
    at, left = reading
    assert v.state.remaining(T0 + at) == pytest.approx(left), name
    warnings = [
        e.data["remaining"] for e in v.service.events(v.state.id) if e.type == "visit.time_warning"
    ]
    assert warnings == warned, name
    assert v.state.ended_reason == ended if ended else not v.state.ended, name


def test_the_clock_is_in_every_view_and_the_end_reason_too():
    v = Visit()
    v.step(0, "live")
    v.step(300, "tick")
    view = v.state.view_for(v.inmate)["session"]
    assert view["clock"] == {
        "limit": 600.0,
        "remaining": 300.0,
        "running": True,
        "started": True,
        "outage_since": None,
        "warned": [300],
    }
    v.step(400, "drop family")
    assert v.state.view_for(v.inmate)["session"]["clock"]["running"] is False
    v.step(700, "tick")
    assert v.state.view_for(v.inmate)["session"]["ended_reason"] == "outage"


def test_time_limit_bounds():
    v = Visit()
    with pytest.raises(CommandError) as err:
        v.run("system", type="set_time_limit", seconds=31 * 60)  # longer than the policy's
    assert err.value.code == "invalid"
    v.step(0, "live")
    v.step(200, "tick")
    with pytest.raises(CommandError) as err:
        v.run("system", type="set_time_limit", seconds=120)  # less than already used
    assert err.value.code == "conflict"
    with pytest.raises(CommandError) as err:  # a client may never send it
        v.run(v.guest, type="set_time_limit", seconds=900)
    assert err.value.code == "forbidden"


def test_warning_is_recorded_with_actor_and_shown_to_both_without_who():
    v = Visit()
    with pytest.raises(CommandError) as err:
        v.run("staff:li", type="warn", reason="language")
    assert err.value.code == "conflict"  # nobody in the visit yet
    v.step(0, "live")
    v.step(30, "tick")
    v.run("staff:li", type="warn", reason="third_person", note="a third person behind")
    [event] = [e for e in v.service.events(v.state.id) if e.type == "visit.warned"]
    assert (event.actor, event.ts, event.data["reason"]) == ("staff:li", T0 + 30, "third_person")
    for pid in (v.guest, v.inmate):
        assert v.state.view_for(pid)["session"]["warnings"] == [
            {"seq": event.seq, "ts": T0 + 30, "reason": "third_person"}
        ]
    for bad in ({"reason": "rude"}, {"reason": "other", "note": "x" * 201}, {}):
        with pytest.raises(CommandError) as err:
            decode_command({"type": "warn", **bad})
        assert err.value.code == "invalid"
    for actor in (v.guest, v.inmate):  # the parties cannot warn each other
        with pytest.raises(CommandError) as err:
            v.run(actor, type="warn", reason="other")
        assert err.value.code == "forbidden"


def test_end_in_one_action_with_a_reason():
    v = Visit()
    v.step(0, "live")
    v.run("staff:li", type="end_session", reason="terminated:security")
    assert v.state.ended and v.state.ended_reason == "terminated:security"
    assert plan(v.state) == frozenset()
    [event] = [e for e in v.service.events(v.state.id) if e.type == "session.ended"]
    assert event.actor == "staff:li"


def test_a_listening_officer_is_hidden_silent_and_hears_both():
    v = Visit()
    v.step(0, "live")
    v.run("staff:li", type="add_observer", name="李警官", role="officer")
    officer = next(p for p in v.state.participants.values() if p.role == "officer")
    v.run("system", type="connect", participant=officer.id)
    assert officer.space == "console"
    edges = plan(v.state)
    assert {(e.publisher, e.kind) for e in edges if e.subscriber == officer.id} == {
        (v.guest, "audio"),
        (v.guest, "video"),
        (v.inmate, "audio"),
        (v.inmate, "video"),
    }
    assert not [e for e in edges if e.publisher == officer.id]  # never publishes
    for pid in (v.guest, v.inmate):  # the parties never learn the officer is there
        assert officer.id not in {p["id"] for p in v.state.view_for(pid)["participants"]}


def test_a_privileged_visit_cannot_be_observed_or_warned_at_any_layer():
    v = Visit("privileged")
    v.step(0, "live")
    assert v.state.policy.privileged and not v.state.recording
    for raw in (
        {"type": "add_observer", "name": "李警官", "role": "officer"},
        {"type": "add_observer", "name": "王", "role": "supervisor"},
        {"type": "warn", "reason": "language"},
    ):
        with pytest.raises(CommandError) as err:
            v.run("staff:li", **raw)
        assert err.value.code == "forbidden"
    assert not [p for p in v.state.participants.values() if p.role in ("officer", "supervisor")]
    assert {e.subscriber for e in plan(v.state)} == {v.guest, v.inmate}  # no observer, no recorder
    # the privileged clock runs the same way (R17) and a supervisor may still end it
    v.step(100, "tick")
    assert v.state.remaining(T0 + 100) == pytest.approx(500)
    v.run("staff:chief", type="end_session", reason="terminated:security")
    assert v.state.ended


def test_rule_refuses_an_observer_even_if_a_policy_allowed_the_command():
    """The rule's own check (defence in depth): a privileged policy with the command permitted."""
    from dataclasses import replace

    from rooms import rules
    from rooms.policy import STAFF

    v = Visit("privileged")
    loose = replace(
        POLICIES["privileged"],
        permissions={**POLICIES["privileged"].permissions, "add_observer": frozenset({STAFF})},
    )
    v.state.policy = loose
    cmd = decode_command({"type": "add_observer", "name": "李警官", "role": "officer"})
    with pytest.raises(CommandError) as err:
        rules.decide(v.state, "staff:li", cmd, T0, lambda: "p-0000abcd")
    assert err.value.code == "forbidden"


def test_check_in_is_the_servers_method_alone():
    v = Visit()
    with pytest.raises(CommandError) as err:
        v.run("system", type="mark_identity_checked", participant=v.inmate, method="video")
    assert err.value.code == "forbidden"
    [event] = [e for e in v.service.events(v.state.id) if e.type == "participant.identity_checked"]
    assert event.data["method"] == "check_in" and "0297" in event.data["detail"]
