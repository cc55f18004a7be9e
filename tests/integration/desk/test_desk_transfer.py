"""Transfer over HTTP with real aiortc peers: the citizen, in the call with li, is handed to
wang; wang accepts from the desk and the citizen sees wang's picture in the same session while
li's link stops working. A consultation turned into a legal-aid case lands on the hall's list.
And every refusal of the two routes, with its code."""

from __future__ import annotations

import aiohttp
import pytest

from rooms.commands import decode_command
from server import CONSULT
from tests.integration.desk.helpers import (
    Lawyer,
    bot_from_path,
    call,
    queue_citizen,
    setup_desk,
    ticket,
)
from tests.integration.signaling.conftest import until

pytestmark = pytest.mark.slow


async def test_a_lawyer_hands_the_citizen_to_a_colleague_in_the_same_call(running):
    store = setup_desk(running, lawyers=("li", "wang"), on_shift=("li", "wang"))
    li = await Lawyer(running, "li").login()
    wang = await Lawyer(running, "wang").login()
    bots = []
    async with aiohttp.ClientSession() as http:
        try:
            secret = await queue_citizen(http, running, "张三", "13800138001")
            status, data = await li.post("pickup", {})
            assert status == 200, data
            first = data["current"]
            assert [c["username"] for c in first["colleagues"]] == ["wang"]
            served = await ticket(http, running, secret)
            lsio, lbot = await bot_from_path(running, first["join_path"], (200, 40, 40), "L")
            csio, cbot = await bot_from_path(running, served["join_path"], (40, 200, 40), "C")
            bots += [lbot, cbot]
            session = running.service.state(first["session"])
            citizen = next(p for p in session.participants.values() if p.role == "citizen")
            lawyer = next(p for p in session.participants.values() if p.role == "duty_lawyer")
            await until(lambda: citizen.space == "joint", 10)

            status, data = await li.post("transfer", {"ticket": first["id"], "to": "wang"})
            assert status == 200 and data["current"]["transfer_to"] == "wang", data
            status, desk = await wang.get()
            [row] = desk["desk"]["queue"]
            assert row["transfer_from"] == "li" and row["name"] == "张三"
            status, data = await wang.post("pickup", {"ticket": row["id"]})
            assert status == 200, data
            taken = data["current"]
            assert taken["session"] == first["session"]
            # li's link was replaced: the server closes li's socket
            await until(lambda: not lsio.connected, 10)
            # as a safety hold would, if the colleague came later than the host's grace: the
            # citizen waits; the colleague's arrival has the desk admit them again
            running.service.execute(
                session.id,
                lawyer.id,
                decode_command({"type": "return_to_waiting", "participant": citizen.id}),
            )
            assert running.service.state(session.id).participants[citizen.id].space == "waiting"
            wsio, wbot = await bot_from_path(running, taken["join_path"], (40, 40, 200), "W")
            bots.append(wbot)
            await until(
                lambda: running.service.state(session.id).participants[citizen.id].space == "joint",
                10,
            )
            before = cbot.frames_from(lawyer.id)
            await until(lambda: cbot.frames_from(lawyer.id) > before + 10, 30)
            await until(lambda: wbot.frames_from(citizen.id) > 10, 30)
            assert (await ticket(http, running, secret))["state"] == "serving"
            status, desk = await li.get()
            assert desk["desk"]["current"] is None and desk["desk"]["status"] == "available"
            assert [r[3] for r in store.log_rows(first["id"])][-2:] == ["transferred", "accepted"]
            status, data = await li.post("end", {"ticket": first["id"], "summary": "x"})
            assert status == 403 and data["error"]["code"] == "forbidden"

            status, data = await wang.post(
                "legal-aid", {"ticket": first["id"], "summary": "欠薪八个月，符合援助条件"}
            )
            assert status == 200, data
            async with wang.http.get(running.url + "/desk") as r:
                page = await r.text()
            assert f"data-case='{data['case']}'" in page and "欠薪八个月" in page
            done = await ticket(http, running, secret)
            assert done["state"] == "done" and f"#{data['case']}" in done["referral_note"]
        finally:
            for b in bots:
                await b.close()
            await li.close()
            await wang.close()


async def test_transfer_and_legal_aid_refusals(running):
    setup_desk(running, lawyers=("li", "wang", "wu"), on_shift=("li", "wang"))
    li = await Lawyer(running, "li").login()
    wang = await Lawyer(running, "wang").login()
    async with aiohttp.ClientSession() as http:
        try:
            await queue_citizen(http, running, "张三", "13800138001")
            status, data = await li.post("pickup", {})
            tid = data["current"]["id"]
            for what, payload in [
                ("transfer", {"ticket": tid}),
                ("transfer", {"ticket": tid, "to": 5}),
                ("transfer", {"ticket": tid, "to": "x" * 65}),
                ("transfer", {"ticket": tid, "to": "wang", "extra": 1}),
                ("legal-aid", {"ticket": tid}),
                ("legal-aid", {"ticket": tid, "summary": "  "}),
                ("legal-aid", {"ticket": "1", "summary": "s"}),
            ]:
                status, data = await li.post(what, payload)
                assert status == 400 and data["error"]["code"] == "invalid", (what, payload)
            status, data = await li.post("transfer", {"ticket": tid, "to": "wang"}, csrf=False)
            assert status == 403 and data["error"]["code"] == "csrf"
            status, data = await call(
                http, "POST", running.url + "/desk/api/transfer", {"ticket": tid, "to": "wang"}
            )
            assert status == 403 and data["error"]["code"] == "forbidden"  # not logged in
            for who, payload, code, http_status in [
                (wang, {"ticket": tid, "to": "li"}, "forbidden", 403),  # not wang's
                (li, {"ticket": tid, "to": "wu"}, "not_on_shift", 403),
                (li, {"ticket": tid, "to": "li"}, "invalid", 400),
                (li, {"ticket": tid, "to": ""}, "conflict", 409),
                (li, {"ticket": 999, "to": "wang"}, "not_found", 404),
            ]:
                status, data = await who.post("transfer", payload)
                assert (status, data["error"]["code"]) == (http_status, code), payload
            status, data = await wang.post("legal-aid", {"ticket": tid, "summary": "s"})
            assert status == 403 and data["error"]["code"] == "forbidden"
            assert running.app[CONSULT].store.legal_aid_cases() == []
            assert running.app[CONSULT].store.ticket(tid).transfer_to is None
        finally:
            await li.close()
            await wang.close()
