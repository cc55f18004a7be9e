"""The relatives' own page on a phone (390×844) in headless Chromium against a real server process:
sign in with the code that reached the SMS spool, request a visit with a co-visitor, cancel it,
order a family meal and read the education record, in Chinese; nothing scrolls sideways and the
buttons a thumb needs are on screen and not covered."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest

from signaling.desk_notify import SmsSpool
from tests.e2e.conftest import TEST_TIMEOUT_S, WAIT_S
from tests.e2e.flows import PHONE, UNCOVERED, set_lang
from tests.support.province import build
from tests.support.server_proc import ServerProcess, wait_until
from visits.directory import insert_visitor
from visits.meals import Meals
from visits.records import Records

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]
ZONE = ZoneInfo("Asia/Shanghai")
NUMBER = "13800138000"


@pytest.fixture
def family(tmp_path):
    data = tmp_path / "data"
    store, directory, res, ids = build(data, "1-7 08:00-18:00")
    ids["me"] = directory.add(
        insert_visitor,
        {
            "facility": "prison-a",
            "inmate_number": "A-001",
            "name": "张家属",
            "relationship": "spouse",
            "id_number": "220101198001010001",
            "evidence": "DOC-me",
            "approved_by": "officer-a",
            "reason": "kinship checked",
            "expires": "2031-12-31",
            "contact": NUMBER,
        },
    )
    Meals(store).publish("prison-a", "饺子", "8.00", "2")
    now = dt.datetime.now(ZONE).replace(tzinfo=None, microsecond=0)
    Records(store).publish(
        "staff:off-a",
        ids["a1"],
        {"kind": "course", "period": "2030-01", "title": "职业技能培训"},
        now,
    )
    store.close()
    server = ServerProcess(data, "--no-demo").start_quiet(timeout=WAIT_S)
    yield server, data, ids
    server.stop()


def tap(page, selector: str) -> None:
    page.locator(selector).first.scroll_into_view_if_needed()
    assert page.evaluate(UNCOVERED, selector) == "ok", selector
    page.click(selector)


def test_relative_books_cancels_orders_and_reads_on_a_phone(family, launch, new_page):
    server, data, ids = family
    page = new_page(launch())
    page.set_viewport_size(PHONE)
    page.on("dialog", lambda d: d.accept())
    page.goto(server.url + "/family")
    set_lang(page, "zh")
    page.fill("#contact", NUMBER)
    tap(page, "#send-code")
    page.wait_for_selector("#notice:not([hidden])")
    spool = SmsSpool(data / "sms-outbox")
    messages = wait_until(spool.messages, WAIT_S)
    code = re.search(r"\b(\d{6})\b", messages[-1][2]).group(1)
    page.fill("#code", code)
    tap(page, "#login")
    page.wait_for_selector("#s-home:not([hidden])")
    assert "囚 a1" in page.inner_text("#record")

    # a visit three days ahead, with one co-visitor
    day = (dt.datetime.now(ZONE).date() + dt.timedelta(days=3)).isoformat()
    page.fill("#date1", day)
    page.check(f"#co input[value='{ids['a1v1']}']")
    tap(page, "#find")
    page.wait_for_selector("#slots .slot")
    tap(page, "#slots .slot")
    page.wait_for_selector("#bookings [data-status='requested']")
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= PHONE["width"]
    tap(page, "#bookings li button")  # 取消 Cancel (the dialog is accepted)
    page.wait_for_selector("#bookings [data-status='cancelled']")

    tap(page, "[data-tab='t-meals']")
    page.fill("#menu input", "1")
    tap(page, "#order")
    page.wait_for_selector("#orders [data-order]")
    assert "饺子 × 1" in page.inner_text("#orders")

    tap(page, "[data-tab='t-record']")
    tap(page, "#open-record")
    page.wait_for_selector("#entries li strong")
    assert "职业技能培训" in page.inner_text("#entries")
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= PHONE["width"]
