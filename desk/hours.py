"""Opening hours of a service point: open now, the next opening, a valid call-back time (pure).

The weekly line is the one visitation terminals use (``1-5 09:00-12:00 14:00-17:00``), parsed by
``visits.hours``; times are the deployment's wall clock.
"""

from __future__ import annotations

import datetime as dt

from desk.errors import DeskError

CALLBACK_MINUTES = 15  # a call-back takes a slot this long inside the opening hours
CALLBACK_LEAD = dt.timedelta(minutes=15)
CALLBACK_HORIZON = dt.timedelta(days=14)


def schedule(hours: str):
    from visits.hours import parse

    try:
        return parse(hours)
    except Exception as exc:  # noqa: BLE001 - visits' error type, as the desk's
        raise DeskError("invalid", str(exc)) from None


def is_open(hours: str, local: dt.datetime) -> bool:
    minute = local.hour * 60 + local.minute
    return any(a <= minute < b for a, b in schedule(hours).get(local.isoweekday(), ()))


def next_opening(hours: str, local: dt.datetime) -> dt.datetime | None:
    """The start of the next opening interval after ``local`` (within 8 days), or None."""
    sched = schedule(hours)
    day0 = local.replace(hour=0, minute=0, second=0, microsecond=0)
    for offset in range(8):
        day = day0 + dt.timedelta(days=offset)
        for start, _ in sched.get(day.isoweekday(), ()):
            at = day + dt.timedelta(minutes=start)
            if at > local:
                return at
    return None


def check_callback(hours: str, at: dt.datetime, local_now: dt.datetime) -> None:
    """A call-back time: at least 15 minutes ahead, within 14 days, inside the opening hours."""
    if at < local_now + CALLBACK_LEAD:
        raise DeskError("invalid", "at: choose a time at least 15 minutes from now")
    if at > local_now + CALLBACK_HORIZON:
        raise DeskError("invalid", "at: choose a time within the next 14 days")
    begin = at.hour * 60 + at.minute
    spans = schedule(hours).get(at.isoweekday(), ())
    if not any(a <= begin and begin + CALLBACK_MINUTES <= b for a, b in spans):
        raise DeskError("closed", "at: the desk is closed then; choose a time in the opening hours")
