"""The duty roster: who is on shift where, and who can take a call now (pure, clock passed in).

A shift binds one duty lawyer (a staff account with the role ``duty_lawyer``) to one service
point for a time window: the shift is the lawyer's site scope, so a lawyer sees and answers only
the queues of the points where a shift covers *now*. Calls from a mediation belong to no point:
every lawyer on shift anywhere may take them. Within a shift a lawyer is ``available`` (receives
calls), ``busy`` (set by the desk while a consultation runs) or ``away`` (the default: a lawyer
who has not opened the desk is not counted as free).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

STATUSES = ("available", "busy", "away")
SETTABLE = ("available", "away")  # busy is the desk's, set on pick-up and cleared at the end


@dataclass(frozen=True)
class Shift:
    id: int
    lawyer: str
    point: str
    start: float  # epoch seconds
    end: float

    def covers(self, now: float) -> bool:
        return self.start <= now < self.end


def points_on_shift(shifts: Iterable[Shift], lawyer: str, now: float) -> frozenset[str]:
    """The points whose queue this lawyer serves now (empty: off shift)."""
    return frozenset(s.point for s in shifts if s.lawyer == lawyer and s.covers(now))


def lawyers_on_shift(shifts: Iterable[Shift], point: str | None, now: float) -> frozenset[str]:
    """Lawyers on shift at ``point`` now; ``None``: on shift anywhere (a mediation's call)."""
    return frozenset(
        s.lawyer for s in shifts if s.covers(now) and (point is None or s.point == point)
    )


def free_lawyers(
    shifts: Iterable[Shift], statuses: Mapping[str, str], point: str | None, now: float
) -> frozenset[str]:
    """On shift at ``point`` and available: whose desk rings."""
    return frozenset(
        lawyer
        for lawyer in lawyers_on_shift(shifts, point, now)
        if statuses.get(lawyer, "away") == "available"
    )


def pickup_refusal(
    shifts: Iterable[Shift],
    statuses: Mapping[str, str],
    lawyer: str,
    entry_point: str | None,
    now: float,
) -> str | None:
    """Why ``lawyer`` may not pick up a caller of ``entry_point`` now, as an error code, or None."""
    mine = points_on_shift(shifts, lawyer, now)
    if not mine:
        return "not_on_shift"
    if entry_point is not None and entry_point not in mine:
        return "not_your_point"
    if statuses.get(lawyer, "away") == "busy":
        return "busy"
    return None
