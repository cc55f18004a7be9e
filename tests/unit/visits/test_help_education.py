"""Help-education (帮教) visits in the store: a booking names workers instead of or with family;
a worker is eligible when their organisation serves the province (no site), the inmate's
facility or the bureau of the visit; workers count towards the visitor limit; a move keeps them;
an old data directory gains the table when opened; the family contact accepts a phone."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest

from tests.support.province import NOW, build
from visits.access import family_records
from visits.directory import insert_org, insert_worker
from visits.model import VisitError, contact, login_contact
from visits.reservations import Request
from visits.store import VisitStore

TUE = dt.datetime(2030, 1, 8, 9, 0)


@pytest.fixture
def province(tmp_path):
    store, d, res, ids = build(tmp_path)
    for org, site in (
        ("prov", None),
        ("at-a", "prison-a"),
        ("at-x", "bureau-x"),
        ("at-b", "prison-b"),
    ):
        d.add(insert_org, {"id": org, "name": f"帮教 {org}", "site": site})
        ids[org] = d.add(
            insert_worker,
            {"org": org, "name": f"志愿者 {org}", "id_number": f"33010119900101{len(ids):04d}"},
        )
    yield store, d, res, ids
    store.close()


def request(ids, visitors=(), workers=(), start=TUE, **kw):
    return Request(
        ids["a1"],
        "bx-1",
        "pa-1",
        start,
        30,
        tuple(ids[v] for v in visitors),
        workers=tuple(ids[w] for w in workers),
        **kw,
    )


def code_of(fn, *args, **kw) -> str:
    with pytest.raises(VisitError) as err:
        fn(*args, **kw)
    return err.value.code


def test_eligible_workers_alone_or_with_family(province):
    _, _, res, ids = province
    bid = res.request("staff:op", request(ids, workers=("prov", "at-a")), NOW)
    b = res.get(bid)
    assert (b.visitors, b.workers) == ((), tuple(sorted((ids["prov"], ids["at-a"]))))
    assert {w[0] for w in res.workers_for(ids["a1"], "bureau-x")} == {
        ids["prov"],
        ids["at-a"],
        ids["at-x"],
    }
    res.cancel("staff:op", bid, side="bureau", reason="other", now=NOW)
    bid = res.request("staff:op", request(ids, visitors=("a1v0",), workers=("at-x",)), NOW)
    assert res.get(bid).workers == (ids["at-x"],)


def test_ineligible_or_bad_workers_are_refused_and_nothing_is_written(province):
    store, _, res, ids = province
    for bad in (
        request(ids, workers=("at-b",)),  # another prison's organisation
        request(ids, workers=("prov", "prov")),
        request(ids),  # nobody at all
        request(ids, visitors=("a1v0",), workers=("prov",), kind="privileged"),
    ):
        assert code_of(res.request, "staff:op", bad, NOW) == "invalid"
    bad = Request(ids["a1"], "bx-1", "pa-1", TUE, 30, (), workers=(999999,))
    assert code_of(res.request, "staff:op", bad, NOW) == "invalid"
    assert store.rows("SELECT count(*) FROM bookings")[0][0] == 0
    assert store.rows("SELECT count(*) FROM booking_workers")[0][0] == 0


def test_workers_count_towards_the_visitor_limit(province):
    _, _, res, ids = province
    too_many = request(ids, visitors=("a1v0", "a1v1", "a1v2"), workers=("prov",))
    assert code_of(res.request, "staff:op", too_many, NOW) == "quota"


def test_a_move_keeps_the_workers(province):
    _, _, res, ids = province
    bid = res.request("staff:op", request(ids, visitors=("a1v0",), workers=("at-a",)), NOW)
    new = res.reschedule(
        "staff:op",
        bid,
        start=TUE + dt.timedelta(days=1),
        bureau_terminal="bx-1",
        facility_terminal="pa-1",
        now=NOW,
    )
    assert res.get(new).workers == (ids["at-a"],)
    assert res.get(bid).status == "rescheduled"


def test_an_old_data_directory_gains_the_new_table(tmp_path):
    db = sqlite3.connect(tmp_path / "visits.sqlite3")
    db.execute(
        "CREATE TABLE bookings (id INTEGER PRIMARY KEY, inmate INTEGER, bureau_terminal"
        " TEXT, facility_terminal TEXT, start TEXT, minutes INTEGER, status TEXT)"
    )
    db.commit()
    db.close()
    store = VisitStore(tmp_path)
    try:
        tables = {r[0] for r in store.rows("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "booking_workers" in tables
    finally:
        store.close()


def test_contacts_phone_or_email_and_family_records(province):
    store, d, _, ids = province
    assert contact("+86 138-0013-8000") == "13800138000"
    assert contact("Family0@Example.org") == "Family0@Example.org"
    assert login_contact("FAMILY0@example.org") == "family0@example.org"
    for bad in ("12345", "x@y", "a" * 300):
        with pytest.raises(VisitError):
            contact(bad)
    with pytest.raises(VisitError):
        login_contact("")
    # e-mail matched without regard to case; one record per inmate the contact is approved for
    found = family_records(store, login_contact("FAMILY0@example.org"), "2030-01-07")
    assert {v.id for v in found} == {ids[f"{k}v0"] for k in ("a1", "a2", "a3", "b1")}
    assert family_records(store, "family0@example.org", "2032-01-01") == []  # expired
    with store.tx() as db:
        db.execute("UPDATE visitors SET relationship='lawyer' WHERE id=?", (ids["a1v0"],))
        db.execute("UPDATE inmates SET status='released' WHERE id=?", (ids["a2"],))
    found = family_records(store, "family0@example.org", "2030-01-07")
    assert {v.id for v in found} == {ids["a3v0"], ids["b1v0"]}
