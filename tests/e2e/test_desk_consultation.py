"""The duty-lawyer desk in Chromium: a citizen queues from the point's page (position 2, then
1), a lawyer on shift picks up from the desk, both hear each other's tones, the lawyer writes
the summary, the citizen sees it on the page and rates the consultation."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.request

import pytest

from desk.store import DeskStore
from signaling.desk_notify import SmsSpool
from tests.e2e.conftest import DOMINANT_FREQ, TEST_TIMEOUT_S, WAIT_S, stat
from tests.e2e.flows import join, open_case, watched
from tests.e2e.netpages import tile
from tests.support.server_proc import STAFF_PASSWORD, ServerProcess, add_staff, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]
POINT = "hall-1"
LAWYER_HZ, CITIZEN_HZ, MEDIATOR_HZ = 880, 440, 440


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req) as r:  # noqa: S310 - our own test server
        return json.loads(r.read())


def _code(data, phone: str) -> str:
    spool = SmsSpool(data / "sms-outbox")
    texts = wait_until(lambda: [t for to, _, t in spool.messages() if to == phone], WAIT_S)
    assert texts, f"no code reached {phone}"
    return re.search(r"\b(\d{6})\b", texts[-1]).group(1)


def _hears(page, sel: str, hz: int) -> None:
    """The tile's dominant tone is ``hz`` (windows of 1.5 s of audio, under the page deadline)."""
    page.wait_for_function(
        """async ({sel, hz, fn}) => { const r = await (eval(fn))({selector: sel + ' video', ms: 1500});
           return Math.abs(r.freq - hz) < 15 && r.peak > 0.02; }""",
        arg={"sel": sel, "hz": hz, "fn": DOMINANT_FREQ},
        polling=100,
    )


def _explain(server, pages) -> None:
    """On a failure: what each page had (slots, people, media counters) and the server's log."""
    for name, page in pages.items():
        print(
            name,
            page.url,
            page.evaluate(
                "() => ({me: window.parley.me, slots: window.parley.slots, joined: window.parley.joined,"
                " people: window.parley.people().map((p) => [p.id, p.role, p.space, p.connected])})"
            ),
        )
        print(
            name,
            "sent",
            stat(page, "sent"),
            "video",
            stat(page, "video"),
            "audio",
            stat(page, "audio"),
        )
    print("\n".join(server.lines[-60:]))


def _person(page, role: str) -> str:
    """The id of the person with ``role`` once this page's view shows them in its room (a
    citizen sees nobody from the waiting room; staff views carry the space)."""
    return page.wait_for_function(
        "(role) => { const p = window.parley.people().find((x) => x.role === role);"
        " return p && (p.space === undefined || p.space === 'joint') && p.id; }",
        arg=role,
    ).json_value()


@pytest.fixture
def desk_server(tmp_path):
    data = tmp_path / "data"
    add_staff(data, "li", "值班律师李 Lawyer Li", role="duty_lawyer")
    add_staff(data)  # wang, a mediator (the mediation test)
    store = DeskStore(data)
    store.add_point(POINT, "公共法律服务中心 Legal Service Hall", "1-7 00:00-24:00")
    store.add_shift("li", POINT, time.time() - 60, time.time() + 3 * 3600)
    store.close()
    server = ServerProcess(data, "--no-demo").start_quiet(timeout=WAIT_S)
    yield server, data
    server.stop()


def test_citizen_queues_lawyer_answers_summary_and_rating(desk_server, launch, new_page):
    server, data = desk_server
    api = f"{server.url}/consult/api/points/{POINT}"
    # someone is already waiting (queued through the same API the page uses)
    _post(api + "/code", {"phone": "13800138001"})
    first = _post(
        api + "/join",
        {
            "name": "先到者",
            "phone": "13800138001",
            "code": _code(data, "13800138001"),
            "topic": "debt",
            "consent_online": True,
        },
    )

    citizen = new_page(launch(CITIZEN_HZ))
    citizen.goto(f"{server.url}/consult/{POINT}")
    citizen.wait_for_selector("#s-form:not([hidden])")
    citizen.fill("#name", "张三")
    citizen.fill("#phone", "138 0013 8002")
    citizen.click("#send-code")
    citizen.wait_for_function("() => document.getElementById('code-status').textContent !== ''")
    citizen.fill("#code", _code(data, "13800138002"))
    citizen.select_option("#topic", "labour")
    citizen.check("#consent-online")
    citizen.click("#submit")
    citizen.wait_for_selector("#s-queue:not([hidden])")
    citizen.wait_for_function("() => document.getElementById('position').textContent === '2'")
    ticket_url = citizen.url
    assert "/consult/t/" in ticket_url

    lawyer_browser = launch(LAWYER_HZ)
    desk = new_page(lawyer_browser)
    desk.goto(server.url + "/login")
    desk.fill("input[name=username]", "li")
    desk.fill("input[name=password]", STAFF_PASSWORD)
    desk.click("button[type=submit]")
    desk.wait_for_url("**/desk")
    desk.click("#toggle-status")
    desk.wait_for_selector("#my-status[data-status=available]")
    desk.wait_for_selector("#queue tr[data-ticket]:nth-of-type(3)")  # header + two callers

    # the first caller is answered: the citizen moves up to 1. The first caller's page polls
    # (here: once, now), or "pick up next" would skip them as away
    mine = f"{server.url}/consult/api/tickets/{first['ticket']}"
    with urllib.request.urlopen(mine) as r:  # noqa: S310 - our own test server
        assert json.loads(r.read())["ticket"]["position"] == 1
    with desk.context.expect_page() as first_call:
        desk.click("#pickup-next")
    first_call.value.close()  # that consultation is not this test's subject
    citizen.wait_for_function("() => document.getElementById('position').textContent === '1'")
    desk.fill("#summary", "先到者的咨询小结。")
    desk.click("#end-form button[type=submit]")
    desk.wait_for_selector("#current", state="hidden")

    # now the citizen: the page goes to the call by itself, the desk opens the lawyer's
    with desk.context.expect_page() as second_call:
        desk.click("#pickup-next")
    call = second_call.value
    join(call, None, consents=False)
    citizen.wait_for_url("**/j/**")
    join(citizen, None, consents=False)
    lawyer_pid = _person(citizen, "duty_lawyer")  # the pick-up admitted the citizen
    citizen_pid = _person(call, "citizen")
    try:
        _hears(citizen, tile(citizen, lawyer_pid), LAWYER_HZ)
        _hears(call, tile(call, citizen_pid), CITIZEN_HZ)
    except Exception:
        _explain(server, {"citizen": citizen, "lawyer": call})
        raise

    summary = "劳动合同未签：可申请劳动仲裁，主张二倍工资。Apply for labour arbitration."
    desk.bring_to_front()
    desk.fill("#summary", summary)
    desk.check("#referral")
    desk.fill("#referral-note", "县法律援助中心 County legal-aid centre")
    desk.click("#end-form button[type=submit]")
    desk.wait_for_selector("#current", state="hidden")

    citizen.goto(ticket_url)
    citizen.wait_for_selector("#s-done:not([hidden])")
    assert citizen.text_content("#summary") == summary
    assert "legal-aid" in citizen.text_content("#referral-note")
    assert citizen.is_hidden("#rated")  # the thanks come after the rating
    citizen.click("#stars button[data-stars='4']")
    citizen.fill("#comment", "很有帮助 Helpful")
    citizen.click("#rating-form button[type=submit]")
    citizen.wait_for_selector("#rated:not([hidden])")
    assert citizen.is_hidden("#rating-form")
    db = sqlite3.connect(data / "desk.sqlite3")
    try:
        rows = db.execute("SELECT name, state, rating, comment FROM tickets ORDER BY id").fetchall()
    finally:
        db.close()
    assert rows == [("先到者", "done", None, ""), ("张三", "done", 4, "很有帮助 Helpful")]


def _desk(browser, new_page, server):
    """The duty lawyer li logged in at the desk, available."""
    desk = new_page(browser)
    desk.goto(server.url + "/login")
    desk.fill("input[name=username]", "li")
    desk.fill("input[name=password]", STAFF_PASSWORD)
    desk.click("button[type=submit]")
    desk.wait_for_url("**/desk")
    desk.click("#toggle-status")
    desk.wait_for_selector("#my-status[data-status=available]")
    return desk


# Known flaky inside the full suite (1 of 3 full runs on 2026-11-30: the lawyer's page never
# showed the mediator's tile in the caucus; passes alone, cause not found yet): one rerun, and
# the flakiness is on record.
@pytest.mark.flaky(reruns=1)
def test_the_mediators_call_rings_the_desk_and_puts_the_lawyer_in_the_caucus(
    desk_server, launch, new_page
):
    server, _ = desk_server
    desk = _desk(launch(LAWYER_HZ), new_page, server)
    med = watched(new_page(launch(MEDIATOR_HZ)))
    open_case(med, server, case_number="M-2026-7", title="劳动争议 Wage dispute")
    med.fill("#caucus-name", "a")
    med.click("#form-caucus button")
    med.click('#caucuses li[data-caucus="a"] button[data-action="visit"]')
    med.wait_for_function("() => window.parley.myself().space === 'caucus:a'")
    med.fill("#lawyer-name", "值班律师")
    med.fill("#lawyer-question", "对方主张合同无效，违约金条款还有效吗？")
    med.select_option("#lawyer-space", "caucus:a")
    med.click("#form-lawyer button[type=submit]")
    # the panel says the desk is ringing, with the question; no link to copy while it rings
    med.wait_for_selector("#lawyer-ring[data-state=ringing]")
    med.wait_for_function(
        "() => document.getElementById('lawyer-ring').textContent.includes('违约金条款')"
    )
    assert med.is_hidden("#lawyer-invite")

    # the desk rings with the case and the question; the lawyer picks it up, lands in the caucus
    row = '#queue tr[data-kind="mediation"]'
    desk.wait_for_function(
        "(row) => { const r = document.querySelector(row); return r && r.textContent.includes('违约金'); }",
        arg=row,
    )
    assert "M-2026-7" in desk.text_content(row)
    with desk.context.expect_page() as opened:
        desk.click(f'{row} button[data-action="pickup"]')
    call = opened.value
    join(call, None, consents=False)
    call.wait_for_function("() => window.parley.myself().space === 'caucus:a'")
    lawyer_pid = call.evaluate("() => window.parley.me")
    mediator_pid = med.evaluate("() => window.parley.me")
    _hears(call, tile(call, mediator_pid), MEDIATOR_HZ)
    _hears(med, tile(med, lawyer_pid), LAWYER_HZ)
    med.wait_for_selector("#lawyer-ring[data-state=accepted]")
    assert "值班律师李" in med.text_content("#lawyer-ring")  # who accepted, by their name
    assert med.is_hidden("#lawyer-invite")

    # the mediator releases the lawyer: the lawyer's page ends, the desk is free again
    med.click(f'#people li[data-participant="{lawyer_pid}"] button[data-action="remove"]')
    call.wait_for_selector("#screen-end:not([hidden])")
    desk.wait_for_selector("#current", state="hidden")
    desk.wait_for_selector("#my-status[data-status=available]")
