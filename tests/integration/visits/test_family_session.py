"""The family page's session on a simulated clock, over real HTTP (only the family routes on a
loopback server): the token works until its 30 minutes are over, then ``unauthorized``; a code
is valid 10 minutes; a relative whose approval lapses during the session gets ``not_approved``.
The same with the sign-ins on a real redis-server (as when clustered), where two nodes' pages
share them: signed in through one, served and signed out through the other; a Redis that does
not answer gives ``unavailable``, not a sign-out."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from cluster.codes import RedisCodeStore
from desk.codes import derive_key
from signaling.visits_console import VisitsConsole
from signaling.visits_family import SESSION_TTL, FamilyPages
from tests.support.procs import free_port
from tests.support.province import build
from tests.support.redisd import redis_prefix, redis_server  # noqa: F401 - fixtures
from visits.booking import Rules

SECRET = b"s" * 32


class Outbox:
    """A notifier that keeps what it was given (the interface of signaling/otp.py)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    async def send(self, to: str, subject: str, text: str) -> None:
        self.sent.append((to, subject, text))


async def serve(pages: FamilyPages) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.add_routes(pages.routes())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}/family/api"


def redis_codes(request, url: str | None = None) -> RedisCodeStore:
    url = url or request.getfixturevalue("redis_server").url
    prefix = request.getfixturevalue("redis_prefix")
    return RedisCodeStore.from_url(url, key=derive_key(SECRET, "redis-keys"), prefix=prefix)


@pytest.fixture(params=["memory", "redis"])
async def family(tmp_path, request):
    store, _, _, ids = build(tmp_path)
    console = VisitsConsole(store, rules=Rules(), notifier=None, timezone="Asia/Shanghai")
    clock = [1_900_000_000.0]
    outbox = Outbox()
    codes = redis_codes(request) if request.param == "redis" else None
    pages = FamilyPages(console, outbox, clock=lambda: clock[0], code_store=codes, secret=SECRET)
    runner, api = await serve(pages)
    yield api, clock, outbox, pages, store, ids
    await runner.cleanup()
    if codes is not None:
        codes.close()
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


async def test_two_nodes_share_the_sign_ins_on_redis(tmp_path, request):
    store, _, _, _ = build(tmp_path)
    console = VisitsConsole(store, rules=Rules(), notifier=None, timezone="Asia/Shanghai")
    outbox = Outbox()
    stores = [redis_codes(request), redis_codes(request)]
    a, b = (FamilyPages(console, outbox, code_store=c, secret=SECRET) for c in stores)
    (runner_a, api_a), (runner_b, api_b) = await serve(a), await serve(b)
    away = RedisCodeStore.from_url(f"redis://127.0.0.1:{free_port()}/0", key=b"k" * 32)
    runner_c, api_c = await serve(FamilyPages(console, outbox, code_store=away, secret=SECRET))
    try:
        contact = "family0@example.org"
        async with aiohttp.ClientSession() as http:
            code = await _code(http, api_a, outbox, a, contact)
            async with http.post(api_a + "/login", json={"contact": contact, "code": code}) as r:
                assert r.status == 200
                headers = {"Authorization": "Bearer " + (await r.json())["token"]}
            async with http.get(api_b + "/me", headers=headers) as r:
                assert r.status == 200 and len((await r.json())["records"]) == 4
            forged = {"Authorization": "Bearer " + "x" * 43}
            async with http.get(api_b + "/me", headers=forged) as r:
                assert (r.status, (await r.json())["error"]["code"]) == (401, "unauthorized")
            # a node whose Redis does not answer: unavailable, and the sign-in is not lost
            for method, path in (("GET", "/me"), ("POST", "/logout")):
                async with http.request(method, api_c + path, headers=headers) as r:
                    assert (r.status, (await r.json())["error"]["code"]) == (503, "unavailable")
            async with http.post(api_b + "/logout", headers=headers) as r:
                assert r.status == 200
            for api in (api_a, api_b):
                async with http.get(api + "/me", headers=headers) as r:
                    assert (r.status, (await r.json())["error"]["code"]) == (401, "unauthorized")
    finally:
        for runner in (runner_a, runner_b, runner_c):
            await runner.cleanup()
        for codes in (*stores, away):
            codes.close()
        store.close()
