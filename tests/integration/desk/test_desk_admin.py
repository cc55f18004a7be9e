"""The admin's service points and shifts, the poster and its QR code, the pages: who may, and
what bad input gets."""

from __future__ import annotations

import re

import aiohttp

from server import CONSULT
from signaling.staff import ACCOUNTS
from tests.integration.desk.helpers import PASSWORD, Lawyer


def _form(html: str) -> str:
    return re.search(r"name='csrf' value='([^']+)'", html).group(1)


async def _login(running, username):
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(running.url + "/login") as r:
        csrf = _form(await r.text())
    async with http.post(
        running.url + "/login",
        data={"csrf": csrf, "username": username, "password": PASSWORD},
        allow_redirects=False,
    ) as r:
        assert r.status == 303
    return http


async def test_admin_sets_up_points_and_shifts_others_cannot(running):
    accounts = running.app[ACCOUNTS]
    accounts.add("boss", "管理员", ["admin"], PASSWORD)
    accounts.add("li", "李律师", ["duty_lawyer"], PASSWORD)
    accounts.add("wang", "王调解员", ["mediator"], PASSWORD)
    store = running.app[CONSULT].store
    admin = await _login(running, "boss")
    try:
        async with admin.get(running.url + "/desk") as r:
            html = await r.text()
            assert r.status == 200 and "管理 Administration" in html
        csrf = _form(html)
        point = {"csrf": csrf, "id": "hall-1", "name": "大厅 Hall", "hours": "1-5 09:00-17:00"}
        for bad in ({"id": "Hall 1"}, {"hours": "9 to 5"}, {"name": ""}):
            async with admin.post(running.url + "/desk/admin/points", data=point | bad) as r:
                assert r.status == 400 and "invalid" in await r.text()
        async with admin.post(running.url + "/desk/admin/points", data=point | {"csrf": "x"}) as r:
            assert r.status == 403  # CSRF
        async with admin.post(running.url + "/desk/admin/points", data=point) as r:
            assert r.status == 200 and [p.id for p in store.points()] == ["hall-1"]
        shift = {
            "csrf": csrf,
            "lawyer": "li",
            "point": "hall-1",
            "date": "2026-12-01",
            "start": "09:00",
            "end": "17:00",
        }
        for bad, code in [
            ({"lawyer": "wang"}, "invalid"),
            ({"point": "nowhere"}, "not_found"),
            ({"date": "tomorrow"}, "invalid"),
            ({"end": "08:00"}, "invalid"),
        ]:
            async with admin.post(running.url + "/desk/admin/shifts", data=shift | bad) as r:
                assert r.status == 400 and code in await r.text(), bad
        async with admin.post(running.url + "/desk/admin/shifts", data=shift) as r:
            assert r.status == 200
        [s] = store.shifts()
        assert s.lawyer == "li" and s.end - s.start == 8 * 3600
        async with admin.post(
            running.url + f"/desk/admin/shifts/{s.id}/delete", data={"csrf": csrf}
        ) as r:
            assert r.status == 200 and store.shifts() == []
    finally:
        await admin.close()

    lawyer = await _login(running, "li")
    try:
        async with lawyer.get(running.url + "/console", allow_redirects=False) as r:
            assert r.headers["Location"] == "/desk"  # a duty lawyer's console is the desk
        async with lawyer.get(running.url + "/desk") as r:
            html = await r.text()
            assert "管理 Administration" not in html and "/desk/points/hall-1/poster" in html
        async with lawyer.post(
            running.url + "/desk/admin/points", data=point | {"csrf": _form(html)}
        ) as r:
            assert r.status == 403  # only an admin
        async with lawyer.get(running.url + "/desk/points/hall-1/poster") as r:
            poster = await r.text()
            assert r.status == 200 and f"{running.url}/consult/hall-1" in poster
            assert "1-5 09:00-17:00" in poster and "Scan the code" in poster
        async with lawyer.get(running.url + "/desk/points/hall-1/qr.svg") as r:
            assert r.status == 200 and r.content_type == "image/svg+xml"
        async with lawyer.get(running.url + "/desk/points/nowhere/poster") as r:
            assert r.status == 404
    finally:
        await lawyer.close()

    mediator = await Lawyer(running, "wang").login_as_other()
    try:
        async with mediator.http.get(running.url + "/desk/points/hall-1/poster") as r:
            assert r.status == 403
    finally:
        await mediator.close()
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(running.url + "/desk", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/login"
        async with anonymous.get(running.url + "/consult") as r:
            assert r.status == 200 and "/consult/hall-1" in await r.text()
        async with anonymous.get(running.url + "/consult/hall-1") as r:
            assert r.status == 200 and "consult.js" in await r.text()
        async with anonymous.get(running.url + "/consult/nowhere") as r:
            assert r.status == 404


async def test_hall_figures_on_metrics(running):
    from tests.integration.desk.helpers import queue_citizen, setup_desk

    setup_desk(running)
    async with aiohttp.ClientSession() as http:
        await queue_citizen(http, running, "张三", "13800138001")
        async with http.get(running.url + "/metrics") as r:
            text = await r.text()
    assert 'parley_desk_waiting{point="hall-1"} 1.0' in text
    assert 'parley_desk_lawyers_on_shift{status="away"} 1.0' in text
    assert "parley_desk_today_calls 1.0" in text
