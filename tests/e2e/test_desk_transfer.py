"""The desk's transfer in Chromium: li answers a citizen, hands them to wang from the desk;
wang's desk shows the citizen first, wang picks up, and the citizen — on the same page, in the
same call — hears wang's tone instead of li's. Wang then opens a legal-aid case with the summary
and it is on the hall's legal-aid list."""

from __future__ import annotations

import time

import pytest

from desk.store import DeskStore
from tests.e2e.conftest import TEST_TIMEOUT_S, WAIT_S
from tests.e2e.flows import join
from tests.e2e.netpages import tile
from tests.e2e.test_desk_consultation import POINT, _code, _hears, _person, _post
from tests.support.server_proc import STAFF_PASSWORD, ServerProcess, add_staff

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]
LI_HZ, WANG_HZ, CITIZEN_HZ = 880, 660, 440


@pytest.fixture
def two_lawyers(tmp_path):
    data = tmp_path / "data"
    add_staff(data, "li", "值班律师李 Lawyer Li", role="duty_lawyer")
    add_staff(data, "wang", "值班律师王 Lawyer Wang", role="duty_lawyer")
    store = DeskStore(data)
    store.add_point(POINT, "公共法律服务中心 Legal Service Hall", "1-7 00:00-24:00")
    for name in ("li", "wang"):
        store.add_shift(name, POINT, time.time() - 60, time.time() + 3 * 3600)
    store.close()
    server = ServerProcess(data, "--no-demo").start_quiet(timeout=WAIT_S)
    yield server, data
    server.stop()


def _desk(browser, new_page, server, username):
    desk = new_page(browser)
    desk.goto(server.url + "/login")
    desk.fill("input[name=username]", username)
    desk.fill("input[name=password]", STAFF_PASSWORD)
    desk.click("button[type=submit]")
    desk.wait_for_url("**/desk")
    desk.click("#toggle-status")
    desk.wait_for_selector("#my-status[data-status=available]")
    return desk


def test_a_lawyer_hands_the_citizen_to_a_colleague_in_the_same_call(two_lawyers, launch, new_page):
    server, data = two_lawyers
    api = f"{server.url}/consult/api/points/{POINT}"
    _post(api + "/code", {"phone": "13800138005"})
    joined = _post(
        api + "/join",
        {
            "name": "张三",
            "phone": "13800138005",
            "code": _code(data, "13800138005"),
            "topic": "family",
            "consent_online": True,
        },
    )
    citizen = new_page(launch(CITIZEN_HZ))
    citizen.goto(f"{server.url}/consult/t/{joined['ticket']}")
    citizen.wait_for_selector("#s-queue:not([hidden])")

    li = _desk(launch(LI_HZ), new_page, server, "li")
    wang = _desk(launch(WANG_HZ), new_page, server, "wang")
    li.wait_for_selector("#queue tr[data-kind=citizen]")
    with li.context.expect_page() as opened:
        li.click("#pickup-next")
    li_call = opened.value
    join(li_call, None, consents=False)
    citizen.wait_for_url("**/j/**")
    try:
        join(citizen, None, consents=False)
    except Exception:
        print("citizen page:", citizen.url, citizen.inner_text("body")[:800])
        print("\n".join(server.lines[-80:]))
        raise
    lawyer_pid = _person(citizen, "duty_lawyer")
    _hears(citizen, tile(citizen, lawyer_pid), LI_HZ)

    # li hands the citizen to wang; wang's desk shows them first, marked as a transfer
    li.bring_to_front()
    li.select_option("#transfer-to", "wang")
    li.click("#transfer-go")
    li.wait_for_selector("#transfer-pending")
    row = "#queue tr[data-kind=transfer]"
    wang.wait_for_selector(row)
    assert "li" in wang.text_content(row)
    with wang.context.expect_page() as opened:
        wang.click(f"{row} button[data-action=pickup]")
    wang_call = opened.value
    join(wang_call, None, consents=False)
    # the same participant, the same call: the citizen now hears wang
    _hears(citizen, tile(citizen, lawyer_pid), WANG_HZ)
    li.wait_for_selector("#current", state="hidden")
    li.wait_for_selector("#my-status[data-status=available]")

    wang.bring_to_front()
    wang.fill("#summary", "离婚财产分割：建议申请法律援助。")
    with wang.expect_navigation():
        wang.click("#to-legal-aid")
    wang.wait_for_selector("#legal-aid tr[data-case]")
    assert "离婚财产分割" in wang.text_content("#legal-aid tr[data-case]")
    wang.wait_for_selector("#current", state="hidden")
