"""The mediator's console across nodes (docs/scaling.md, "The console across nodes"): two real
``server.py serve --redis`` processes on one real redis-server, each with its own public URL.

Node A already serves sessions, so a mediation created through A's console is placed on the
emptier node B; A's list shows it; its console page opened on A answers 307 to the same path on
B, where the same login cookie (it names the host, not the port) opens it; the party's link
opened through A is redirected to B and aiortc peers get media both ways. A burst of creations
spreads over both nodes; a draining node gets none. Bad input: an unknown session id is 404, a
session of another mediator is refused (403) on either node, as on one node."""

from __future__ import annotations

import asyncio
import re
import secrets
import time

import aiohttp
import pytest
import redis

from bench.takeover import CONSENTS, Page, until
from tests.integration.cluster.test_accounts_cluster import login, user_add
from tests.support.redisd import redis_server  # noqa: F401 - fixture
from tests.support.server_proc import ServerProcess, cluster_node

pytestmark = pytest.mark.slow


@pytest.fixture
def nodes(tmp_path, redis_server):  # noqa: F811
    url = redis_server.url.rsplit("/", 1)[0] + "/11"  # a database of its own on the test server
    redis.Redis.from_url(url).flushdb()
    env = {
        "PARLEY_SECRET": secrets.token_hex(32),
        "PARLEY_REDIS_URL": url,
        "PARLEY_LEASE_TTL_MS": "2000",
        "PARLEY_DRAIN_SECONDS": "0",
    }
    made = []

    def node(name: str, **extra_env: str) -> ServerProcess:
        return cluster_node(tmp_path / name, name, {**env, **extra_env}, made, "--no-demo")

    for who in ("wang", "li"):
        added = user_add(tmp_path / "cli", who, url)
        assert added.returncode == 0, added.stderr
    node.redis = redis.Redis.from_url(url)
    yield node
    for proc in made:
        proc.stop()


def csrf(html: str) -> str:
    return re.search(r"name='csrf' value='([^']+)'", html).group(1)


async def create(http: aiohttp.ClientSession, url: str, title: str) -> str:
    """A mediation created through the console at ``url``: its id (from the 303)."""
    async with http.get(url + "/console") as r:
        token = csrf(await r.text())
    form = {"csrf": token, "case_number": f"C-{title}", "title": title}
    form |= {"name0": "张三", "role0": "party", "side0": "A"}
    async with http.post(url + "/console/sessions", data=form, allow_redirects=False) as r:
        assert r.status == 303, await r.text()
        return r.headers["Location"].rsplit("/", 1)[1]


def owner(r: redis.Redis, sid: str) -> str | None:
    value = r.get(f"parley:lease:{sid}")
    return value.decode() if value else None


def heartbeat(r: redis.Redis, node_id: str) -> dict | None:
    import json

    raw = r.get(f"parley:node:{node_id}")
    return json.loads(raw) if raw else None


async def wait_for(predicate, timeout: float = 15.0, what: str = ""):  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"not met: {what}"
        await asyncio.sleep(0.05)
    return value


async def test_a_console_session_placed_on_the_emptier_node_is_listed_and_followed(nodes):
    r = nodes.redis
    a = nodes("a")
    jar = aiohttp.CookieJar(unsafe=True)  # one browser: the cookie names the host 127.0.0.1
    pages: list[Page] = []
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        assert await login(http, a.url, "wang") == 303
        held = [await create(http, a.url, f"held{i}") for i in range(4)]  # alone: stay on A
        assert [owner(r, s) for s in held] == ["a"] * 4
        b = nodes("b")

        def b_emptier():  # A counts 4 sessions (0.2 of a node), B none and idle
            ha, hb = heartbeat(r, "a"), heartbeat(r, "b")
            return (
                ha
                and hb
                and ha["load"]["sessions"] == 4
                and hb["load"]["cpu"] < 0.1
                and hb["load"]["sessions"] == 0
            )

        await wait_for(b_emptier, what="B's heartbeat shows it emptier")
        sid = await create(http, a.url, "placed")
        assert owner(r, sid) == "b"
        # A's list shows it (and B's), with the columns of one node's list
        for node in (a, b):
            async with http.get(node.url + "/console") as resp:
                listing = await resp.text()
            assert f"href='/console/sessions/{sid}'>placed</a>" in listing
            assert "<td>C-placed</td>" in listing and "<td>C-held0</td>" in listing
        # its pages opened on A: 307 to the same path on B, where the same cookie opens them
        for path in ("", "/qr/x.svg", "/enter", "/reissue/x"):
            async with http.get(
                f"{a.url}/console/sessions/{sid}{path}", allow_redirects=False
            ) as resp:
                assert resp.status == 307, (path, resp.status)
                assert resp.headers["Location"] == f"{b.url}/console/sessions/{sid}{path}"
        async with http.get(f"{a.url}/console/sessions/{sid}") as resp:
            assert resp.status == 200 and str(resp.url).startswith(b.url)
            html = await resp.text()
        party = re.findall(r"href='https?://[^']+/j/([^'#]+)", html)[0]
        async with http.get(f"{a.url}/console/sessions/{sid}/enter", allow_redirects=False) as rr:
            assert rr.status == 307
        async with http.get(f"{b.url}/console/sessions/{sid}/enter", allow_redirects=False) as resp:
            assert resp.status == 303
            mediator = resp.headers["Location"].split("#")[0].rsplit("/j/", 1)[1]
        # held sessions are still served on A: no redirect
        async with http.get(f"{a.url}/console/sessions/{held[0]}", allow_redirects=False) as rr:
            assert rr.status == 200

        # bad input: an unknown id, a malformed one
        for bad in ("s-0000000000000000", "x" * 200):
            async with http.get(f"{a.url}/console/sessions/{bad}", allow_redirects=False) as rr:
                assert rr.status == 404 and (await rr.text()).startswith("not_found"), bad

        try:
            # the links opened through A reach B by ``redirect``; media both ways there
            m = Page(mediator, "mediator", (200, 30, 30))
            p = Page(party, "party", (30, 200, 30))
            pages += [m, p]
            assert await m.open(a.url) == b.url and await p.open(a.url) == b.url
            assert p.answers[0] == (a.url, "redirect")

            async def listed_on_a(text: str) -> bool:
                async with http.get(a.url + "/console") as resp:
                    return text in await resp.text()

            for topic in CONSENTS:
                await p.command(type="record_consent", topic=topic, given=True)
            await m.media()
            await p.media()  # the party is connected, in B's waiting room: A's list says so
            deadline = time.monotonic() + 10
            while not await listed_on_a("<td>1 人等候 waiting</td>"):
                assert time.monotonic() < deadline, "A's list never showed the waiting party"
                await asyncio.sleep(0.1)
            m_id, p_id = m.welcome["participant"], p.welcome["participant"]
            await m.command(type="admit", participant=p_id)
            await until(lambda: m.bot.frames_from(p_id) > 5 and p.bot.frames_from(m_id) > 5, 30)
            deadline = time.monotonic() + 10
            while await listed_on_a("<td>1 人等候 waiting</td>"):  # admitted: nobody waits
                assert time.monotonic() < deadline, "A's list still shows the party waiting"
                await asyncio.sleep(0.1)
        finally:
            for page in pages:
                await page.close()

        # a form's POST on A (re-issue the party's link) is sent to B with its body: done there
        pid = re.search(r"data-participant='([^']+)'", html).group(1)
        async with http.get(f"{b.url}/console/sessions/{sid}") as resp:
            token = csrf(await resp.text())
        reissue = f"{a.url}/console/sessions/{sid}/reissue/{pid}"
        async with http.post(reissue, data={"csrf": token}, allow_redirects=False) as resp:
            assert resp.status == 307
            assert resp.headers["Location"] == f"{b.url}/console/sessions/{sid}/reissue/{pid}"
        async with http.post(reissue, data={"csrf": token}) as resp:
            assert resp.status == 200 and str(resp.url).startswith(f"{b.url}/console/sessions/")
            assert party not in await resp.text()  # a new link for the party

    # another mediator: refused on A (from the index) and on B (in memory), as on one node
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        assert await login(other, a.url, "li") == 303
        for node in (a, b):
            async with other.get(f"{node.url}/console/sessions/{sid}", allow_redirects=False) as rr:
                assert rr.status == 403 and (await rr.text()).startswith("forbidden"), node.url
        async with other.get(a.url + "/console") as resp:
            assert sid not in await resp.text()
    for node in (a, b):  # nothing moved behind the console's back
        assert "session lease lost" not in node.output(), node.output()


async def test_a_burst_of_console_sessions_spreads_and_a_draining_node_gets_none(nodes):
    r = nodes.redis
    a, b = nodes("a"), nodes("b", PARLEY_DRAIN_SECONDS="120")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        assert await login(http, a.url, "wang") == 303
        await wait_for(lambda: heartbeat(r, "a") and heartbeat(r, "b"), what="both heartbeat")
        burst = await asyncio.gather(*(create(http, a.url, f"burst{i}") for i in range(12)))
        owners = [owner(r, s) for s in burst]
        spread = {n: owners.count(n) for n in ("a", "b")}
        print(f"\nburst of 12 through A's console: {spread}")
        assert spread["a"] >= 1 and spread["b"] >= 1 and sum(spread.values()) == 12, owners
        # every one of them listed on A whatever node serves it
        async with http.get(a.url + "/console") as resp:
            listing = await resp.text()
        assert all(f"/console/sessions/{s}'" in listing for s in burst)

        b.proc.terminate()  # SIGTERM: B drains, serving its sessions up to its deadline
        await wait_for(
            lambda: (heartbeat(r, "b") or {}).get("draining"), what="B's heartbeat says draining"
        )
        later = [await create(http, a.url, f"later{i}") for i in range(4)]
        assert [owner(r, s) for s in later] == ["a"] * 4
        # B still serves its burst sessions while draining: their pages still go there
        on_b = [s for s, o in zip(burst, owners, strict=True) if o == "b"]
        async with http.get(f"{a.url}/console/sessions/{on_b[0]}", allow_redirects=False) as rr:
            assert rr.status == 307 and rr.headers["Location"].startswith(b.url)
