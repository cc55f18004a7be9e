"""Opening hours and the pure booking rules: tables for the cases people name, properties for
everything a proposal promises (open at both ends, no maintenance, nothing held, lead time)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from visits import booking, hours
from visits.booking import Quota, Rules, TerminalPlan
from visits.model import VisitError

MON = dt.datetime(2030, 1, 7)  # a Monday
NOW = MON.replace(hour=8)
RULES = Rules()


@pytest.mark.parametrize(
    "text,day,spans",
    [
        ("1-5 09:00-12:00 14:00-17:00", 3, ((540, 720), (840, 1020))),
        ("6,7 08:30-11:00", 7, ((510, 660),)),
        ("1 09:00-10:00; 1 13:00-14:00", 1, ((540, 600), (780, 840))),
        ("1-7 00:00-24:00", 5, ((0, 1440),)),
    ],
)
def test_hours_parse(text, day, spans):
    assert hours.parse(text)[day] == spans


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1-5",
        "8 09:00-10:00",
        "5-1 09:00-10:00",
        "1 10:00-09:00",
        "1 9:00-10:00",
        "1 09:00-12:00 11:00-13:00",
        "mon 09:00-10:00",
        "1 24:30-25:00",
        "x" * 301,
        None,
    ],
)
def test_hours_refused(text):
    with pytest.raises(VisitError) as err:
        hours.parse(text)
    assert err.value.code == "invalid"


def test_is_open_needs_the_whole_visit_inside_one_interval():
    s = hours.parse("1 09:00-12:00 14:00-17:00")
    assert hours.is_open(s, MON.replace(hour=11, minute=30), 30)
    assert not hours.is_open(s, MON.replace(hour=11, minute=45), 30)  # runs past noon
    assert not hours.is_open(s, MON.replace(hour=8, minute=45), 30)
    assert not hours.is_open(s, MON.replace(day=8, hour=9), 30)  # Tuesday: closed


def plan(tid="t", text="1-5 09:00-12:00", maintenance=(), held=()):
    return TerminalPlan(tid, hours.parse(text), tuple(maintenance), frozenset(held))


TUE9 = MON.replace(day=8, hour=9)


@pytest.mark.parametrize(
    "start,minutes,bureau,facility,inmate,expected",
    [
        (TUE9, 30, plan(), plan(), (), None),
        (TUE9.replace(minute=10), 30, plan(), plan(), (), "invalid"),  # off the 15-minute grid
        (TUE9, 20, plan(), plan(), (), "invalid"),
        (MON.replace(hour=9), 30, plan(), plan(), (), "too_soon"),  # lead time: 24 h
        (MON + dt.timedelta(days=40, hours=9), 30, plan(), plan(), (), "too_far"),
        (TUE9.replace(hour=14), 30, plan(), plan(), (), "closed"),
        (TUE9, 30, plan(), plan(text="2 09:15-12:00"), (), "closed"),  # the facility opens later
        (
            TUE9,
            30,
            plan(maintenance=[(TUE9.replace(minute=20), TUE9.replace(hour=10))]),
            plan(),
            (),
            "maintenance",
        ),
        (TUE9, 30, plan(), plan(held=["2030-01-08T09:15"]), (), "taken"),
        (TUE9, 30, plan(), plan(), ["2030-01-08T09:00"], "inmate_busy"),
    ],
)
def test_problem_table(start, minutes, bureau, facility, inmate, expected):
    got = booking.problem(
        bureau=bureau,
        facility=facility,
        inmate_held=frozenset(inmate),
        start=start,
        minutes=minutes,
        now=NOW,
        rules=RULES,
    )
    assert got == expected


@pytest.mark.parametrize(
    "quota,used,minutes,visitors,expected",
    [
        (Quota(1, 30, 3), 0, 30, 3, None),
        (Quota(1, 30, 3), 1, 30, 1, "quota"),
        (Quota(0, 30, 3), 0, 15, 1, "quota"),  # strict: none without an exception
        (Quota(2, 30, 3), 1, 30, 2, None),
        (Quota(1, 30, 3), 0, 45, 1, "too_long"),
        (Quota(1, 30, 3), 0, 30, 4, "too_many_visitors"),
        (Quota(1, 30, 3), 0, 30, 0, "too_many_visitors"),
    ],
)
def test_quota_table(quota, used, minutes, visitors, expected):
    assert booking.quota_problem(quota, used, minutes, visitors) == expected


def test_default_quotas_follow_r5():
    q = booking.DEFAULT_QUOTAS
    assert (q["strict"].per_month, q["normal"].per_month, q["lenient"].per_month) == (0, 1, 2)
    assert all(x.minutes == 30 and x.visitors == 3 for x in q.values())


def test_rules_file(tmp_path):
    path = tmp_path / "visits-rules.json"
    assert booking.load_rules(path) == Rules()
    path.write_text(
        '{"quotas": {"strict": {"per_month": 1, "minutes": 15, "visitors": 1}}, "lead_minutes": 60}'
    )
    rules = booking.load_rules(path)
    assert rules.quotas["strict"] == Quota(1, 15, 1) and rules.lead_minutes == 60
    assert rules.quotas["normal"] == booking.DEFAULT_QUOTAS["normal"]
    for bad in (
        '{"quotas": {"vip": {"per_month": 9, "minutes": 30, "visitors": 3}}}',
        '{"lead_hours": 1}',
        "[",
        '{"quotas": {"normal": {"per_month": 1}}}',
    ):
        path.write_text(bad)
        with pytest.raises(ValueError, match="bad_config"):
            booking.load_rules(path)


cells_on_tuesday = st.sets(
    st.integers(0, 95).map(
        lambda i: booking.cell(TUE9.replace(hour=0) + dt.timedelta(minutes=15 * i))
    ),
    max_size=30,
)
windows = st.lists(
    st.tuples(st.integers(0, 95), st.integers(1, 12)).map(
        lambda t: (
            TUE9.replace(hour=0) + dt.timedelta(minutes=15 * t[0]),
            TUE9.replace(hour=0) + dt.timedelta(minutes=15 * (t[0] + t[1])),
        )
    ),
    max_size=3,
)
schedules = st.sampled_from(
    [
        "1-5 09:00-12:00 14:00-17:00",
        "2 08:00-09:00",
        "1-7 00:00-24:00",
        "2 10:15-11:00",
        "6 09:00-10:00",
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    b_hours=schedules,
    f_hours=schedules,
    b_held=cells_on_tuesday,
    f_held=cells_on_tuesday,
    i_held=cells_on_tuesday,
    b_maint=windows,
    f_maint=windows,
    minutes=st.sampled_from([15, 30]),
    lead=st.sampled_from([0, 60 * 26, 60 * 30]),
)
def test_every_proposal_fits_both_terminals_the_inmate_and_the_lead_time(
    b_hours, f_hours, b_held, f_held, i_held, b_maint, f_maint, minutes, lead
):
    rules = Rules(lead_minutes=lead)
    b = plan("b", b_hours, b_maint, b_held)
    f = plan("f", f_hours, f_maint, f_held)
    got = booking.propose(
        bureau=[b],
        facility=[f],
        inmate_held=frozenset(i_held),
        dates=[TUE9.date()],
        minutes=minutes,
        now=NOW,
        rules=rules,
        limit=200,
    )
    for p in got:
        end = p.start + dt.timedelta(minutes=minutes)
        assert p.start >= NOW + dt.timedelta(minutes=lead)
        for t in (b, f):
            assert hours.is_open(t.schedule, p.start, minutes)
            assert not any(a < end and p.start < z for a, z in t.maintenance)
            assert not set(booking.cells(p.start, minutes)) & t.held
        assert not set(booking.cells(p.start, minutes)) & i_held
    # and nothing that fits was left out
    every = [TUE9.replace(hour=0) + dt.timedelta(minutes=15 * i) for i in range(96)]
    fitting = [
        s
        for s in every
        if s + dt.timedelta(minutes=minutes) <= TUE9.replace(hour=0) + dt.timedelta(days=1)
        and booking.problem(
            bureau=b,
            facility=f,
            inmate_held=frozenset(i_held),
            start=s,
            minutes=minutes,
            now=NOW,
            rules=rules,
        )
        is None
    ]
    assert [p.start for p in got] == fitting
