"""The visit's countdown (R17) on both kiosks, in Chromium, with the server's test clock.

A visit lasts whole 15-minute cells, so the server runs with ``PARLEY_TEST_CLOCK=1`` and the
prison's supervisor moves the session clock forward (``POST /visits/test/clock``,
signaling/visits_clock.py); the system tick, the rules and the pages then do what they do in a
real visit. Both kiosks show the warning at 5 and at 1 minute left; at zero the visit ends on both
with "time over" and the ledger records the automatic end. On the way, the family's terminal loses
its connection while the clock moves two minutes: the remaining time after it is back is what it
was when it left (outage time is not consumed, within the grace).

Also here, as the kiosk shows it before a visit: the inmate's room names the help-education
workers (帮教) who come, with their organisation.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from playwright.sync_api import expect

from rooms.ledger import SqliteLedgerStore
from tests.e2e.conftest import TEST_TIMEOUT_S, WAIT_S
from tests.e2e.test_visit_kiosk import ZONE, approved_visit_now, kiosk, staff_login
from tests.support.province import build
from tests.support.server_proc import ServerProcess, add_staff
from visits.directory import insert_org, insert_worker
from visits.reservations import Request

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]

IN_VISIT = "() => window.parleyKiosk.view && window.parleyKiosk.view.space === 'visit'"
CLOCK = "() => window.parleyKiosk.view.session.clock"


@pytest.fixture
def visit(tmp_path):
    """As tests/e2e/test_visit_kiosk.py's visit, on a server with the test clock."""
    data = tmp_path / "data"
    tokens = approved_visit_now(data)
    add_staff(data, "sup-a", "赵主管", "officer")  # a supervisor at prison-a (the grant)
    server = ServerProcess(data, "--no-demo", env={"PARLEY_TEST_CLOCK": "1"})
    server.start_quiet(timeout=WAIT_S)
    yield server, tokens, data
    server.stop()


def move(page, **body) -> dict:
    """The supervisor's page moves the server's test clock."""
    answer = page.evaluate(
        """async (body) => {
             body.csrf = document.querySelector("input[name=csrf]").value;
             const r = await fetch("/visits/test/clock", {method: "POST",
               headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
             return await r.json(); }""",
        body,
    )
    assert answer["ok"], answer
    return answer


def shown_seconds(page) -> int:
    minutes, seconds = page.text_content("#k-remaining").split(":")
    return int(minutes) * 60 + int(seconds)


def warned(page, minutes: int) -> None:
    banner = page.locator("#k-time-warning")
    expect(banner).to_have_text(f"会见还剩 {minutes} 分钟", timeout=WAIT_S * 1000)
    expect(banner).to_be_in_viewport()
    assert shown_seconds(page) <= minutes * 60


def test_countdown_warnings_outage_and_the_end_at_zero(visit, launch, new_page):
    server, tokens, data = visit
    family, inmate = new_page(launch(440)), new_page(launch(1000))
    kiosk(family, server.url, tokens["bx-1"])
    kiosk(inmate, server.url, tokens["pa-1"])
    for page in (family, inmate):
        page.wait_for_function(IN_VISIT)
        page.wait_for_function(CLOCK + ".running")
    session = family.evaluate("() => window.parleyKiosk.session")
    supervisor = new_page(launch())
    staff_login(supervisor, server.url, "sup-a")

    move(supervisor, session=session, remaining=300)
    for page in (family, inmate):
        warned(page, 5)

    # the family's terminal drops out; the clock moves two minutes meanwhile
    family.evaluate(
        "() => { const s = window.parleyKiosk.socket; s.io.reconnection(false); s.io.engine.close(); }"
    )
    inmate.wait_for_function(CLOCK + ".running === false")
    expect(inmate.locator("#k-status")).to_have_text("连接中断，计时已暂停")
    left = inmate.evaluate(CLOCK + ".remaining")
    move(supervisor, advance=120)
    family.evaluate(
        "() => { const s = window.parleyKiosk.socket; s.io.reconnection(true); s.connect(); }"
    )
    back = time.monotonic()
    for page in (family, inmate):
        page.wait_for_function(CLOCK + ".running")
    since = time.monotonic() - back
    for page in (family, inmate):
        # what was left when it dropped, less the real seconds since (not the two minutes)
        assert left - since - 3 <= page.evaluate(CLOCK + ".remaining") <= left
        assert left - since - 4 <= shown_seconds(page) <= left + 1

    move(supervisor, session=session, remaining=60)
    for page in (family, inmate):
        warned(page, 1)

    move(supervisor, session=session, remaining=0)
    for page in (family, inmate):
        expect(page.locator("#k-end")).to_be_visible(timeout=WAIT_S * 1000)
        expect(page.locator("#k-end-reason")).to_have_text("会见时间已到。")
        expect(page.locator("#k-end-reason")).to_be_in_viewport()

    ledger = SqliteLedgerStore(data / "ledger.sqlite3")
    try:
        events = ledger.read(session)
    finally:
        ledger.close()
    system = [(e.type, e.data) for e in events if e.actor == "system"]
    assert ("visit.time_warning", {"remaining": 300}) in system
    assert ("visit.time_warning", {"remaining": 60}) in system
    ended = [(e.actor, e.data["reason"]) for e in events if e.type == "session.ended"]
    assert ended == [("system", "time_up")]  # (the recorder seals its last segment after it)
    lost = [e for e in events if e.type == "participant.disconnected"]
    assert [e.data["reason"] for e in lost] == ["transport_lost"]


def test_the_inmates_room_names_the_help_education_workers_who_come(tmp_path, launch, new_page):
    data = tmp_path / "data"
    store, directory, res, ids = build(data, "1-7 00:00-24:00")
    directory.add(insert_org, {"id": "help-a", "name": "帮教协会", "site": "prison-a"})
    worker = directory.add(
        insert_worker, {"org": "help-a", "name": "志愿者 陈", "id_number": "330101199001010011"}
    )
    tomorrow = dt.datetime.now(ZONE).replace(tzinfo=None) + dt.timedelta(days=1)
    start = dt.datetime.combine(tomorrow.date(), dt.time(10, 0))
    before = start - dt.timedelta(days=2)
    request = Request(ids["a1"], "bx-1", "pa-1", start, 30, (ids["a1v0"],), workers=(worker,))
    bid = res.request("staff:op", request, before)
    res.decide("staff:off-a", bid, approve=True, reason="", supervisor=False, now=before)
    token = directory.issue_credential("pa-1", 0.0)
    store.close()
    server = ServerProcess(data, "--no-demo").start_quiet(timeout=WAIT_S)
    try:
        page = new_page(launch())
        page.goto(f"{server.url}/kiosk#{token}")
        lines = page.locator("#k-next p")
        expect(lines.filter(has_text="来访家属")).to_have_text("来访家属： 家属 a10")
        workers = lines.filter(has_text="帮教人员")
        expect(workers).to_have_text("帮教人员： 志愿者 陈（帮教协会）")
        expect(workers).to_be_in_viewport()
        page.click("#lang")
        expect(lines.filter(has_text="Help-education")).to_have_text(
            "Help-education workers: 志愿者 陈 (帮教协会)"
        )
    finally:
        server.stop()
