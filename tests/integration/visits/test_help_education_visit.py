"""A help-education (帮教) visit with no relative: the worker is checked in at the counter against
their registration's digest (over real HTTP), and the visit goes live like a family visit —
a recorded, observable ``visitation`` session — once the worker is checked in and the recorder is
ready."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.integration.visits.conftest import csrf_of, staff_session, visit_now
from tests.integration.visits.test_live_steps import START, World
from visits.checkin import CheckIns
from visits.directory import insert_org, insert_worker
from visits.model import VisitError
from visits.reservations import Request

WORKER_ID = "330101199001010011"


def add_worker(directory, site: str | None = "prison-a") -> int:
    directory.add(insert_org, {"id": "help-a", "name": "帮教协会", "site": site})
    return directory.add(
        insert_worker, {"org": "help-a", "name": "志愿者 陈", "id_number": WORKER_ID}
    )


def test_a_workers_only_visit_goes_live_recorded_after_the_worker_checks_in(tmp_path):
    w = World(tmp_path)
    try:
        worker = add_worker(w.d)
        before = START - dt.timedelta(days=2)
        bid = w.res.request(
            "staff:op",
            Request(w.ids["a1"], "bx-1", "pa-1", START, 15, (), workers=(worker,)),
            before,
        )
        w.res.decide("staff:off-a", bid, approve=True, reason="", supervisor=False, now=before)
        w.at(START - dt.timedelta(minutes=5))
        _, session, kind, family, inmate, _ = w.live.row(booking=bid)
        state = w.service.state(session)
        assert kind == "visitation"  # recorded and observable, as a family visit
        for pid in (family, inmate):
            w.run(session, "system", type="connect", participant=pid)
        w.run(session, family, type="record_consent", topic="session_rules", given=True)
        w.run(session, "system", type="report_recorder", status="ready")
        w.at(START + dt.timedelta(minutes=1))
        assert all(p.space == "waiting" for p in state.participants.values())  # nobody checked

        checks = CheckIns(w.store, w.res)
        for who, number, code in (
            (worker, "110101197001010297", "identity_mismatch"),  # someone else's card
            (worker + 1000, WORKER_ID, "not_found"),  # not a worker of this booking
        ):
            with pytest.raises(VisitError) as err:
                checks.check_in(
                    "staff:op",
                    bid,
                    who,
                    number,
                    method="id_card",
                    pledge=True,
                    now=START,
                    worker=True,
                )
            assert err.value.code == code, who
        checks.check_in(
            "staff:op",
            bid,
            worker,
            WORKER_ID,
            method="id_card",
            pledge=True,
            now=START,
            worker=True,
        )
        assert "help_education" in checks.summary(w.res.get(bid))
        w.at(START + dt.timedelta(minutes=1, seconds=1))
        assert state.participants[family].identity_checked
        assert state.recording and all(p.space == "visit" for p in state.participants.values())
    finally:
        w.store.close()


async def test_the_counter_checks_in_a_worker(allday):
    p = allday
    worker = add_worker(p.directory, None)  # a province-wide organisation
    start, minutes = visit_now(p)
    before = start - dt.timedelta(days=2)
    bid = p.res.request(
        "staff:op",
        Request(p.ids["a1"], "bx-1", "pa-1", start, minutes, (), workers=(worker,)),
        before,
    )
    p.res.decide("staff:off-a", bid, approve=True, reason="", supervisor=False, now=before)
    op, csrf = await staff_session(p.url, "op")
    async with op:
        page = f"{p.url}/visits/bookings/{bid}/checkin"
        async with op.get(page) as r:
            html = await r.text()
        assert f"data-worker='{worker}'" in html and "志愿者 陈" in html
        form = {"csrf": csrf_of(html), "worker": str(worker), "method": "id_card", "pledge": "yes"}
        async with op.post(
            page, data={**form, "id_number": "X1234567"}, allow_redirects=False
        ) as r:
            assert r.status == 409
        async with op.post(page, data={**form, "worker": "x", "id_number": WORKER_ID}) as r:
            assert r.status == 400
        assert p.count("worker_checkins") == 0
        async with op.post(page, data={**form, "id_number": WORKER_ID}, allow_redirects=False) as r:
            assert r.status == 303
        assert p.count("worker_checkins") == 1
    off_b, csrf_b = await staff_session(p.url, "off-b")
    async with off_b:
        async with off_b.get(f"{p.url}/visits/bookings/{bid}/checkin") as r:
            assert r.status == 403


async def test_the_counter_books_a_help_education_visit(province):
    p = province
    worker = add_worker(p.directory)  # prison A's organisation
    p.directory.add(insert_org, {"id": "help-b", "name": "乙帮教", "site": "prison-b"})
    other = p.directory.add(
        insert_worker, {"org": "help-b", "name": "志愿者 乙", "id_number": "330101199001010022"}
    )
    day = p.day()
    op, csrf = await staff_session(p.url, "op")
    async with op:
        async with op.get(
            f"{p.url}/visits/sites/bureau-x/book",
            params={"facility": "prison-a", "number": "A-001", "dates": day.isoformat()},
        ) as r:
            html = await r.text()
        assert f"name='worker' value='{worker}'" in html
        assert f"name='worker' value='{other}'" not in html  # prison B's organisation
        assert "href='/family'" in html
        data = [
            ("csrf", csrf),
            ("inmate", str(p.ids["a1"])),
            ("minutes", "30"),
            ("slot", f"{day.isoformat()}T10:00|bx-1|pa-1"),
            ("lang", "zh"),
        ]
        for bad in ([("worker", str(other))], [("worker", "x")], []):
            async with op.post(
                f"{p.url}/visits/sites/bureau-x/bookings", data=data + bad, allow_redirects=False
            ) as r:
                assert r.status == 400, bad
        assert p.count("bookings") == 0
        async with op.post(
            f"{p.url}/visits/sites/bureau-x/bookings",
            data=data + [("worker", str(worker))],
            allow_redirects=False,
        ) as r:
            assert r.status == 303
    b = p.res.get(p.store.rows("SELECT id FROM bookings")[0][0])
    assert (b.visitors, b.workers, b.status) == ((), (worker,), "requested")
