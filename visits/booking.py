"""Booking rules, pure: when a visit may take place and how many a person in custody may have.

Time is the province's wall clock (naive ``datetime``, minute precision). A visit occupies whole
15-minute **cells** of two terminals (the family's room at the bureau and the inmate's room at the
facility) and of the inmate; a slot fits when both terminals are open for all of it (weekly hours,
visits/hours.py), neither is in maintenance, no cell is held by another booking, it starts at
least ``lead_minutes`` from now and at most ``horizon_days`` ahead, and the custody grade's quota
(R5) leaves room in its calendar month. The store (visits/reservations.py) checks a request with
``problem`` inside its transaction and the ``holds`` table's key refuses any double booking.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from visits.hours import Schedule, is_open
from visits.model import GRADES, VisitError

CELL = 15  # minutes
ACTIVE = ("requested", "approved")  # hold terminal time
COUNTED = ("requested", "approved", "no_show", "completed")  # use up the month's quota
REJECT_REASONS = (
    "security",
    "discipline",
    "inmate_unavailable",
    "visitor_not_approved",
    "capacity",
    "other",
)
CANCEL_REASONS = (
    "family_request",
    "facility_lockdown",
    "terminal_fault",
    "inmate_unavailable",
    "other",
)


@dataclass(frozen=True)
class Quota:
    per_month: int  # visits in one calendar month
    minutes: int  # longest visit
    visitors: int  # most visitors at once


# R5: at most one visit a month, 30 minutes, 3 visitors, varied by custody grade.
DEFAULT_QUOTAS: Mapping[str, Quota] = {
    "strict": Quota(0, 30, 3),
    "normal": Quota(1, 30, 3),
    "lenient": Quota(2, 30, 3),
}


@dataclass(frozen=True)
class Rules:
    quotas: Mapping[str, Quota] = field(default_factory=lambda: dict(DEFAULT_QUOTAS))
    lead_minutes: int = 24 * 60  # the facility needs a day to check and approve
    horizon_days: int = 30
    cancel_cutoff_minutes: int = 120  # the family cancels or reschedules until then
    no_show_grace_minutes: int = 10  # after the start, the operator may mark a no-show


def load_rules(path: Path) -> Rules:
    """``visits-rules.json`` in the data directory, if present: ``{"quotas": {"normal":
    {"per_month": 1, "minutes": 30, "visitors": 3}, ...}, "lead_minutes": 1440, ...}``."""
    if not path.exists():
        return Rules()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        quotas = dict(DEFAULT_QUOTAS)
        for grade, q in raw.pop("quotas", {}).items():
            if grade not in GRADES:
                raise ValueError(f"unknown grade {grade}")
            quota = Quota(int(q["per_month"]), int(q["minutes"]), int(q["visitors"]))
            if min(quota.per_month, quota.visitors) < 0 or not 0 < quota.minutes <= 240:
                raise ValueError(f"quota of {grade} out of range")
            quotas[grade] = quota
        rules = Rules(quotas=quotas, **{k: int(v) for k, v in raw.items()})
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"bad_config: {path.name}: {exc}") from None
    return rules


@dataclass(frozen=True)
class TerminalPlan:
    """What the rules need to know of one terminal around the requested dates."""

    id: str
    schedule: Schedule
    maintenance: tuple[tuple[dt.datetime, dt.datetime], ...] = ()
    held: frozenset[str] = frozenset()  # cells held by other bookings


@dataclass(frozen=True)
class Proposal:
    start: dt.datetime
    minutes: int
    bureau_terminal: str
    facility_terminal: str


def cell(when: dt.datetime) -> str:
    return when.isoformat(timespec="minutes")


def cells(start: dt.datetime, minutes: int) -> list[str]:
    return [cell(start + dt.timedelta(minutes=m)) for m in range(0, minutes, CELL)]


def month(when: dt.datetime) -> str:
    return when.strftime("%Y-%m")


def terminal_problem(t: TerminalPlan, start: dt.datetime, minutes: int) -> str | None:
    if not is_open(t.schedule, start, minutes):
        return "closed"
    end = start + dt.timedelta(minutes=minutes)
    if any(a < end and start < b for a, b in t.maintenance):
        return "maintenance"
    if any(c in t.held for c in cells(start, minutes)):
        return "taken"
    return None


def timing_problem(start: dt.datetime, minutes: int, now: dt.datetime, rules: Rules) -> str | None:
    if start.second or start.microsecond or start.minute % CELL or minutes % CELL or minutes <= 0:
        return "invalid"
    if start < now + dt.timedelta(minutes=rules.lead_minutes):
        return "too_soon"
    if start > now + dt.timedelta(days=rules.horizon_days):
        return "too_far"
    return None


def quota_problem(quota: Quota, used: int, minutes: int, visitors: int) -> str | None:
    """``quota`` when the month is used up (an exception may be asked for); the length and the
    number of visitors are hard limits of the grade."""
    if minutes > quota.minutes:
        return "too_long"
    if not 1 <= visitors <= quota.visitors:
        return "too_many_visitors"
    if used >= quota.per_month:
        return "quota"
    return None


def problem(
    *,
    bureau: TerminalPlan,
    facility: TerminalPlan,
    inmate_held: frozenset[str],
    start: dt.datetime,
    minutes: int,
    now: dt.datetime,
    rules: Rules,
) -> str | None:
    """Why this slot cannot be booked (a code), or None; the quota is checked apart."""
    return (
        timing_problem(start, minutes, now, rules)
        or terminal_problem(bureau, start, minutes)
        or terminal_problem(facility, start, minutes)
        or ("inmate_busy" if any(c in inmate_held for c in cells(start, minutes)) else None)
    )


def propose(
    *,
    bureau: Iterable[TerminalPlan],
    facility: Iterable[TerminalPlan],
    inmate_held: frozenset[str],
    dates: Iterable[dt.date],
    minutes: int,
    now: dt.datetime,
    rules: Rules,
    limit: int = 12,
) -> list[Proposal]:
    """Free slots on the preferred dates, earliest first, at most ``limit`` a day; one time is
    offered once (on the first pair of terminals that fits both ends)."""
    bureau, facility = list(bureau), list(facility)
    out: list[Proposal] = []
    for day in sorted(set(dates)):
        today = 0
        start = dt.datetime.combine(day, dt.time())
        for step in range(0, 24 * 60 - minutes + 1, CELL):
            at = start + dt.timedelta(minutes=step)
            pair = next(
                (
                    (b, f)
                    for b in bureau
                    for f in facility
                    if problem(
                        bureau=b,
                        facility=f,
                        inmate_held=inmate_held,
                        start=at,
                        minutes=minutes,
                        now=now,
                        rules=rules,
                    )
                    is None
                ),
                None,
            )
            if pair:
                out.append(Proposal(at, minutes, pair[0].id, pair[1].id))
                today += 1
                if today >= limit:
                    break
    return out


def parse_start(value: object) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise VisitError("invalid", "start: YYYY-MM-DDTHH:MM") from None
    if when.tzinfo is not None:
        raise VisitError("invalid", "start: local time without a zone")
    return when
