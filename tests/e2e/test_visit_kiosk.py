"""A live visit in three headless Chromium browsers: the bureau's kiosk (440 Hz), the facility's
kiosk (1000 Hz) and the officer's console, against a real server process.

The terminals open ``/kiosk#<device token>`` (no login, no link), see their visit, join it (the
family agrees to the rules, the escorting officer starts the inmate's side) and see and hear each
other with the countdown running; the officer watches silently from the console (hears both
tones; the kiosks never show the officer), warns (the overlay on both kiosks, with the reason)
and ends the visit with a reason (both kiosks show the end at once).
"""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.conftest import DOMINANT_FREQ, TEST_TIMEOUT_S, WAIT_S, rising
from tests.support.province import build
from tests.support.server_proc import STAFF_PASSWORD, ServerProcess, add_staff
from visits.checkin import CheckIns
from visits.reservations import Request

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]
ZONE = ZoneInfo("Asia/Shanghai")  # the server's default province time zone


def visit_now() -> tuple[dt.datetime, int]:
    now = dt.datetime.now(ZONE).replace(tzinfo=None, microsecond=0)
    start = now.replace(minute=now.minute - now.minute % 15, second=0)
    midnight = dt.datetime.combine(start.date() + dt.timedelta(days=1), dt.time())
    minutes = min(30, int((midnight - start).total_seconds() // 60))
    if start + dt.timedelta(minutes=minutes) - now < dt.timedelta(minutes=6):
        pytest.skip("too close to midnight in the province's time zone to book a visit now")
    return start, minutes


def approved_visit_now(data):
    """A province whose bureau and prison rooms are open all day, one visit approved for now with
    its family checked in at the counter; returns device tokens for both rooms."""
    store, directory, res, ids = build(data, "1-7 00:00-24:00")
    start, minutes = visit_now()
    before = start - dt.timedelta(days=2)
    bid = res.request(
        "staff:op", Request(ids["a1"], "bx-1", "pa-1", start, minutes, (ids["a1v0"],)), before
    )
    res.decide("staff:off-a", bid, approve=True, reason="", supervisor=False, now=before)
    now = dt.datetime.now(ZONE).replace(tzinfo=None, microsecond=0)
    CheckIns(store, res).check_in(
        "staff:op", bid, ids["a1v0"], "110101197001010297", method="id_card", pledge=True, now=now
    )
    tokens = {t: directory.issue_credential(t, 0.0) for t in ("bx-1", "pa-1")}
    store.close()
    return tokens


@pytest.fixture
def visit(tmp_path):
    """A province whose bureau and prison rooms are open all day, one visit approved for now with
    its family checked in at the counter, device tokens for both rooms, and officer ``off-a``."""
    data = tmp_path / "data"
    tokens = approved_visit_now(data)
    add_staff(data, "off-a", "李警官", "officer")
    add_staff(data, "sup-a", "赵主管", "officer")  # supervisor at prison-a: its review queue
    server = ServerProcess(data, "--no-demo").start_quiet(timeout=WAIT_S)
    yield server, tokens
    server.stop()


def kiosk(page, url: str, token: str) -> None:
    page.goto(f"{url}/kiosk#{token}")
    page.wait_for_selector("#k-ready:not([hidden])")  # the session opened: the room may join
    assert "#" not in page.url  # the token left the address bar
    page.click("#k-enter")
    page.wait_for_selector("#k-call:not([hidden])")


def live_visit(launch, new_page, server, tokens):
    """Both kiosks joined and in the visit, each hearing the other's tone."""
    family = new_page(launch(440))
    inmate = new_page(launch(1000))
    kiosk(family, server.url, tokens["bx-1"])
    kiosk(inmate, server.url, tokens["pa-1"])
    for page in (family, inmate):
        page.wait_for_function(
            "() => window.parleyKiosk.view && window.parleyKiosk.view.space === 'visit'"
        )
        rising(page, "video")
        page.wait_for_selector("#k-rec:not([hidden])")
    return family, inmate


def hears(page, hz: float) -> bool:
    """Whether the kiosk's remote sound, over one second, is mostly the tone ``hz``."""
    got = page.evaluate(DOMINANT_FREQ, {"selector": "#k-remote", "ms": 1000})
    return got["peak"] > 0.01 and abs(got["freq"] - hz) <= 30


def wait_hearing(page, hz: float, heard: bool) -> None:
    """Measure second after second until the tone is (or is no longer) heard: the wait is the
    measurement itself, under the one deadline."""
    deadline = time.monotonic() + WAIT_S
    while hears(page, hz) != heard:
        assert time.monotonic() < deadline, f"{hz} Hz still {'not ' if heard else ''}heard"


def staff_login(page, url: str, username: str) -> None:
    page.goto(url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", STAFF_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/visits")


def test_officer_mutes_one_side_then_the_unwatched_visit_is_queued_for_review(
    visit, launch, new_page
):
    """The officer mutes the family from the live list (without watching): the inmate's kiosk no
    longer hears the family's 440 Hz while the family still hears the inmate's 1000 Hz; unmuted,
    440 Hz returns. Ended from the list, the visit nobody watched live is in the prison
    supervisor's review queue (R3), due two days after its end."""
    server, tokens = visit
    family, inmate = live_visit(launch, new_page, server, tokens)
    wait_hearing(inmate, 440, True)
    wait_hearing(family, 1000, True)

    officer = new_page(launch())
    staff_login(officer, server.url, "off-a")
    officer.goto(server.url + "/visits/sites/prison-a/live")
    mute_family = "form[action$='/mute']:has(input[name=side][value=family]) button"
    officer.click(mute_family)
    officer.wait_for_selector(f"{mute_family}:has-text('取消静音家属 Unmute the family')")
    wait_hearing(inmate, 440, False)
    assert hears(family, 1000)  # only the family's sound is cut; the inmate is still heard
    officer.click(mute_family)
    officer.wait_for_selector(f"{mute_family}:has-text('静音家属 Mute the family')")
    wait_hearing(inmate, 440, True)
    assert officer.locator("#live-list a[href$='/watch']").is_visible()  # never watched

    clicked = time.time()
    officer.select_option("form[action$='/end'] select[name=reason]", "other")
    officer.click("form[action$='/end'] button[type=submit]")
    for page in (family, inmate):
        page.wait_for_selector("#k-end:not([hidden])")
        assert page.text_content("#k-end-reason") == "民警已终止本次会见。"
    shown = time.time()

    reviewer = new_page(launch())
    staff_login(reviewer, server.url, "sup-a")
    reviewer.goto(server.url + "/review")
    row = reviewer.locator("#queue tr.due")
    deadline = time.monotonic() + WAIT_S
    while True:  # the recorder seals the last segment after the end: reload until it is listed
        reviewer.goto(server.url + "/review")
        if row.count() or time.monotonic() > deadline:
            break
    assert row.count() == 1 and row.is_visible()
    cells = row.locator("td").all_inner_texts()
    assert cells[0].startswith("prison-a/V-") and cells[4] == "待审阅 To review"

    def local(text: str) -> float:  # the page's times are the server's local time
        return time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S"))

    ended, due = local(cells[2]), local(cells[3])
    assert int(clicked) <= ended <= shown + 1
    assert dt.timedelta(seconds=due - ended) == dt.timedelta(days=2)  # R3: within two days


def test_officer_watches_warns_and_ends_a_visit_on_both_kiosks(visit, launch, new_page):
    server, tokens = visit
    family = new_page(launch(440))
    inmate = new_page(launch(1000))
    kiosk(family, server.url, tokens["bx-1"])
    kiosk(inmate, server.url, tokens["pa-1"])
    for page in (family, inmate):  # both in, checked in, recorder ready: the server admits both
        page.wait_for_function(
            "() => window.parleyKiosk.view && window.parleyKiosk.view.space === 'visit'"
        )
        rising(page, "video")
        page.wait_for_selector("#k-rec:not([hidden])")  # R1: recorded, and it says so
        page.wait_for_function(
            "() => /^[0-9]{2}:[0-9]{2}$/.test(document.querySelector('#k-remaining').textContent)"
            " && document.querySelector('#k-remaining').textContent !== '00:00'"
        )
    assert family.evaluate(DOMINANT_FREQ, {"selector": "#k-remote", "ms": 1500})["freq"] == (
        pytest.approx(1000, abs=30)
    )
    assert inmate.evaluate(DOMINANT_FREQ, {"selector": "#k-remote", "ms": 1500})["freq"] == (
        pytest.approx(440, abs=30)
    )

    officer = new_page(launch())
    officer.goto(server.url + "/login")
    officer.fill("input[name=username]", "off-a")
    officer.fill("input[name=password]", STAFF_PASSWORD)
    officer.click("button[type=submit]")
    officer.wait_for_url("**/visits")
    officer.goto(server.url + "/visits/sites/prison-a/live")
    officer.click("#live-list a[href$='/watch']")
    officer.click("#watch-start")
    officer.wait_for_function(
        "() => document.querySelectorAll('#watch-tiles figure:not([hidden])').length === 2"
    )
    rising(officer, "video", 10)
    heard = sorted(
        officer.evaluate(
            DOMINANT_FREQ, {"selector": f"#watch-tiles figure[data-slot='{i}'] video", "ms": 1500}
        )["freq"]
        for i in (0, 1)
    )
    assert heard == [pytest.approx(440, abs=30), pytest.approx(1000, abs=30)]
    for page in (family, inmate):  # the silent officer is on no kiosk
        roles = page.evaluate("() => window.parleyKiosk.view.participants.map((p) => p.role)")
        assert "officer" not in roles

    officer.select_option("form[action$='/warn?from=watch'] select[name=reason]", "third_person")
    officer.click("form[action$='/warn?from=watch'] button[type=submit]")
    for page in (family, inmate):
        page.wait_for_selector("#k-warning:not([hidden])")
        assert page.text_content("#k-warning-reason") == "画面中出现未经核验的人员。"

    officer.wait_for_selector("form[action$='/end'] select[name=reason]")
    officer.select_option("form[action$='/end'] select[name=reason]", "rule_violation")
    officer.click("form[action$='/end'] button[type=submit]")
    for page in (family, inmate):
        page.wait_for_selector("#k-end:not([hidden])")
        assert page.text_content("#k-end-reason") == "民警已终止本次会见。"
