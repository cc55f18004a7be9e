"""The queue: order, position, estimated wait, keeping a place, choosing the next caller (pure).

Order is FIFO within priority: a mediator's call (priority 0) before citizens (priority 1), then
by the time of queueing, then by id. A citizen's page polls; a page silent for
``PRESENCE_SECONDS`` has gone away, and its place is kept ``HOLD_SECONDS`` more (a phone that
locked, a tab closed by mistake) before the entry lapses. An absent caller keeps the position but
is skipped by "pick up next": nobody is connected to a person who is not there.

The estimate: with ``free`` lawyers available and ``on_shift`` lawyers at the point, the callers
ahead that the free lawyers do not absorb are served ``on_shift`` at a time, each round taking
the mean of the recent handling times (``DEFAULT_HANDLING`` before any is known). It errs long:
a wait that ends early disappoints nobody.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PRESENCE_SECONDS = 20.0
HOLD_SECONDS = 180.0
DEFAULT_HANDLING = 600.0
RECENT = 20  # handling times the estimate averages
PRIORITY = {"mediation": 0, "citizen": 1}
TOPICS = ("family", "labour", "debt", "neighbour", "other")


@dataclass(frozen=True)
class Entry:
    id: int
    kind: str  # "citizen" | "mediation"
    point: str | None  # None: a mediation's call, any lawyer on shift may take it
    queued_at: float
    last_seen: float
    state: str = "waiting"  # waiting | serving | done | abandoned | cancelled | callback


def present(e: Entry, now: float) -> bool:
    """The caller is there now (a mediation waits in its session: always there)."""
    return e.kind == "mediation" or now - e.last_seen <= PRESENCE_SECONDS


def held(e: Entry, now: float) -> bool:
    """Waiting, and either there or gone for less than the hold."""
    return e.state == "waiting" and (
        present(e, now) or now - e.last_seen <= PRESENCE_SECONDS + HOLD_SECONDS
    )


def lapsed(entries: Iterable[Entry], now: float) -> list[int]:
    """Waiting entries whose hold ran out: to be marked abandoned."""
    return [e.id for e in entries if e.state == "waiting" and not held(e, now)]


def _key(e: Entry) -> tuple:
    return (PRIORITY.get(e.kind, 9), e.queued_at, e.id)


def line(entries: Iterable[Entry], points: Iterable[str] | None, now: float) -> list[Entry]:
    """The held entries of these points plus every mediation call, in serving order.
    ``points=None``: every point."""
    wanted = None if points is None else frozenset(points)
    return sorted(
        (
            e
            for e in entries
            if held(e, now) and (e.point is None or wanted is None or e.point in wanted)
        ),
        key=_key,
    )


def position(entries: Sequence[Entry], entry_id: int, now: float) -> int | None:
    """1-based place of ``entry_id`` in its point's line, or None when it is not waiting."""
    mine = next((e for e in entries if e.id == entry_id), None)
    if mine is None or not held(mine, now):
        return None
    points = None if mine.point is None else [mine.point]
    for i, e in enumerate(line(entries, points, now), start=1):
        if e.id == entry_id:
            return i
    return None


def mean_handling(recent: Sequence[float]) -> float:
    last = [t for t in recent[-RECENT:] if t > 0]
    return sum(last) / len(last) if last else DEFAULT_HANDLING


def estimate_wait(position: int, free: int, on_shift: int, recent: Sequence[float]) -> float | None:
    """Seconds until this caller is likely answered; None when nobody is on shift."""
    if on_shift <= 0 or position < 1:
        return None
    ahead = position - 1
    if ahead < free:
        return 0.0
    rounds = math.ceil((ahead - free + 1) / on_shift)
    return rounds * mean_handling(recent)


def next_for(entries: Iterable[Entry], points: Iterable[str], now: float) -> Entry | None:
    """The first caller a lawyer serving ``points`` would get: first in line and there now."""
    return next((e for e in line(entries, points, now) if present(e, now)), None)


def choose(entries: Iterable[Entry], entry_id: int, points: Iterable[str], now: float) -> Entry:
    """A chosen caller, if this lawyer may take them now; else ValueError with the code."""
    pts = frozenset(points)
    e = next((x for x in entries if x.id == entry_id), None)
    if e is None or not held(e, now):
        raise ValueError("not_found")
    if e.point is not None and e.point not in pts:
        raise ValueError("not_your_point")
    if not present(e, now):
        raise ValueError("caller_away")
    return e
