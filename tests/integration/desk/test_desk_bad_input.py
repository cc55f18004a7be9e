"""Bad input and the wrong actor, on every desk route: each answers a clear code, changes
nothing, and the citizen's and the lawyer's routes cannot be used by the other."""

from __future__ import annotations

import time

import aiohttp
import pytest

from server import CONSULT
from signaling.staff import ACCOUNTS
from tests.integration.desk.helpers import (
    PASSWORD,
    POINT,
    Lawyer,
    call,
    last_code,
    queue_citizen,
    setup_desk,
    ticket,
)

API = "/consult/api/points/" + POINT


def good(code="000000", **kw):
    return {
        "name": "王五",
        "phone": "13800138009",
        "code": code,
        "topic": "family",
        "consent_online": True,
    } | kw


@pytest.mark.parametrize(
    "payload,code",
    [
        ({"phone": "12345"}, "invalid"),
        ({"phone": "13800138000", "extra": 1}, "invalid"),
        ({"phone": 13800138000}, "invalid"),
        ({}, "invalid"),
        ([], "invalid"),
    ],
)
async def test_code_request_refusals(running, payload, code):
    setup_desk(running)
    async with aiohttp.ClientSession() as http:
        status, data = await call(http, "POST", running.url + API + "/code", payload)
        assert status == 400 and data["error"]["code"] == code


async def test_join_refusals_and_what_they_say(running):
    setup_desk(running)
    async with aiohttp.ClientSession() as http:
        url = running.url + API + "/join"
        cases = [
            (good(code="12345"), 400, "invalid"),  # five digits
            (good(topic="tax"), 400, "invalid"),
            (good(name=""), 400, "invalid"),
            (good(name="x" * 81), 400, "invalid"),
            (good(consent_online="yes"), 400, "invalid"),
            (good(lang="fr"), 400, "invalid"),
            (good(unknown=True), 400, "invalid"),
            (good(), 400, "no_code"),  # an unverified number cannot join
            (good(consent_online=False), 400, "consent_required"),
            (good(phone="911"), 400, "invalid"),
        ]
        for payload, status, code in cases:
            got, data = await call(http, "POST", url, payload)
            assert (got, data["error"]["code"]) == (status, code), payload
        async with http.post(url, data="not json", headers={"Content-Type": "text/plain"}) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "invalid"
        async with http.post(
            url, data=b"{" * 20000, headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 400
        status, data = await call(
            http, "POST", running.url + "/consult/api/points/nowhere/join", good()
        )
        assert status == 404 and data["error"]["code"] == "not_found"
        assert running.app[CONSULT].store.live() == []


async def test_wrong_code_locks_and_floods_are_throttled(running):
    setup_desk(running)
    async with aiohttp.ClientSession() as http:
        await call(http, "POST", running.url + API + "/code", {"phone": "13800138009"})
        right = last_code(running, "13800138009")
        wrong = "111111" if right != "111111" else "222222"
        codes = []
        for _ in range(5):
            _, data = await call(http, "POST", running.url + API + "/join", good(code=wrong))
            codes.append(data["error"]["code"])
        assert codes == ["wrong_code"] * 4 + ["locked"]
        _, data = await call(http, "POST", running.url + API + "/join", good(code=right))
        assert data["error"]["code"] in ("no_code", "throttled")  # locked out either way
        # sending codes to one number is limited
        answers = []
        for _ in range(4):
            status, data = await call(
                http, "POST", running.url + API + "/code", {"phone": "13800138010"}
            )
            answers.append(status)
        assert answers == [200, 200, 200, 429]


async def test_closed_without_a_lawyer_on_shift_then_a_callback(running):
    setup_desk(running, on_shift=())
    async with aiohttp.ClientSession() as http:
        status, info = await call(http, "GET", running.url + API)
        assert status == 200 and info["point"]["on_duty"] == 0
        await call(http, "POST", running.url + API + "/code", {"phone": "13800138009"})
        status, data = await call(
            http, "POST", running.url + API + "/join", good(code=last_code(running, "13800138009"))
        )
        assert status == 409 and data["error"]["code"] == "closed"
        desk = running.app[CONSULT]
        tomorrow = desk.local(time.time() + 86400).replace(
            hour=10, minute=0, second=0, microsecond=0
        )
        await call(http, "POST", running.url + API + "/code", {"phone": "13800138009"})
        code = last_code(running, "13800138009")
        status, data = await call(
            http, "POST", running.url + API + "/callback", good(code=code, at="yesterday")
        )
        assert status == 400 and data["error"]["code"] == "invalid"
        status, data = await call(
            http,
            "POST",
            running.url + API + "/callback",
            good(code=code, at=tomorrow.isoformat(timespec="minutes")),
        )
        assert status == 200, data
        t = await ticket(http, running, data["ticket"])
        assert t["state"] == "callback" and t["callback_at"].endswith("10:00")


async def test_lawyer_routes_need_the_role_the_csrf_token_and_valid_bodies(running):
    setup_desk(running)
    running.app[ACCOUNTS].add("wang", "王调解员", ["mediator"], PASSWORD)
    async with aiohttp.ClientSession() as http:
        secret = await queue_citizen(http, running, "张三", "13800138001")
        status, data = await call(http, "GET", running.url + "/desk/api/state")
        assert status == 403 and data["error"]["code"] == "forbidden"  # not logged in
        status, data = await call(http, "POST", running.url + "/desk/api/pickup", {})
        assert status == 403
        # the citizen's secret is no staff credential
        status, _ = await call(
            http, "POST", running.url + "/desk/api/pickup", {}, {"X-CSRF-Token": secret}
        )
        assert status == 403
        status, data = await call(http, "GET", f"{running.url}/consult/api/tickets/not-a-ticket-xx")
        assert status == 404
    mediator = await Lawyer(running, "wang").login_as_other()
    li = await Lawyer(running, "li").login()
    try:
        status, data = await mediator.get()
        assert status == 403 and data["error"]["code"] == "forbidden"  # a mediator is no lawyer
        status, data = await li.post("pickup", {}, csrf=False)
        assert status == 403 and data["error"]["code"] == "csrf"
        for what, payload in [
            ("status", {"status": "busy"}),  # busy is the desk's to set
            ("status", {"status": "available", "x": 1}),
            ("pickup", {"ticket": "1"}),
            ("pickup", {"ticket": 0}),
            ("end", {"ticket": 1}),
            ("end", {"ticket": 1, "summary": " "}),
            ("end", {"ticket": 1, "summary": "x" * 4001}),
            ("history", {}),
        ]:
            status, data = await li.post(what, payload)
            assert status == 400 and data["error"]["code"] == "invalid", (what, payload)
        status, data = await li.post("pickup", {"ticket": 999})
        assert status == 404
        status, data = await li.post("end", {"ticket": 1, "summary": "not picked up"})
        assert status == 403 and data["error"]["code"] == "forbidden"
        status, data = await li.post("history", {"ticket": 1})
        assert status == 200 and data["history"] == []  # waiting at li's point: li may read
        assert running.app[CONSULT].store.log_rows(1)[-1][3] == "history_read"  # and it is logged
    finally:
        await mediator.close()
        await li.close()
