"""Staff login and HTTP security: the event loop during Argon2, throttling that reveals nothing and
locks nobody out from elsewhere, the client's scheme and address behind a trusted proxy, secret
files readable by the server only, hashed session ids, /metrics access, security headers."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import sqlite3
import stat
import subprocess
import sys

import aiohttp
import pytest
import socketio
from aiohttp import web

from rooms.accounts import LOCK_AFTER
from rooms.service import ParticipantSpec
from server import SERVICE, SIGNER, Config, create_app
from signaling.namespace import NAMESPACE
from signaling.staff import ACCOUNTS
from signaling.tls import ensure_self_signed
from tests.integration.signaling.conftest import until
from tests.support.server_proc import ROOT

PASSWORD = "correct horse battery"
PROXY = "127.0.0.1"  # loopback clients bound to 127.0.0.2 stand for "another address"


@pytest.fixture
async def serve(tmp_path):
    """Start a real server with Config overrides; returns its base URL."""
    runners = []

    async def start(**overrides):
        config = Config(data_dir=tmp_path / "data", demo=False, log_format="text", **overrides)
        app = create_app(config)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        app[ACCOUNTS].add("wang", "王调解员", ["mediator"], PASSWORD)
        return app, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


def client(local: str = "127.0.0.1") -> aiohttp.ClientSession:
    """No cookie jar: each request carries exactly the cookies the test gives it."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(local, 0), force_close=True),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def login_form(http, url, headers=None) -> str:
    async with http.get(url + "/login", headers=headers) as r:
        assert r.status == 200
        return re.search(r"name='csrf' value='([^']+)'", await r.text()).group(1)


async def post_login(http, url, csrf, username, password, headers=None):
    """(status, body, response headers) of one login attempt."""
    cookie = {"Cookie": f"parley_login_csrf={csrf}"}
    async with http.post(
        url + "/login",
        data={"csrf": csrf, "username": username, "password": password},
        headers={**cookie, **(headers or {})},
        allow_redirects=False,
    ) as r:
        return r.status, await r.read(), r.headers


async def attempt(url, username, password, *, local="127.0.0.1", headers=None):
    async with client(local) as http:
        csrf = await login_form(http, url, headers)
        return await post_login(http, url, csrf, username, password, headers)


# -- the event loop stays free while passwords are checked ------------------------------------


async def test_five_concurrent_logins_leave_the_event_loop_responsive(serve):
    _, url = await serve()
    sessions = [client() for _ in range(5)]
    try:
        forms = [await login_form(http, url) for http in sessions]
        loop, lags, done = asyncio.get_running_loop(), [], asyncio.Event()

        async def probe():
            while not done.is_set():
                start = loop.time()
                await asyncio.sleep(0.005)
                lags.append(loop.time() - start - 0.005)

        prober = asyncio.create_task(probe())
        await asyncio.sleep(0.05)
        results = await asyncio.gather(
            *(post_login(h, url, c, "wang", PASSWORD) for h, c in zip(sessions, forms, strict=True))
        )
        done.set()
        await prober
    finally:
        for http in sessions:
            await http.close()
    assert [status for status, _, _ in results] == [303] * 5
    assert len(lags) > 10 and max(lags) < 0.050, f"loop lag max {max(lags) * 1000:.0f} ms"


# -- throttling: identical answers, no lockout from elsewhere ------------------------------------


async def test_known_and_unknown_usernames_get_byte_identical_answers(serve):
    _, url = await serve()
    async with client() as http:
        csrf = await login_form(http, url)
        known = [await post_login(http, url, csrf, "wang", "wrong!") for _ in range(LOCK_AFTER + 1)]
        unknown = [await post_login(http, url, csrf, "nobody", "x") for _ in range(LOCK_AFTER + 1)]
    assert [(s, b) for s, b, _ in known] == [(s, b) for s, b, _ in unknown]
    assert [s for s, _, _ in known] == [401] * LOCK_AFTER + [429]
    assert sorted(known[0][2]) == sorted(unknown[0][2])  # same header names


async def test_a_throttled_address_does_not_lock_the_user_out_elsewhere(serve):
    _, url = await serve()
    for _ in range(LOCK_AFTER):
        assert (await attempt(url, "wang", "guess!"))[0] == 401
    assert (await attempt(url, "wang", PASSWORD))[0] == 429  # this address waits now
    assert (await attempt(url, "wang", PASSWORD, local="127.0.0.2"))[0] == 303


async def test_one_address_spraying_usernames_is_throttled(serve):
    _, url = await serve()
    statuses = [(await attempt(url, f"user{i}", "guess!"))[0] for i in range(25)]
    assert statuses[0] == 401 and statuses[-1] == 429
    assert (await attempt(url, "wang", PASSWORD, local="127.0.0.2"))[0] == 303


# -- behind a TLS-terminating proxy ---------------------------------------------------------------


async def test_a_trusted_proxy_sets_scheme_and_client_address(serve):
    _, url = await serve(trusted_proxies=[PROXY])
    https = {"X-Forwarded-Proto": "https"}
    status, _, headers = await attempt(url, "wang", PASSWORD, headers=https)
    assert status == 303
    assert "Secure" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    # The proxy's own address is not the client's: throttling follows X-Forwarded-For.
    attacker = {**https, "X-Forwarded-For": "203.0.113.7"}
    for _ in range(LOCK_AFTER):
        assert (await attempt(url, "wang", "guess!", headers=attacker))[0] == 401
    assert (await attempt(url, "wang", PASSWORD, headers=attacker))[0] == 429
    user = {**https, "X-Forwarded-For": "198.51.100.9"}
    assert (await attempt(url, "wang", PASSWORD, headers=user))[0] == 303


async def test_forwarding_headers_from_an_untrusted_peer_are_ignored(serve):
    _, url = await serve(trusted_proxies=[PROXY])
    status, _, headers = await attempt(
        url, "wang", PASSWORD, local="127.0.0.2", headers={"X-Forwarded-Proto": "https"}
    )
    assert status == 303
    assert "Secure" not in headers["Set-Cookie"]
    assert "Strict-Transport-Security" not in headers


def test_a_bad_trusted_proxy_is_refused_with_a_clear_code(tmp_path):
    config = Config(data_dir=tmp_path / "data", demo=False, trusted_proxies=["proxy.local"])
    with pytest.raises(ValueError, match="bad_config: trusted_proxies"):
        create_app(config)


# -- secrets at rest --------------------------------------------------------------------------


async def test_secret_files_are_readable_by_the_server_only(serve, tmp_path):
    old = os.umask(0o022)
    try:
        app, url = await serve()
        assert (await attempt(url, "wang", PASSWORD))[0] == 303
        data = tmp_path / "data"
        ensure_self_signed(data, [])
    finally:
        os.umask(old)
    names = ["secret.key", "esign-passphrase", "tls-key.pem", "accounts.sqlite3"]
    names += ["accounts.sqlite3-wal", "accounts.sqlite3-shm"]
    modes = {n: stat.S_IMODE((data / n).stat().st_mode) for n in names}
    assert modes == dict.fromkeys(names, 0o600)


async def test_staff_session_ids_are_stored_hashed(serve, tmp_path):
    _, url = await serve()
    status, _, headers = await attempt(url, "wang", PASSWORD)
    assert status == 303
    cookie = re.search(r"parley_staff=([^;]+)", headers["Set-Cookie"]).group(1)
    db = sqlite3.connect(tmp_path / "data" / "accounts.sqlite3")
    try:
        stored = [row[0] for row in db.execute("SELECT id FROM staff_sessions")]
    finally:
        db.close()
    assert stored == [hashlib.sha256(cookie.encode()).hexdigest()]
    async with client() as http:  # and the cookie still opens the console
        async with http.get(
            url + "/console", headers={"Cookie": f"parley_staff={cookie}"}, allow_redirects=False
        ) as r:
            assert r.status == 200


# -- /metrics -----------------------------------------------------------------------------------


async def test_metrics_need_the_token_when_one_is_configured(serve):
    _, url = await serve(metrics_token="s3cret-metrics-token")
    async with client() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            async with http.get(url + "/metrics", headers=headers) as r:
                assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"
                assert "parley_sessions" not in await r.text()
        auth = {"Authorization": "Bearer s3cret-metrics-token"}
        async with http.get(url + "/metrics", headers=auth) as r:
            assert r.status == 200 and "parley_sessions" in await r.text()


async def test_metrics_without_a_token_answer_direct_loopback_only(serve):
    _, url = await serve(trusted_proxies=[PROXY])
    async with client() as http:
        async with http.get(url + "/metrics") as r:
            assert r.status == 200 and "parley_sessions" in await r.text()
        via_proxy = {"X-Forwarded-For": "203.0.113.7"}
        async with http.get(url + "/metrics", headers=via_proxy) as r:
            assert r.status == 403 and "metrics_forbidden" in await r.text()
    async with client("127.0.0.2") as http:  # an untrusted peer's forwarded request, too
        async with http.get(url + "/metrics", headers={"X-Forwarded-For": "127.0.0.1"}) as r:
            assert r.status == 403


# -- security headers on every page -----------------------------------------------------------


async def test_every_page_carries_the_security_headers(serve):
    _, url = await serve()
    paths = ["/", "/login", "/j/not-a-token", "/static/style.css", "/healthz", "/no-such-page"]
    async with client() as http:
        for path in paths:
            async with http.get(url + path, allow_redirects=False) as r:
                h = r.headers
                assert "script-src 'self'" in h.get("Content-Security-Policy", ""), path
                assert "frame-ancestors 'none'" in h["Content-Security-Policy"], path
                assert h.get("X-Frame-Options") == "DENY", path
                assert h.get("X-Content-Type-Options") == "nosniff", path
                assert h.get("Referrer-Policy") == "no-referrer", path
                assert "Strict-Transport-Security" not in h, path  # plain HTTP: no HSTS


def test_the_command_line_refuses_a_bad_trusted_proxy_with_a_clear_code(tmp_path):
    env = {"PARLEY_TRUSTED_PROXIES": "10.0.0.1,proxy.local", "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, str(ROOT / "server.py"), "serve", "--data-dir", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "bad_config: trusted_proxies" in done.stderr
    assert "Traceback" not in done.stderr


async def test_signaling_works_through_a_trusted_proxy(serve):
    """The forwarded request is a clone: socket.io's WebSocket upgrade must still work on it."""
    app, url = await serve(trusted_proxies=[PROXY])
    state = app[SERVICE].create_session(
        "mediation",
        actor="staff:test",
        title="Proxy",
        case_number="P-1",
        participants=[ParticipantSpec(name="Mediator M", role="mediator")],
    )
    person = next(iter(state.participants.values()))
    token = app[SIGNER].issue(state.id, person.id, person.role, ttl=600)
    sio, welcome = socketio.AsyncClient(reconnection=False), []
    sio.on("welcome", lambda data=None: welcome.append(data), namespace=NAMESPACE)
    await sio.connect(
        url,
        namespaces=[NAMESPACE],
        auth={"token": token},
        transports=["websocket"],
        headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
        wait_timeout=5,
    )
    try:
        await until(lambda: welcome)
    finally:
        await sio.disconnect()


@pytest.mark.parametrize(
    "content_type,body",
    [
        (
            "multipart/form-data; boundary=xx",
            b'--xx\r\nContent-Disposition: form-data; na\x00me="a"\r\n\r\nv\r\n--xx--\r\n',
        ),
        ("multipart/form-data; boundary=xx", b"--xx\r\nbroken header line\r\n\r\nv\r\n--xx--\r\n"),
        ("multipart/form-data", b"--xx\r\n\r\nv\r\n--xx--\r\n"),
    ],
    ids=["nul-in-part-header", "malformed-part-header", "no-boundary"],
)
async def test_a_login_form_that_cannot_be_read_is_a_clear_400(serve, content_type, body):
    app, base = await serve()
    async with client() as http:
        async with http.post(
            base + "/login", data=body, headers={"Content-Type": content_type}
        ) as resp:
            assert resp.status == 400, await resp.text()
            assert "invalid" in await resp.text()
