"""The family page's session on a simulated clock, over real HTTP (only the family routes on a
loopback server): the token works until its 30 minutes are over, then ``unauthorized``; a code
is valid 10 minutes; a relative whose approval lapses during the session gets ``not_approved``."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from signaling.visits_console import VisitsConsole
from signaling.visits_family import SESSION_TTL, FamilyPages
from tests.support.province import build
from visits.booking import Rules


class Outbox:
    """A notifier that keeps what it was given (the interface of signaling/otp.py)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    async def send(self, to: str, subject: str, text: str) -> None:
        self.sent.append((to, subject, text))


@pytest.fixture
async def family(tmp_path):
    store, _, _, ids = build(tmp_path)
    console = VisitsConsole(store, rules=Rules(), notifier=None, timezone="Asia/Shanghai")
    clock = [1_900_000_000.0]
    outbox = Outbox()
    pages = FamilyPages(console, outbox, clock=lambda: clock[0])
    app = web.Application()
    app.add_routes(pages.routes())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/family/api", clock, outbox, pages, store, ids
    await runner.cleanup()
    store.close()


async def _code(http, api, outbox, pages, contact) -> str:
    async with http.post(api + "/code", json={"contact": contact}) as r:
        assert r.status == 200
    for task in list(pages._sends):
        await task
    return outbox.sent[-1][2].split("是 ")[1][:6]


async def test_session_and_code_lifetimes_and_a_lapsed_approval(family):
    api, clock, outbox, pages, store, ids = family
    contact = "family0@example.org"  # on the records of a1v0, a2v0, a3v0 and b1v0
    async with aiohttp.ClientSession() as http:
        code = await _code(http, api, outbox, pages, contact)
        clock[0] += 601  # the code has expired
        async with http.post(api + "/login", json={"contact": contact, "code": code}) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (400, "no_code")
        code = await _code(http, api, outbox, pages, "FAMILY0@example.org")
        async with http.post(api + "/login", json={"contact": contact, "code": code}) as r:
            assert r.status == 200
            headers = {"Authorization": "Bearer " + (await r.json())["token"]}
        clock[0] += SESSION_TTL - 1
        async with http.get(api + "/me", headers=headers) as r:
            assert r.status == 200 and len((await r.json())["records"]) == 4
        # the approvals lapse during the session: the token alone is worth nothing
        with store.tx() as db:
            db.execute("UPDATE visitors SET expires='2000-01-01' WHERE contact=?", (contact,))
        async with http.get(api + "/me", headers=headers) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (403, "not_approved")
        clock[0] += 2
        async with http.get(api + "/me", headers=headers) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (401, "unauthorized")
