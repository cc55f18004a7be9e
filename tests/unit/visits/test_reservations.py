"""Bookings against the real SQLite store: the flow, the quota and its exceptions, cancellation,
reschedule, no-show; concurrent requests that race for one terminal time; and a generated walk
of requests and decisions after which no two active bookings share a terminal cell and every
approved visit fits the quota, the hours and the lead time."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.province import NOW, build
from visits import booking, hours
from visits.model import VisitError
from visits.reservations import Request, Reservations
from visits.store import VisitStore

TUE = dt.datetime(2030, 1, 8, 9, 0)


@pytest.fixture
def province(tmp_path):
    store, d, res, ids = build(tmp_path)
    yield store, d, res, ids
    store.close()


def req(
    ids, inmate="a1", start=TUE, visitors=(0,), bureau="bx-1", facility="pa-1", minutes=30, **kw
):
    return Request(
        ids[inmate],
        bureau,
        facility,
        start,
        minutes,
        tuple(ids[f"{inmate}v{n}"] for n in visitors),
        **kw,
    )


def code_of(fn, *args, **kw) -> str:
    with pytest.raises(VisitError) as err:
        fn(*args, **kw)
    return err.value.code


def test_request_approve_and_the_log(province):
    _, _, res, ids = province
    bid = res.request("staff:op", req(ids, contact="family0@example.org"), NOW)
    b = res.get(bid)
    assert (b.status, b.start, b.minutes, b.visitors) == ("requested", TUE, 30, (ids["a1v0"],))
    b = res.decide("staff:off-a", bid, approve=True, reason="", supervisor=False, now=NOW)
    assert b.status == "approved"
    assert [a for _, _, a, _ in res.log(bid)] == ["requested", "approved"]


@pytest.mark.parametrize(
    "change,code",
    [
        ({"start": TUE.replace(hour=13)}, "conflict"),  # closed
        ({"start": NOW.replace(hour=9)}, "conflict"),  # lead time
        ({"start": TUE.replace(minute=5)}, "invalid"),  # off the grid
        ({"minutes": 45}, "quota"),  # longer than the grade allows
        ({"visitors": (0, 1, 2, 3)}, "quota"),  # four visitors
        ({"visitors": ()}, "invalid"),
        ({"visitors": (0, 0)}, "invalid"),
        ({"facility": "pb-1"}, "invalid"),  # an inmate room of another prison
        ({"bureau": "pa-1"}, "invalid"),  # not a bureau room
        ({"bureau": "nope"}, "invalid"),
        ({"inmate": "a3"}, "quota"),  # strict grade: no visit without an exception
    ],
)
def test_bad_requests_change_nothing(province, change, code):
    store, _, res, ids = province
    assert code_of(res.request, "staff:op", req(ids, **change), NOW) == code
    assert store.rows("SELECT count(*) FROM bookings")[0][0] == 0
    assert store.rows("SELECT count(*) FROM holds")[0][0] == 0


def test_visitor_of_another_inmate_or_expired_is_refused(province):
    store, _, res, ids = province
    other = Request(ids["a1"], "bx-1", "pa-1", TUE, 30, (ids["b1v0"],))
    assert code_of(res.request, "staff:op", other, NOW) == "invalid"
    store._db.execute("UPDATE visitors SET expires='2030-01-07' WHERE id=?", (ids["a1v0"],))
    assert code_of(res.request, "staff:op", req(ids), NOW) == "invalid"


def test_inmate_status_blocks_booking(province):
    _, d, res, ids = province
    d.set_inmate_status(ids["a1"], "transferred")
    assert code_of(res.request, "staff:op", req(ids), NOW) == "conflict"


def test_same_terminal_time_twice_is_taken_and_the_inmate_cannot_be_in_two_rooms(province):
    _, _, res, ids = province
    res.request("staff:op", req(ids), NOW)
    # another inmate of the same prison, same inmate room, overlapping by 15 minutes
    assert (
        code_of(res.request, "staff:op", req(ids, "a2", TUE.replace(minute=15), bureau="bx-2"), NOW)
        == "conflict"
    )
    # a2 in the same bureau room at the same time, but through prison B's... not its facility
    assert res.request("staff:op", req(ids, "b1", TUE, facility="pb-1", bureau="bx-2"), NOW)
    # right after is free
    assert res.request("staff:op", req(ids, "a2", TUE.replace(minute=30)), NOW)


def test_monthly_quota_and_supervisor_exception(province):
    _, _, res, ids = province
    first = res.request("staff:op", req(ids), NOW)
    second = req(ids, start=TUE + dt.timedelta(days=1))
    assert code_of(res.request, "staff:op", second, NOW) == "quota"
    excepted = res.request(
        "staff:op", Request(**{**second.__dict__, "exception_reason": "father gravely ill"}), NOW
    )
    assert res.get(excepted).exception_reason == "father gravely ill"
    assert (
        code_of(
            res.decide, "staff:off-a", excepted, approve=True, reason="", supervisor=False, now=NOW
        )
        == "needs_supervisor"
    )
    b = res.decide("staff:sup-a", excepted, approve=True, reason="", supervisor=True, now=NOW)
    assert b.status == "approved" and b.exception_by == "staff:sup-a"
    # next month is a new month
    assert res.request("staff:op", req(ids, start=dt.datetime(2030, 2, 5, 9)), NOW)
    assert res.get(first).status == "requested"


def test_reject_releases_the_time_and_the_quota(province):
    _, _, res, ids = province
    bid = res.request("staff:op", req(ids), NOW)
    assert (
        code_of(res.decide, "x", bid, approve=False, reason="because", supervisor=False, now=NOW)
        == "invalid"
    )
    b = res.decide(
        "staff:off-a", bid, approve=False, reason="discipline", supervisor=False, now=NOW
    )
    assert (b.status, b.reason_code) == ("rejected", "discipline")
    assert (
        code_of(res.decide, "x", bid, approve=True, reason="", supervisor=True, now=NOW)
        == "conflict"
    )
    assert res.request("staff:op", req(ids), NOW)  # the same time and the month are free again


def test_cancel_cutoff_reschedule_and_no_show(province):
    _, _, res, ids = province
    bid = res.request("staff:op", req(ids), NOW)
    late = TUE - dt.timedelta(minutes=60)
    assert (
        code_of(res.cancel, "staff:op", bid, side="bureau", reason="family_request", now=late)
        == "too_late"
    )
    assert code_of(res.cancel, "staff:op", bid, side="bureau", reason="whim", now=NOW) == "invalid"
    assert code_of(res.cancel, "staff:op", bid, side="moon", reason="other", now=NOW) == "invalid"
    new = res.reschedule(
        "staff:op",
        bid,
        start=TUE.replace(hour=10),
        bureau_terminal="bx-2",
        facility_terminal="pa-1",
        now=NOW,
    )
    assert res.get(bid).status == "rescheduled" and res.get(new).status == "requested"
    assert res.request("staff:op", req(ids, "a2"), NOW)  # the old time is free again
    res.decide("staff:off-a", new, approve=True, reason="", supervisor=False, now=NOW)
    start = TUE.replace(hour=10)
    assert code_of(res.no_show, "staff:op", new, start + dt.timedelta(minutes=5)) == "too_soon"
    assert res.no_show("staff:op", new, start + dt.timedelta(minutes=11)).status == "no_show"
    # a no-show uses the month's visit
    assert (
        code_of(res.request, "staff:op", req(ids, start=TUE + dt.timedelta(days=2)), NOW) == "quota"
    )
    # the facility cancels a visit of someone else at any time before its end (a lockdown)
    other = res.request("staff:op", req(ids, "b1", facility="pb-1", bureau="bx-2"), NOW)
    b = res.cancel("staff:off-b", other, side="facility", reason="facility_lockdown", now=TUE)
    assert b.status == "cancelled"


def test_proposals_fit_the_quota_and_both_ends(province):
    _, _, res, ids = province
    days = [TUE.date(), (TUE + dt.timedelta(days=1)).date()]
    got = res.propose("bureau-x", ids["a1"], days, 30, NOW)
    assert got and got[0].start == TUE and got[0].facility_terminal == "pa-1"
    res.request("staff:op", req(ids), NOW)
    assert res.propose("bureau-x", ids["a1"], days, 30, NOW) == []  # the month is used
    assert res.propose("bureau-x", ids["a3"], days, 30, NOW) == []  # strict
    after = res.propose("bureau-x", ids["a2"], days, 30, NOW)
    assert after[0].start == TUE.replace(minute=30)  # prison A's one inmate room is held at 9:00
    other = res.propose("bureau-x", ids["b1"], days, 30, NOW)
    assert other[0].start == TUE and other[0].bureau_terminal == "bx-2"  # bx-1 is held


def test_many_concurrent_requests_for_one_time_get_it_once(tmp_path):
    """Twelve threads, each with its own connection to the same file, race for the same inmate
    room at the same time for different inmates: exactly one wins."""
    store, d, _, ids = build(tmp_path)
    from visits.directory import insert_inmate, insert_visitor

    people = []
    for i in range(12):
        iid = d.add(
            insert_inmate,
            {"facility": "prison-a", "number": f"R-{i}", "name": "x", "grade": "lenient"},
        )
        vid = d.add(
            insert_visitor,
            {
                "facility": "prison-a",
                "inmate_number": f"R-{i}",
                "name": "y",
                "relationship": "child",
                "id_number": f"ID{i:08d}",
                "evidence": "e",
                "approved_by": "o",
                "reason": "r",
                "expires": "2031-01-01",
            },
        )
        people.append((iid, vid))
    store.close()
    wins, codes = [], []
    barrier = threading.Barrier(len(people))

    def attempt(iid, vid, bureau):
        mine = VisitStore(tmp_path)
        try:
            barrier.wait()
            wins.append(
                Reservations(mine).request(
                    "staff:op", Request(iid, bureau, "pa-1", TUE, 30, (vid,)), NOW
                )
            )
        except VisitError as exc:
            codes.append(exc.code)
        finally:
            mine.close()

    threads = [
        threading.Thread(target=attempt, args=(iid, vid, f"bx-{1 + n % 2}"))
        for n, (iid, vid) in enumerate(people)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and codes == ["conflict"] * 11
    check = VisitStore(tmp_path)
    assert check.rows("SELECT count(*) FROM bookings")[0][0] == 1
    check.close()


actions = st.lists(
    st.tuples(
        st.sampled_from(
            ["request", "request", "request", "approve", "reject", "cancel", "exception"]
        ),
        st.sampled_from(["a1", "a2", "a3", "b1"]),
        st.integers(0, 3),  # day offset from Tuesday
        st.integers(0, 23),  # a cell among the morning and some closed ones
        st.sampled_from([15, 30]),
        st.sampled_from(["bx-1", "bx-2"]),
        st.integers(0, 20),  # which booking to decide
    ),
    max_size=25,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(walk=actions)
def test_generated_walks_keep_the_invariants(tmp_path_factory, walk):
    store, _, res, ids = build(tmp_path_factory.mktemp("walk"))
    try:
        for act, inmate, day, c, minutes, bureau, pick in walk:
            start = TUE + dt.timedelta(days=day, minutes=15 * c - 60)
            facility = "pb-1" if inmate == "b1" else "pa-1"
            existing = [r[0] for r in store.rows("SELECT id FROM bookings ORDER BY id")]
            try:
                if act in ("request", "exception"):
                    reason = "grave illness" if act == "exception" else ""
                    res.request(
                        "staff:op",
                        req(
                            ids,
                            inmate,
                            start,
                            (0,),
                            bureau,
                            facility,
                            minutes,
                            exception_reason=reason,
                        ),
                        NOW,
                    )
                elif existing:
                    bid = existing[pick % len(existing)]
                    if act == "approve":
                        res.decide(
                            "s", bid, approve=True, reason="", supervisor=pick % 2 == 0, now=NOW
                        )
                    elif act == "reject":
                        res.decide(
                            "s", bid, approve=False, reason="other", supervisor=False, now=NOW
                        )
                    else:
                        res.cancel("s", bid, side="bureau", reason="family_request", now=NOW)
            except VisitError:
                pass
        check_invariants(store, res)
    finally:
        store.close()


def check_invariants(store, res):
    active = [
        res.get(r[0])
        for r in store.rows("SELECT id FROM bookings WHERE status IN ('requested', 'approved')")
    ]
    seen: dict[tuple[str, str], int] = {}
    for b in active:
        for resource in (b.bureau_terminal, b.facility_terminal, f"inmate:{b.inmate}"):
            for cell in booking.cells(b.start, b.minutes):
                assert (resource, cell) not in seen, (
                    f"{b.id} and {seen[(resource, cell)]} share {cell}"
                )
                seen[(resource, cell)] = b.id
    per_month: dict[tuple[int, str], list] = {}
    for b in active:
        grade = store.rows("SELECT grade FROM inmates WHERE id=?", (b.inmate,))[0][0]
        quota = res.rules.quotas[grade]
        assert b.minutes <= quota.minutes and 1 <= len(b.visitors) <= quota.visitors
        for t in (b.bureau_terminal, b.facility_terminal):
            schedule = hours.parse(store.rows("SELECT hours FROM terminals WHERE id=?", (t,))[0][0])
            assert hours.is_open(schedule, b.start, b.minutes)
        assert b.start >= NOW + dt.timedelta(minutes=res.rules.lead_minutes)
        per_month.setdefault((b.inmate, booking.month(b.start)), []).append((b, quota))
    for items in per_month.values():
        quota = items[0][1]
        plain = [b for b, _ in items if not b.exception_reason]
        assert len(plain) <= quota.per_month  # beyond it only exceptions...
        for b, _ in items:
            if b.status == "approved" and b.exception_reason:
                assert b.exception_by  # ...and an approved exception names its supervisor
