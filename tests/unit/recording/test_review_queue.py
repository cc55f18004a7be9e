"""Rule R3, pure: which visits need a review, when it is due and when it is overdue, on a
simulated clock (recording/review_queue.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from recording.review_queue import (
    DUE,
    OVERDUE,
    REVIEW_WITHIN,
    REVIEWED,
    REVIEWED_LATE,
    overdue,
    queue,
    status,
    task_for,
    watched_live,
)
from rooms.policy import MEDIATION, PRIVILEGED, VISITATION

DAY = 86400.0
END = 1_800_000_000.0
POLICIES = {"visitation": VISITATION, "mediation": MEDIATION, "privileged": PRIVILEGED}
PEOPLE = {"v": "visitor", "i": "inmate", "o": "officer", "s": "supervisor", "op": "operator"}


def state(kind="visitation", ended=True, sid="s-1"):
    return SimpleNamespace(
        id=sid,
        kind=kind,
        policy=POLICIES[kind],
        ended=ended,
        title="Visit",
        case_number="prison-a/1",
        participants={
            pid: SimpleNamespace(id=pid, role=role)
            for pid, role in PEOPLE.items()
            if role in POLICIES[kind].roles
        },
    )


def ev(type_, ts=END - 600, actor="system", **data):
    return SimpleNamespace(type=type_, ts=ts, actor=actor, data=data)


SEG = ev("recording.segment", participant="v")
CONN = {pid: ev("participant.connected", participant=pid) for pid in PEOPLE}
ENDED = ev("session.ended", ts=END)


def reviewed(at, outcome="no_concern"):
    return ev("recording.reviewed", ts=at, actor="staff:rev", outcome=outcome, note="seen")


# (what happened, does it need a review)
CASES = [
    ("visitor and inmate only", [CONN["v"], CONN["i"], SEG, ENDED], True),
    ("an officer watched", [CONN["v"], CONN["o"], CONN["i"], SEG, ENDED], False),
    ("a supervisor watched", [CONN["v"], CONN["s"], SEG, ENDED], False),
    ("the operator is no observer", [CONN["op"], CONN["v"], SEG, ENDED], True),
    ("nothing recorded", [CONN["v"], CONN["i"], ENDED], False),
    ("not ended yet", [CONN["v"], SEG], False),
]


@pytest.mark.parametrize("events,needs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_which_visits_need_a_review(events, needs):
    ended = any(e.type == "session.ended" for e in events)
    task = task_for(state(ended=ended), events)
    assert (task is not None) == needs
    if task is not None:
        assert task.due == END + REVIEW_WITHIN == END + 2 * DAY


def test_only_visits_are_queued():
    events = [CONN["v"], SEG, ENDED]
    assert task_for(state("mediation"), events) is None
    assert task_for(state("privileged"), events) is None


def test_an_observer_connected_after_the_end_does_not_count():
    late = ev("participant.connected", ts=END + 10, participant="o")
    assert not watched_live(state(), [CONN["v"], SEG, ENDED, late])


# (seconds after the end, reviewed at (after the end) or None, expected status)
CLOCK = [
    (0, None, DUE),
    (DAY, None, DUE),
    (2 * DAY, None, DUE),  # due at exactly two days
    (2 * DAY + 1, None, OVERDUE),
    (30 * DAY, None, OVERDUE),
    (DAY, DAY / 2, REVIEWED),
    (30 * DAY, 2 * DAY, REVIEWED),
    (3 * DAY, 2 * DAY + 60, REVIEWED_LATE),
    (3 * DAY, 3 * DAY, REVIEWED_LATE),
]


@pytest.mark.parametrize("after,review_at,expected", CLOCK)
def test_deadline_on_a_simulated_clock(after, review_at, expected):
    events = [CONN["v"], SEG, ENDED]
    if review_at is not None:
        events.append(reviewed(END + review_at))
    task = task_for(state(), events)
    assert status(task, END + after) == expected
    if review_at is not None:
        assert task.reviewed_by == "staff:rev" and task.note == "seen"


def test_queue_order_and_overdue_list():
    def task(sid, ended, review=None):
        end = ev("session.ended", ts=ended)
        events = [CONN["v"], SEG, end] + ([reviewed(review)] if review else [])
        return task_for(state(sid=sid), events)

    now = END + 10 * DAY
    tasks = [
        task("fresh", now - DAY),  # due tomorrow
        task("old", END),  # overdue by 8 days
        task("older", END - DAY),  # overdue by 9 days
        task("done", END, END + DAY),
        task("late", END, END + 5 * DAY),
    ]
    order = [(t.session, st) for t, st in queue(tasks, now)]
    assert order == [
        ("older", OVERDUE),
        ("old", OVERDUE),
        ("fresh", DUE),
        ("late", REVIEWED_LATE),
        ("done", REVIEWED),
    ]
    assert [t.session for t in overdue(tasks, now)] == ["old", "older"]
    assert overdue(tasks, END) == []  # nothing was overdue on the day they ended
