"""Terminals in kiosk mode over real HTTP: a device token shows the terminal its next approved
visit; a wrong, revoked or missing token gets 401 terminal_unauthorized and nothing else."""

from __future__ import annotations

import datetime as dt

import aiohttp

from tests.integration.visits.conftest import approved_booking


async def kiosk(http, url, token):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with http.post(url + "/kiosk/state", headers=headers) as r:
        return r.status, await r.json()


async def test_a_terminal_sees_its_next_visit_with_its_own_token(province):
    p = province
    start = dt.datetime.combine(p.day(), dt.time(10, 0))
    bid = approved_booking(p, start)
    bureau = p.directory.issue_credential("bx-1", 0.0)
    facility = p.directory.issue_credential("pa-1", 0.0)
    other = p.directory.issue_credential("bx-2", 0.0)
    async with aiohttp.ClientSession() as http:
        async with http.get(p.url + "/kiosk") as r:
            assert r.status == 200 and "kiosk.js" in await r.text()
        status, body = await kiosk(http, p.url, bureau)
        assert status == 200 and body["terminal"]["id"] == "bx-1"
        nxt = body["next"]
        assert nxt["booking"] == bid and nxt["start"] == start.isoformat(timespec="minutes")
        assert nxt["inmate"] == "囚 a1" and nxt["other_site"] == "prison-a 名称"
        assert nxt["visitors"] == ["家属 a10", "家属 a11"] and body["live"] is None
        status, body = await kiosk(http, p.url, facility)
        assert body["terminal"]["kind"] == "inmate_room" and body["next"]["booking"] == bid
        assert "grade" not in str(body)  # the room never learns the custody grade
        status, body = await kiosk(http, p.url, other)
        assert status == 200 and body["next"] is None  # another room of the bureau: nothing

        for token in (None, "", "pvt_forged", "x" * 500, bureau + "x"):
            status, body = await kiosk(http, p.url, token)
            assert status == 401 and body["error"]["code"] == "terminal_unauthorized", token
        p.directory.revoke_credential("bx-1")
        status, body = await kiosk(http, p.url, bureau)
        assert status == 401 and body["error"]["code"] == "terminal_unauthorized"
        fresh = p.directory.issue_credential("pa-1", 1.0)  # a new token replaces the old one
        assert (await kiosk(http, p.url, facility))[0] == 401
        assert (await kiosk(http, p.url, fresh))[0] == 200
        async with http.post(
            p.url + "/kiosk/state", data=b"x" * 5000, headers={"Authorization": f"Bearer {fresh}"}
        ) as r:
            assert r.status == 413 and (await r.json())["error"]["code"] == "too_large"


async def test_the_inmates_room_is_told_which_help_education_workers_come(province):
    """A visit with a help-education worker (帮教): the kiosk's state names the worker and the
    organisation (never an identity number); a family-only visit names none."""
    from tests.integration.visits.test_help_education_visit import WORKER_ID, add_worker

    p = province
    worker = add_worker(p.directory)
    day = dt.datetime.combine(p.day(), dt.time(10, 0))
    approved_booking(p, day, visitors=("a1v0",), workers=(worker,))
    facility = p.directory.issue_credential("pa-1", 0.0)
    async with aiohttp.ClientSession() as http:
        status, body = await kiosk(http, p.url, facility)
        assert status == 200 and body["next"]["visitors"] == ["家属 a10"]
        assert body["next"]["workers"] == [{"name": "志愿者 陈", "org": "帮教协会"}]
        assert WORKER_ID not in str(body) and WORKER_ID[-4:] not in str(body)
        p.res.cancel(
            "staff:off-a",
            body["next"]["booking"],
            side="facility",
            reason="other",
            now=day - dt.timedelta(days=1),
        )
        approved_booking(p, day + dt.timedelta(hours=4), visitors=("a1v0",))
        status, body = await kiosk(http, p.url, facility)
        assert body["next"]["workers"] == []
