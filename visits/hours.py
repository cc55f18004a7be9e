"""Weekly opening hours of a terminal, as one line a person can read and type in a CSV cell.

``"1-5 09:00-12:00 14:00-17:00; 6 09:00-11:30"``: ISO weekdays (1 Monday .. 7 Sunday, a single
day, a range or a comma list), then one or more ``HH:MM-HH:MM`` intervals. Times are the
province's wall clock (one time zone, no daylight saving), so a visit is open or not by looking at
its local start and end only.
"""

from __future__ import annotations

import datetime as dt
import re

from visits.model import VisitError

Schedule = dict[int, tuple[tuple[int, int], ...]]  # weekday -> (start minute, end minute), sorted
_INTERVAL = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
_DAYS = re.compile(r"^[1-7](-[1-7])?(,[1-7](-[1-7])?)*$")


def _days(spec: str) -> set[int]:
    if not _DAYS.match(spec):
        raise VisitError("invalid", f"hours: {spec[:20]!r} is not a weekday list like 1-5 or 6,7")
    days: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.partition("-")
        lo, hi = int(first), int(last or first)
        if lo > hi:
            raise VisitError("invalid", f"hours: weekday range {part} runs backwards")
        days.update(range(lo, hi + 1))
    return days


def parse(text: str) -> Schedule:
    """The schedule, or ``VisitError("invalid")``; overlapping intervals on one day are refused."""
    if not isinstance(text, str) or not text.strip() or len(text) > 300:
        raise VisitError("invalid", "hours: e.g. '1-5 09:00-12:00 14:00-17:00'")
    found: dict[int, list[tuple[int, int]]] = {}
    for group in text.split(";"):
        words = group.split()
        if len(words) < 2:
            raise VisitError(
                "invalid", f"hours: {group.strip()[:30]!r} needs days and a time range"
            )
        for word in words[1:]:
            m = _INTERVAL.match(word)
            if not m:
                raise VisitError("invalid", f"hours: {word[:20]!r} is not HH:MM-HH:MM")
            start = int(m[1]) * 60 + int(m[2])
            end = int(m[3]) * 60 + int(m[4])
            if end <= start or end > 24 * 60:
                raise VisitError("invalid", f"hours: {word} ends before it starts")
            for day in _days(words[0]):
                found.setdefault(day, []).append((start, end))
    schedule: Schedule = {}
    for day, spans in found.items():
        spans.sort()
        for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False):
            if b_start < a_end:
                raise VisitError("invalid", f"hours: intervals overlap on weekday {day}")
        schedule[day] = tuple(spans)
    return schedule


def is_open(schedule: Schedule, start: dt.datetime, minutes: int) -> bool:
    """Whether ``[start, start + minutes)`` lies inside one opening interval of its day."""
    begin = start.hour * 60 + start.minute
    end = begin + minutes
    return any(a <= begin and end <= b for a, b in schedule.get(start.isoweekday(), ()))
