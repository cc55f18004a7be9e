"""The relatives' own page over real HTTP: a one-time code to the phone on the approved record (the
SMS spool in the data directory), then booking, cancelling, moving, a meal order and the record,
each checked against the records of that phone; bad input, strangers and lawyers are refused
with their codes and change nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import aiohttp
import pytest

from server import CONFIG
from signaling.desk_notify import SmsSpool
from tests.integration.visits.conftest import approved_booking, staff_session
from visits.directory import insert_visitor
from visits.meals import Meals
from visits.records import Records

PHONE = "13800138000"
API = "/family/api"


def add_relative(p, key: str, inmate_number: str, facility: str, n: int, **kw) -> None:
    row = {
        "facility": facility,
        "inmate_number": inmate_number,
        "name": f"亲属 {key}",
        "relationship": "spouse",
        "id_number": f"22010119800101{n:04d}",
        "evidence": f"DOC-{key}",
        "approved_by": "officer-a",
        "reason": "kinship checked",
        "expires": "2031-12-31",
        "contact": PHONE,
        **kw,
    }
    p.ids[key] = p.directory.add(insert_visitor, row)


def spool(p) -> SmsSpool:
    return SmsSpool(p.app[CONFIG].data_dir / "sms-outbox")


async def wait_for_messages(p, count: int) -> list:
    """The spool's messages once there are ``count`` (the code is sent off the request)."""
    async with asyncio.timeout(5):
        while len(spool(p).messages()) < count:  # noqa: ASYNC110 - a file, not an event
            await asyncio.sleep(0.02)
    return spool(p).messages()


async def call(http, p, method: str, path: str, token: str | None = None, **json):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, p.url + API + path, json=json or None, headers=headers) as r:
        return r.status, await r.json()


async def sign_in(http, p, contact: str = PHONE) -> str:
    before = len(spool(p).messages())
    status, _ = await call(http, p, "POST", "/code", contact=contact)
    assert status == 200
    to, _, text = (await wait_for_messages(p, before + 1))[-1]
    assert to == contact
    code = re.search(r"\b(\d{6})\b", text).group(1)
    status, out = await call(http, p, "POST", "/login", contact=contact, code=code)
    assert status == 200, out
    return out["token"]


@pytest.fixture
def relative(province):
    p = province
    add_relative(p, "me", "A-001", "prison-a", 1)
    add_relative(p, "me_b", "B-001", "prison-b", 2)
    add_relative(p, "lawyer", "A-002", "prison-a", 3, relationship="lawyer")
    add_relative(p, "old", "A-003", "prison-a", 4, expires="2020-01-01")
    return p


async def test_codes_go_only_to_a_registered_contact_and_sign_in_lists_its_records(relative):
    p = relative
    async with aiohttp.ClientSession() as http:
        # a number on no list, and a lawyer's number (on a list, as a lawyer only): the same
        # answer as for a relative, and no message
        with p.store.tx() as db:
            db.execute("UPDATE visitors SET contact='13700137000' WHERE id=?", (p.ids["lawyer"],))
        for number in ("13900139000", "13700137000"):
            status, out = await call(http, p, "POST", "/code", contact=number)
            assert (status, out) == (200, {"ok": True, "sent": "if_registered"})
        token = await sign_in(http, p)  # its code is sent after theirs would have been
        assert [m[0] for m in spool(p).messages()] == [PHONE]
        status, me = await call(http, p, "GET", "/me", token)
        assert status == 200
        # its own approved records only: the lawyer's and the expired record are not there
        assert sorted(r["visitor"] for r in me["records"]) == sorted([p.ids["me"], p.ids["me_b"]])
        a1 = next(r for r in me["records"] if r["visitor"] == p.ids["me"])
        assert {c["id"] for c in a1["co_visitors"]} == {p.ids[f"a1v{n}"] for n in range(4)}
        assert "grade" not in str(a1)
        # the token ends with logout
        assert (await call(http, p, "POST", "/logout", token))[0] == 200
        status, out = await call(http, p, "GET", "/me", token)
        assert (status, out["error"]["code"]) == (401, "unauthorized")


async def test_bad_input_wrong_codes_and_throttling(relative):
    p = relative
    async with aiohttp.ClientSession() as http:
        for bad in ({"contact": "not a number"}, {"contact": PHONE, "extra": 1}, {}):
            async with http.post(p.url + API + "/code", json=bad) as r:
                assert r.status == 400, bad
                assert (await r.json())["error"]["code"] == "invalid"
        async with http.post(p.url + API + "/code", data="contact=1") as r:
            assert r.status == 400
        status, out = await call(http, p, "POST", "/login", contact=PHONE, code="123456")
        assert (status, out["error"]["code"]) == (400, "no_code")
        await call(http, p, "POST", "/code", contact=PHONE)
        await wait_for_messages(p, 1)
        status, out = await call(http, p, "POST", "/login", contact=PHONE, code="12345")
        assert status == 400  # not six digits
        real = re.search(r"\b(\d{6})\b", spool(p).messages()[-1][2]).group(1)
        wrong = f"{(int(real) + 1) % 10**6:06d}"
        status, out = await call(http, p, "POST", "/login", contact=PHONE, code=wrong)
        assert (status, out["error"]["code"]) == (400, "wrong_code")
        # three codes per contact per 15 minutes
        for _ in range(2):
            assert (await call(http, p, "POST", "/code", contact=PHONE))[0] == 200
        status, out = await call(http, p, "POST", "/code", contact=PHONE)
        assert (status, out["error"]["code"]) == (429, "throttled")
        for token in (None, "x" * 43):
            status, out = await call(http, p, "GET", "/me", token)
            assert (status, out["error"]["code"]) == (401, "unauthorized")


async def test_request_cancel_and_move_a_visit(relative):
    p = relative
    async with aiohttp.ClientSession() as http:
        token = await sign_in(http, p)
        day = p.day(3).isoformat()
        status, out = await call(
            http,
            p,
            "POST",
            "/proposals",
            token,
            visitor=p.ids["me"],
            bureau="bureau-x",
            dates=[day],
        )
        assert status == 200 and out["proposals"], out
        slot = out["proposals"][0]
        for bad, code in (
            ({"visitor": p.ids["a1v0"]}, "forbidden"),  # someone else's record
            ({"co_visitors": [p.ids["b1v0"]]}, "invalid"),  # another inmate's relative
            ({"co_visitors": [p.ids["lawyer"]]}, "invalid"),
            ({"start": "tomorrow"}, "invalid"),
            ({"minutes": 7}, "invalid"),
            ({"facility_terminal": "pb-1"}, "invalid"),
        ):
            body = {"visitor": p.ids["me"], **slot, **bad}
            status, out = await call(http, p, "POST", "/bookings", token, **body)
            assert out["error"]["code"] == code, (bad, out)
        assert p.count("bookings") == 0
        status, out = await call(
            http,
            p,
            "POST",
            "/bookings",
            token,
            visitor=p.ids["me"],
            co_visitors=[p.ids["a1v1"]],
            **slot,
        )
        assert status == 200, out
        bid = out["booking"]["id"]
        assert out["booking"]["status"] == "requested" and out["booking"]["can_change"]
        assert p.res.get(bid).visitors == tuple(sorted((p.ids["me"], p.ids["a1v1"])))
        assert p.res.log(bid)[0][1] == f"family:{p.ids['me']}"
        # the notice of the request went to the phone too
        assert any("会见预约已提交" in m[2] for m in await wait_for_messages(p, 2))

        # move it: proposals without its own time, then the new request
        status, out = await call(
            http, p, "POST", f"/bookings/{bid}/proposals", token, dates=[p.day(4).isoformat()]
        )
        assert status == 200 and out["proposals"]
        new = out["proposals"][0]
        move = {k: new[k] for k in ("start", "bureau_terminal", "facility_terminal")}
        status, out = await call(http, p, "POST", f"/bookings/{bid}/reschedule", token, **move)
        assert status == 200, out
        moved = out["booking"]["id"]
        assert p.res.get(bid).status == "rescheduled" and p.res.get(moved).status == "requested"
        status, me = await call(http, p, "GET", "/me", token)
        assert {b["id"]: b["status"] for b in me["bookings"]} == {
            bid: "rescheduled",
            moved: "requested",
        }
        # cancel; once ended it cannot be cancelled again
        status, out = await call(http, p, "POST", f"/bookings/{moved}/cancel", token)
        assert (status, out["booking"]["status"]) == (200, "cancelled")
        status, out = await call(http, p, "POST", f"/bookings/{moved}/cancel", token)
        assert (status, out["error"]["code"]) == (409, "conflict")
        for path in ("/bookings/x/cancel", "/bookings/99999/cancel"):
            status, _ = await call(http, p, "POST", path, token)
            assert status in (400, 404)

        # another family's booking: forbidden, untouched
        other = approved_booking(p, dt.datetime.combine(p.day(5), dt.time(10)), inmate="a1")
        status, out = await call(http, p, "POST", f"/bookings/{other}/cancel", token)
        assert (status, out["error"]["code"]) == (403, "forbidden")
        status, _ = await call(http, p, "POST", f"/bookings/{other}/reschedule", token, **move)
        assert status == 403 and p.res.get(other).status == "approved"


async def test_cancel_after_the_cutoff_is_too_late(allday):
    p = allday
    add_relative(p, "me", "A-001", "prison-a", 1)
    start = p.slot_now() + dt.timedelta(minutes=60)  # inside the 2-hour cutoff
    bid = approved_booking(p, start, minutes=15, visitors=("me",))
    async with aiohttp.ClientSession() as http:
        token = await sign_in(http, p)
        status, me = await call(http, p, "GET", "/me", token)
        assert me["bookings"][0]["can_change"] is False
        status, out = await call(http, p, "POST", f"/bookings/{bid}/cancel", token)
        assert (status, out["error"]["code"]) == (409, "too_late")
    assert p.res.get(bid).status == "approved"


async def test_meal_order_status_and_record_read_logged(relative):
    p = relative
    meals = Meals(p.store)
    item = meals.publish("prison-a", "饺子 Dumplings", "8.00", "2")
    other = meals.publish("prison-b", "面 Noodles", "6.00", "2")
    Records(p.store).publish(
        "staff:off-a",
        p.ids["a1"],
        {"kind": "course", "period": "2030-01", "title": "职业技能"},
        p.now(),
    )
    async with aiohttp.ClientSession() as http:
        token = await sign_in(http, p)
        for bad, code in (
            ({"lines": [{"item": other, "qty": 1}]}, "invalid"),
            ({"lines": [{"item": item, "qty": 3}]}, "quota"),
            ({"lines": [{"item": item, "qty": 0}]}, "invalid"),
            ({"lines": []}, "invalid"),
            ({"visitor": p.ids["a1v0"]}, "forbidden"),
        ):
            body = {"visitor": p.ids["me"], "lines": [{"item": item, "qty": 1}], **bad}
            status, out = await call(http, p, "POST", "/meals", token, **body)
            assert out["error"]["code"] == code, (bad, out)
        assert p.count("meal_orders") == 0
        status, out = await call(
            http,
            p,
            "POST",
            "/meals",
            token,
            visitor=p.ids["me"],
            lines=[{"item": item, "qty": 2}],
        )
        assert (status, out["order"]["total"]) == (200, "16.00")
        meals.deliver("staff:off-a", "prison-a", out["order"]["id"], p.now())
        status, me = await call(http, p, "GET", "/me", token)
        assert [o["status"] for o in me["orders"]] == ["delivered"]

        status, out = await call(http, p, "POST", "/record", token, visitor=p.ids["a1v0"])
        assert status == 403 and p.count("record_reads") == 0
        status, out = await call(http, p, "POST", "/record", token, visitor=p.ids["me"])
        assert status == 200 and [e["title"] for e in out["entries"]] == ["职业技能"]
        reads = Records(p.store).reads(p.ids["a1"])
        assert [(r.read_by, r.visitor) for r in reads] == [(f"family:{p.ids['me']}", p.ids["me"])]


async def test_the_page_is_served(province):
    async with aiohttp.ClientSession() as http:
        async with http.get(province.url + "/family") as r:
            html = await r.text()
    assert r.status == 200 and "/static/family.js" in html
    assert r.headers["Cache-Control"] == "no-store"


async def test_the_facilitys_decision_reaches_the_phone(relative):
    """The console's notices go through the same notifier: a phone contact gets an SMS."""
    p = relative
    async with aiohttp.ClientSession() as http:
        token = await sign_in(http, p)
        status, out = await call(
            http,
            p,
            "POST",
            "/proposals",
            token,
            visitor=p.ids["me"],
            bureau="bureau-x",
            dates=[p.day(3).isoformat()],
        )
        slot = out["proposals"][0]
        status, out = await call(
            http, p, "POST", "/bookings", token, visitor=p.ids["me"], lang="en", **slot
        )
        bid = out["booking"]["id"]
        await wait_for_messages(p, 2)  # the code, the request
    off, csrf = await staff_session(p.url, "off-a")
    async with off:
        async with off.post(
            f"{p.url}/visits/bookings/{bid}/decide",
            data={"csrf": csrf, "decision": "approve"},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
    to, subject, text = (await wait_for_messages(p, 3))[-1]
    assert to == PHONE and "Visit approved" in subject
    assert text.index(f"Visit {bid} is approved") < text.index(f"会见预约 {bid} 已批准")  # en first
