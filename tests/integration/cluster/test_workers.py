"""``server.py serve --workers N`` (docs/scaling.md, "Workers: one node per core"): a real
supervisor process, its real worker processes and a real redis-server (the test server's, or
the one the supervisor starts itself).

Two workers behind one public port: both heartbeat; a session created on each (the demo on
worker 0, one through worker 1's staff console, with an account made by ``server.py user add``
in the shared data directory) is reached through the public port by aiortc bots that follow
the ``redirect`` answer as the page does, and media flows; a SIGKILLed worker is restarted by
the supervisor and its session is served again (taken over by the other worker, or taken back
by the restarted one, whichever holds the lease first) and the bots, opening their links
through the public port again, get media; SIGTERM to the supervisor stops every child and
its redis-server, exit code 0. Bad input: ``--workers 0``/``abc``, and two workers with no
Redis and no redis-server on PATH.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
import time

import aiohttp
import pytest
import redis

from bench.takeover import Page, flowing, until
from tests.support.procs import free_port
from tests.support.redisd import redis_server  # noqa: F401 - fixture
from tests.support.server_proc import (
    ROOT,
    STAFF_PASSWORD,
    ServerProcess,
    add_staff,
    wait_until,
)

pytestmark = pytest.mark.slow

TTL_MS = 2000


def workers_of(proc: ServerProcess) -> dict[str, tuple[int, int]]:
    """node id -> (pid, port), the latest ``WORKER`` line of each."""
    out = {}
    for line in list(proc.lines):
        if m := re.match(r"WORKER (\S+) PID (\d+) PORT (\d+)", line):
            out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not reaped yet) counts as gone
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def supervisor(tmp_path, redis_server):  # noqa: F811
    url = redis_server.url.rsplit("/", 1)[0] + "/9"  # a database of its own on the test server
    redis.Redis.from_url(url).flushdb()
    made = []

    def start(*extra: str, use_redis: bool = True) -> ServerProcess:
        env = {
            "PARLEY_LEASE_TTL_MS": str(TTL_MS),
            "PARLEY_DRAIN_SECONDS": "0",
            "PARLEY_SECRET": secrets.token_hex(32),
        }
        if use_redis:
            env["PARLEY_REDIS_URL"] = url
        proc = ServerProcess(tmp_path / "data", "--workers", "2", *extra, env=env)
        proc.redis_url = url if use_redis else None
        made.append(proc)
        proc.start_quiet(timeout=60) if "--no-demo" in extra else proc.start(timeout=60)
        return proc

    start.redis_url = url
    yield start
    for proc in made:
        proc.stop()


async def login(http: aiohttp.ClientSession, url: str) -> None:
    async with http.get(url + "/login") as r:
        csrf = re.search(r"name='csrf' value='([^']+)'", await r.text()).group(1)
    async with http.post(
        url + "/login",
        data={"csrf": csrf, "username": "wang", "password": STAFF_PASSWORD},
        allow_redirects=False,
    ) as r:
        assert r.status == 303, await r.text()


async def console_session(url: str) -> tuple[str, dict[str, str]]:
    """A mediation created through the staff console of the node at ``url``: its id and the
    mediator's and the party's tokens."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await login(http, url)
        async with http.get(url + "/console") as r:
            csrf = re.search(r"name='csrf' value='([^']+)'", await r.text()).group(1)
        form = {"csrf": csrf, "case_number": "W-1", "title": "worker 1"}
        form |= {"name0": "张三", "role0": "party", "side0": "A"}
        async with http.post(url + "/console/sessions", data=form, allow_redirects=False) as r:
            assert r.status == 303, await r.text()
            sid = r.headers["Location"].rsplit("/", 1)[1]
        async with http.get(f"{url}/console/sessions/{sid}") as r:
            party = re.findall(r"href='https?://[^']+/j/([^'#]+)", await r.text())[0]
        async with http.get(f"{url}/console/sessions/{sid}/enter", allow_redirects=False) as r:
            mediator = r.headers["Location"].split("#")[0].rsplit("/j/", 1)[1]
    return sid, {"mediator": mediator, "party": party}


def lease(url: str, sid: str) -> str | None:
    value = redis.Redis.from_url(url).get(f"parley:lease:{sid}")
    return value.decode() if value else None


async def test_two_workers_one_port_redirect_media_and_a_killed_worker(supervisor, tmp_path):
    sup = supervisor()
    front = sup.url
    ids = sorted(workers_of(sup))
    assert len(ids) == 2 and ids[0].endswith("-w0") and ids[1].endswith("-w1"), sup.output()
    w0, w1 = ids
    own = {node: f"http://127.0.0.1:{port}" for node, (_, port) in workers_of(sup).items()}
    assert front not in own.values()

    # both workers heartbeat, each with its own URL (where pages are redirected)
    r = redis.Redis.from_url(sup.redis_url)

    def beating():
        return all(r.get(f"parley:node:{n}") for n in ids)

    assert wait_until(beating, 10), r.keys("*")
    for n in ids:
        assert own[n].encode() in r.get(f"parley:node:{n}")

    # a session on each worker: the demo on w0; one through w1's console, by an account
    # made with the CLI in the shared data directory while the workers run
    # the printed demo links go through the public port
    assert sup.links["mediator"][0].startswith(front + "/j/"), sup.links
    demo = {role: links[0].rsplit("/j/", 1)[1] for role, links in sup.links.items()}
    add_staff(tmp_path / "data")
    sid1, console = await console_session(own[w1])
    assert wait_until(lambda: lease(sup.redis_url, sid1) == w1, 5)

    pages: list[Page] = []
    try:
        served = {}
        pairs = {}
        for name, tokens in (("demo", demo), ("w1", console)):
            mediator = Page(tokens["mediator"], "mediator", (200, 30, 30))
            party = Page(tokens["party"], "party", (30, 200, 30))
            pages += [mediator, party]
            served[name] = [await mediator.open(front), await party.open(front)]
            pairs[name] = await flowing(mediator, party)  # media both ways
        # the front sends every connection from one client address to one worker: one of the
        # two sessions was answered ``redirect`` there and served on its owner's own port
        assert served["demo"] in ([front, front], [own[w0], own[w0]]), served
        assert served["w1"] in ([front, front], [own[w1], own[w1]]), served
        assert [front, front] in served.values() and served["demo"] != served["w1"], served
        moved = [p for p in pages if p.answers]
        assert moved and all(p.answers[0][1] == "redirect" for p in moved), [
            p.answers for p in pages
        ]

        # SIGKILL w1: the supervisor restarts it; its session is held again by a live worker
        old_pid = workers_of(sup)[w1][0]
        started = time.monotonic()
        os.kill(old_pid, 9)
        assert wait_until(lambda: workers_of(sup)[w1][0] != old_pid, 15), sup.output()[-3000:]
        restarted = workers_of(sup)[w1][0]

        def held():
            holder = lease(sup.redis_url, sid1)
            return holder if holder in (w0, w1) and holder is not None else None

        # the lease is w1's until it expires (TTL), then w0 takes it over, unless the restarted
        # w1 took it back first (it holds it again at start while it is still its own)
        await until(lambda: (held() == w0) or (held() == w1 and alive(restarted)), 15)
        # the two pages of w1's session open their links again through the public port
        _, _, m_id, p_id = pairs["w1"]
        fresh = []
        for old in pages[2:]:
            await old.close()
            page = Page(old.token, old.name, old.color)
            fresh.append(page)
            pages.append(page)

        async def back(page: Page):
            deadline = time.monotonic() + 30
            while True:
                try:
                    return await page.open(front, deadline=5)
                except (TimeoutError, RuntimeError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.3)

        await asyncio.gather(*(back(p) for p in fresh))
        for p in fresh:
            assert p.welcome["session"]["space"] == "joint"  # where they were
        await fresh[0].media()
        await fresh[1].media()
        await until(
            lambda: fresh[0].bot.frames_from(p_id) >= 1 and fresh[1].bot.frames_from(m_id) >= 1,
            30,
        )
        holder = held()
        print(
            f"\nSIGKILL of {w1}: restarted as pid {restarted}; session held by {holder}; "
            f"media again through the front {time.monotonic() - started:.2f} s after the kill"
        )
        # w0 and its demo session were not disturbed
        assert alive(workers_of(sup)[w0][0]) and r.smembers(f"parley:owned:{w0}")
    finally:
        for page in pages:
            await page.close()


def test_sigterm_stops_every_child_and_its_own_redis(supervisor, tmp_path):
    """No --redis: the supervisor starts redis-server (AOF, fsync always) in the data
    directory; SIGTERM: every worker drains and exits, then Redis, then the supervisor, 0."""
    sup = supervisor("--no-demo", use_redis=False)
    children = [pid for pid, _ in workers_of(sup).values()]
    m = re.search(r"REDIS PID (\d+) PORT (\d+)", sup.output())
    assert m and len(children) == 2, sup.output()
    redis_pid, redis_port = int(m.group(1)), int(m.group(2))
    local = redis.Redis(port=redis_port)
    assert local.config_get("appendonly")["appendonly"] == "yes"
    assert local.config_get("appendfsync")["appendfsync"] == "always"
    assert local.config_get("dir")["dir"] == str((tmp_path / "data" / "redis").resolve())
    assert wait_until(lambda: len(local.smembers("parley:nodes")) == 2, 10)
    # the front answers on the public port
    with urllib_open(sup.url + "/readyz") as body:
        assert b"ready" in body
    sup.proc.terminate()
    assert sup.proc.wait(30) == 0, sup.output()[-3000:]
    assert wait_until(lambda: not any(alive(p) for p in [*children, redis_pid]), 10)
    assert "workers stopped" in sup.output()


class urllib_open:  # noqa: N801 - a context manager reading one small HTTP answer
    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> bytes:
        import urllib.request

        with urllib.request.urlopen(self.url, timeout=10) as r:
            return r.read()

    def __exit__(self, *exc) -> None:
        return None


@pytest.mark.parametrize("workers", ["0", "abc", "-1", "2x"])
def test_bad_workers_values_are_refused(tmp_path, workers):
    done = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "serve", "--workers", workers]
        + ["--port", str(free_port()), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "--workers must be a whole number >= 1 or auto" in done.stderr


def test_workers_without_redis_or_redis_server_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PATH"] = os.path.dirname(sys.executable)  # no redis-server there
    done = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "serve", "--workers", "2"]
        + ["--port", str(free_port()), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 2
    assert "needs Redis" in done.stderr and "redis-server" in done.stderr
    assert "Traceback" not in done.stderr
