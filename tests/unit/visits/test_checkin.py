"""Check-in at the counter (R6) against the real store: the presented ID number must match the
approved record's keyed digest, for a visitor of this booking, inside the check-in window, with
the pledge; every refusal has its code and writes nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.support.province import NOW, build
from visits.checkin import CheckIns
from visits.model import VisitError
from visits.reservations import Request

TUE = dt.datetime(2030, 1, 8, 9, 0)


def id_of(key: str, n: int) -> str:
    """The identity number tests/support/province.py gave visitor n of inmate ``key``."""
    return f"11010119700101{n}{len(key)}{ord(key[0])}"


@pytest.fixture
def setup(tmp_path):
    store, d, res, ids = build(tmp_path)
    bid = res.request(
        "staff:op", Request(ids["a1"], "bx-1", "pa-1", TUE, 30, (ids["a1v0"], ids["a1v1"])), NOW
    )
    res.decide("staff:off-a", bid, approve=True, reason="", supervisor=False, now=NOW)
    yield store, res, ids, bid, CheckIns(store, res)
    store.close()


def test_the_right_card_checks_the_visitor_in_once(setup):
    store, res, ids, bid, checks = setup
    at = TUE - dt.timedelta(minutes=20)
    c = checks.check_in(
        "staff:op",
        bid,
        ids["a1v0"],
        " " + id_of("a1", 0).lower() + " ",
        method="id_card",
        pledge=True,
        now=at,
    )
    assert (c.visitor, c.by, c.method, c.id_last4) == (ids["a1v0"], "staff:op", "id_card", "0297")
    assert [x.visitor for x in checks.checked(bid)] == [ids["a1v0"]]
    assert "checked_in" in [a for _, _, a, _ in res.log(bid)]
    assert id_of("a1", 0) not in str(store.rows("SELECT * FROM checkins"))  # never the number
    assert "家属 a10 (parent, …0297, id_card, staff:op)" == checks.summary(res.get(bid))
    with pytest.raises(VisitError) as err:
        checks.check_in(
            "staff:op", bid, ids["a1v0"], id_of("a1", 0), method="id_card", pledge=True, now=at
        )
    assert err.value.code == "conflict"


CASES = [
    # (what, visitor key, number, method, pledge, minutes from the start, code)
    ("another visitor's card", "a1v1", ("a1", 0), "id_card", True, -10, "identity_mismatch"),
    ("a visitor not on this booking", "a1v2", ("a1", 2), "id_card", True, -10, "not_found"),
    ("an approved visitor of another inmate", "b1v0", ("b1", 0), "id_card", True, -10, "not_found"),
    ("no pledge", "a1v0", ("a1", 0), "id_card", False, -10, "invalid"),
    ("unknown method", "a1v0", ("a1", 0), "looked_at_them", True, -10, "invalid"),
    ("too early", "a1v0", ("a1", 0), "id_card", True, -61, "too_soon"),
    ("after the end", "a1v0", ("a1", 0), "id_card", True, 30, "too_late"),
    ("not an id number", "a1v0", None, "id_card", True, -10, "invalid"),
]


@pytest.mark.parametrize("what,who,number,method,pledge,minutes,code", CASES)
def test_refusals_write_nothing(setup, what, who, number, method, pledge, minutes, code):
    store, res, ids, bid, checks = setup
    raw = id_of(*number) if number else "12-34"
    with pytest.raises(VisitError) as err:
        checks.check_in(
            "staff:op",
            bid,
            ids[who],
            raw,
            method=method,
            pledge=pledge,
            now=TUE + dt.timedelta(minutes=minutes),
        )
    assert err.value.code == code, what
    assert checks.checked(bid) == [] and store.rows("SELECT count(*) FROM checkins") == [(0,)]


def test_only_an_approved_booking_takes_check_ins(setup):
    store, res, ids, bid, checks = setup
    res.cancel("staff:off-a", bid, side="facility", reason="facility_lockdown", now=NOW)
    with pytest.raises(VisitError) as err:
        checks.check_in(
            "staff:op",
            bid,
            ids["a1v0"],
            id_of("a1", 0),
            method="id_card",
            pledge=True,
            now=TUE - dt.timedelta(minutes=5),
        )
    assert err.value.code == "conflict"
