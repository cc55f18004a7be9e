"""An interpreter on request: the citizen asks on the entry page, the desk shows it, the lawyer
sends the interpreter's link during the call, the desk admits the interpreter in the lawyer's
name (the ledger says so), and a second interpreter is refused."""

from __future__ import annotations

import aiohttp

from tests.integration.desk.helpers import (
    Lawyer,
    bot_from_path,
    call,
    queue_citizen,
    setup_desk,
    ticket,
)
from tests.integration.signaling.conftest import until


async def test_the_lawyer_brings_in_one_interpreter_and_the_ledger_names_the_admission(running):
    setup_desk(running, lawyers=("li", "wang"), on_shift=("li", "wang"))
    li = await Lawyer(running, "li").login()
    wang = await Lawyer(running, "wang").login()
    bots = []
    async with aiohttp.ClientSession() as http:
        try:
            secret = await queue_citizen(http, running, "扎西", "13800138011", interpreter="bo")
            _, state = await li.get()
            assert state["desk"]["queue"][0]["interpreter"] == "bo"
            status, data = await li.post("pickup", {})
            assert status == 200, data
            tid, sid = data["current"]["id"], data["current"]["session"]
            assert data["current"]["interpreter_state"] == "waiting"
            served = await ticket(http, running, secret)
            _, lbot = await bot_from_path(running, data["current"]["join_path"], (200, 0, 0), "L")
            bots.append(lbot)
            _, cbot = await bot_from_path(running, served["join_path"], (0, 200, 0), "C")
            bots.append(cbot)
            # not mine, no CSRF, bad bodies: refused before anything is issued
            for who, payload, csrf, want in [
                (wang, {"ticket": tid}, True, (403, "forbidden")),
                (li, {"ticket": tid}, False, (403, "csrf")),
                (li, {"ticket": "x"}, True, (400, "invalid")),
                (li, {"ticket": tid, "extra": 1}, True, (400, "invalid")),
                (li, {"ticket": 999999}, True, (404, "not_found")),
            ]:
                status, answer = await who.post("interpreter", payload, csrf=csrf)
                assert (status, answer["error"]["code"]) == want, payload
            status, invite = await li.post("interpreter", {"ticket": tid})
            assert status == 200, invite
            assert invite["language"] == "bo" and invite["qr_svg"].lstrip().startswith("<")
            path = "/j/" + invite["url"].rsplit("/j/", 1)[1]
            session = running.service.state(sid)
            pids = {p.role: p.id for p in session.participants.values()}
            _, ibot = await bot_from_path(running, path, (0, 0, 200), "I")
            bots.append(ibot)
            await until(
                lambda: (
                    running.service.state(sid).participants[pids["interpreter"]].space == "joint"
                ),
                20,
            )
            await until(lambda: cbot.frames_from(pids["interpreter"]) > 0, 30)
            events = running.service.events(sid)
            admitted = [
                e
                for e in events
                if e.type == "participant.admitted" and e.data["participant"] == pids["interpreter"]
            ]
            assert len(admitted) == 1 and admitted[0].actor == pids["duty_lawyer"]
            invited = [e for e in events if e.type == "desk.interpreter_invited"]
            assert len(invited) == 1 and invited[0].data["language"] == "bo"
            # one interpreter: the place is taken, a second invitation is refused
            status, answer = await li.post("interpreter", {"ticket": tid})
            assert (status, answer["error"]["code"]) == (409, "conflict")
            _, state = await li.get()
            assert state["desk"]["current"]["interpreter_state"] == "joined"
            roles = [p.role for p in running.service.state(sid).participants.values()]
            assert sorted(roles) == ["citizen", "duty_lawyer", "interpreter"]
        finally:
            for b in bots:
                await b.close()
            await li.close()
            await wang.close()


async def test_no_interpreter_asked_none_to_invite_and_unknown_languages_refused(running):
    setup_desk(running)
    li = await Lawyer(running, "li").login()
    async with aiohttp.ClientSession() as http:
        try:
            base = f"{running.url}/consult/api/points/hall-1"
            status, _ = await call(http, "POST", base + "/code", {"phone": "13800138012"})
            assert status == 200
            for bad in ("fr", 1, None):
                payload = {
                    "name": "王",
                    "phone": "13800138012",
                    "code": "000000",
                    "topic": "debt",
                    "consent_online": True,
                    "interpreter": bad,
                }
                status, answer = await call(http, "POST", base + "/join", payload)
                assert (status, answer["error"]["code"]) == (400, "invalid"), bad
            await queue_citizen(http, running, "王", "13800138013")
            status, data = await li.post("pickup", {})
            assert status == 200 and "interpreter_state" not in data["current"]
            status, answer = await li.post("interpreter", {"ticket": data["current"]["id"]})
            assert (status, answer["error"]["code"]) == (409, "conflict")
            sid = data["current"]["session"]
            roles = [p.role for p in running.service.state(sid).participants.values()]
            assert sorted(roles) == ["citizen", "duty_lawyer"]
        finally:
            await li.close()
