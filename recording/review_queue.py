"""Rule R3: a visit that nobody watched live is reviewed from its recording within two days.

Pure: every answer is computed from a session's state and ledger events and a given ``now``, so
the deadline is table-tested with a simulated clock (tests/unit/recording/test_review_queue.py).

* **Watched live**: a visit counts as watched live when its ledger has a
  ``participant.connected`` of a participant whose role is one of the policy's observer roles
  (``officer``, ``supervisor``) while the visit ran. The officer console's "listen in" adds
  such a hidden observer (``add_observer``) and connects it, so the ledger alone says who
  watched; an observer never publishes (``plan()`` only gives it the visit's media).
* **Queued**: a visitation session that ended, has at least one recorded segment, and was not
  watched live. Its task is due ``REVIEW_WITHIN`` (two days) after ``session.ended``.
* **Done**: the first ``recording.reviewed`` event (who, when, outcome, note). Reviewed after the
  due time counts as done, late.
"""

from __future__ import annotations

from dataclasses import dataclass

REVIEW_WITHIN = 2 * 86400.0

DUE, OVERDUE, REVIEWED, REVIEWED_LATE = "due", "overdue", "reviewed", "reviewed_late"


@dataclass(frozen=True)
class Task:
    session: str
    title: str
    case_number: str
    ended_at: float
    due: float
    reviewed_at: float | None = None
    reviewed_by: str | None = None
    outcome: str | None = None
    note: str | None = None


def watched_live(state, events) -> bool:
    """Whether an observer (officer, supervisor) was connected to the visit while it ran."""
    observers = {p.id for p in state.participants.values() if p.role in state.policy.observer_roles}
    for e in events:
        if e.type == "session.ended":
            return False
        if e.type == "participant.connected" and e.data.get("participant") in observers:
            return True
    return False


def may_need_review(state) -> bool:
    """Whether the state alone leaves room for an R3 task (an ended, unprivileged visit), so a
    caller reads the ledger only then."""
    return state.kind == "visitation" and not state.policy.privileged and state.ended


def task_for(state, events) -> Task | None:
    """The session's R3 review task, or None if it needs none (not a visit, not ended, nothing
    recorded, or watched live)."""
    if not may_need_review(state):
        return None
    ended = next((e for e in events if e.type == "session.ended"), None)
    if ended is None or not any(e.type == "recording.segment" for e in events):
        return None
    if watched_live(state, events):
        return None
    review = next((e for e in events if e.type == "recording.reviewed"), None)
    return Task(
        session=state.id,
        title=state.title,
        case_number=state.case_number or "",
        ended_at=ended.ts,
        due=ended.ts + REVIEW_WITHIN,
        reviewed_at=review.ts if review else None,
        reviewed_by=review.actor if review else None,
        outcome=review.data.get("outcome") if review else None,
        note=review.data.get("note") if review else None,
    )


def status(task: Task, now: float) -> str:
    """due / overdue / reviewed / reviewed_late, at ``now``."""
    if task.reviewed_at is not None:
        return REVIEWED if task.reviewed_at <= task.due else REVIEWED_LATE
    return OVERDUE if now > task.due else DUE


def queue(tasks: list[Task], now: float) -> list[tuple[Task, str]]:
    """Open tasks first (overdue, then by due time), then done ones, newest review first."""
    rated = [(t, status(t, now)) for t in tasks]
    open_ = sorted(
        (x for x in rated if x[1] in (DUE, OVERDUE)), key=lambda x: (x[1] != OVERDUE, x[0].due)
    )
    done = sorted(
        (x for x in rated if x[1] not in (DUE, OVERDUE)), key=lambda x: -(x[0].reviewed_at or 0)
    )
    return open_ + done


def overdue(tasks: list[Task], now: float) -> list[Task]:
    return [t for t in tasks if status(t, now) == OVERDUE]
