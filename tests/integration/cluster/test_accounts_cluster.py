"""Staff accounts on Redis (cluster/accounts.py): two real server processes on one real
redis-server. An account added once with ``server.py user add --redis`` (from a directory that
is neither node's) logs in on either node; the login session opened on node A is valid on
node B, and a logout on B ends it on A at once; an account a node had in its own data directory
keeps logging in there, and is then known to the other node too."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys

import aiohttp
import pytest
import redis

from rooms.accounts import AccountStore
from tests.support.redisd import redis_server  # noqa: F401 - fixture
from tests.support.server_proc import ROOT, STAFF_PASSWORD, ServerProcess, add_staff

pytestmark = pytest.mark.slow


def user_add(data_dir, username: str, redis_url: str | None) -> subprocess.CompletedProcess:
    extra = ["--redis", redis_url] if redis_url else []
    return subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "user", "add", username, "--name", "李调解员"]
        + ["--role", "mediator", "--password-stdin", "--data-dir", str(data_dir), *extra],
        input=STAFF_PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


async def login(http: aiohttp.ClientSession, url: str, username: str) -> int:
    async with http.get(url + "/login") as r:
        csrf = re.search(r"name='csrf' value='([^']+)'", await r.text()).group(1)
    form = {"csrf": csrf, "username": username, "password": STAFF_PASSWORD}
    async with http.post(url + "/login", data=form, allow_redirects=False) as r:
        return r.status


async def console_status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url + "/console", allow_redirects=False) as r:
        return r.status


async def test_one_account_and_one_login_on_every_node(tmp_path, redis_server):  # noqa: F811
    url = redis_server.url.rsplit("/", 1)[0] + "/7"  # a database of its own on the test server
    redis.Redis.from_url(url).flushdb()
    env = {"PARLEY_SECRET": secrets.token_hex(32), "PARLEY_REDIS_URL": url}
    env["PARLEY_DRAIN_SECONDS"] = "0"
    add_staff(tmp_path / "a")  # "wang": in node A's own data directory only, before it starts
    a = ServerProcess(tmp_path / "a", "--no-demo", env={**env, "PARLEY_NODE_ID": "a"})
    b = ServerProcess(tmp_path / "b", "--no-demo", env={**env, "PARLEY_NODE_ID": "b"})
    try:
        a.start_quiet()
        b.start_quiet()
        added = user_add(tmp_path / "cli", "li", url)
        assert added.returncode == 0, added.stderr
        cli_dir = AccountStore(tmp_path / "cli" / "accounts.sqlite3")
        assert cli_dir.get("li") is None  # in Redis, not in the directory the CLI was given
        cli_dir.close()
        jar = aiohttp.CookieJar(unsafe=True)  # one browser: the cookie names the host
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            assert await console_status(http, b.url) == 303  # not logged in
            assert await login(http, a.url, "li") == 303
            assert await console_status(http, a.url) == 200
            assert await console_status(http, b.url) == 200  # the same session on node B
            async with http.get(b.url + "/console") as r:
                csrf = re.search(r"name='csrf' value='([^']+)'", await r.text()).group(1)
            async with http.post(b.url + "/logout", data={"csrf": csrf}, allow_redirects=False):
                pass
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            assert await login(http, b.url, "li") == 303
            session_cookie = next(c for c in http.cookie_jar if c.key != "parley_login_csrf")
            cookie = {session_cookie.key: session_cookie.value}
        async with aiohttp.ClientSession(cookies=cookie) as http:
            assert await console_status(http, a.url) == 200
            async with http.get(a.url + "/console") as r:
                csrf = re.search(r"name='csrf' value='([^']+)'", await r.text()).group(1)
            async with http.post(a.url + "/logout", data={"csrf": csrf}, allow_redirects=False):
                pass
        async with aiohttp.ClientSession(cookies=cookie) as http:
            assert await console_status(http, b.url) == 303  # logged out everywhere at once
        # node A's own account: unknown to B until A has seen it, then on both
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            assert await login(http, b.url, "wang") == 401
            assert await login(http, a.url, "wang") == 303
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            assert await login(http, b.url, "wang") == 303
        # bad input: a duplicate, and a Redis that does not answer
        again = user_add(tmp_path / "cli", "li", url)
        assert again.returncode == 2 and "conflict" in again.stderr
        port = redis_server.port + 1 if redis_server.port < 65535 else redis_server.port - 1
        down = user_add(tmp_path / "cli", "zhou", f"redis://127.0.0.1:{port}/0")
        assert down.returncode == 2 and down.stderr.startswith("unavailable:"), down.stderr
        bad = user_add(tmp_path / "cli", "zhou", "http://not-redis")
        assert bad.returncode == 2 and bad.stderr.startswith("invalid:"), bad.stderr
    finally:
        a.stop()
        b.stop()
