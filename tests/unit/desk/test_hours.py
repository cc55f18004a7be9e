"""Opening hours: open now, the next opening, call-back times."""

from __future__ import annotations

import datetime as dt

import pytest

from desk.errors import DeskError
from desk.hours import check_callback, is_open, next_opening

HOURS = "1-5 09:00-12:00 14:00-17:00; 6 09:00-11:30"
MON = dt.datetime(2026, 11, 30)  # a Monday


@pytest.mark.parametrize(
    "at,open_",
    [("08:59", False), ("09:00", True), ("11:59", True), ("12:00", False), ("16:59", True)],
)
def test_is_open(at, open_):
    h, m = map(int, at.split(":"))
    assert is_open(HOURS, MON.replace(hour=h, minute=m)) is open_


@pytest.mark.parametrize(
    "now,expected",
    [
        (MON.replace(hour=8), MON.replace(hour=9)),
        (MON.replace(hour=12, minute=30), MON.replace(hour=14)),
        (MON.replace(hour=18), MON.replace(day=1, month=12, hour=9)),
        (MON + dt.timedelta(days=5, hours=12), MON + dt.timedelta(days=7, hours=9)),  # Sat noon
    ],
)
def test_next_opening(now, expected):
    assert next_opening(HOURS, now) == expected


@pytest.mark.parametrize(
    "at,code",
    [
        (MON.replace(hour=10), None),
        (MON.replace(hour=16, minute=45), None),
        (MON.replace(hour=16, minute=50), "closed"),  # 15 minutes do not fit before 17:00
        (MON.replace(hour=13), "closed"),
        (MON.replace(hour=8, minute=5), "invalid"),  # in the past
        (MON + dt.timedelta(days=15, hours=10), "invalid"),
        (MON + dt.timedelta(days=6, hours=10), "closed"),  # Sunday
    ],
)
def test_callback_times(at, code):
    now = MON.replace(hour=8, minute=10)
    if code is None:
        check_callback(HOURS, at, now)
        return
    with pytest.raises(DeskError) as e:
        check_callback(HOURS, at, now)
    assert e.value.code == code
