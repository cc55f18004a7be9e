"""Staff login (CSRF, lockout, logout) and the mediator console (create, invitations, enter)."""

from __future__ import annotations

import re
import subprocess
import sys

import aiohttp
import pytest
import socketio

from rooms.accounts import LOCK_AFTER
from server import DESK
from signaling.namespace import NAMESPACE
from signaling.staff import ACCOUNTS
from tests.support.server_proc import ROOT

PASSWORD = "correct horse battery"


def add_user(running, username="wang", roles=("mediator",)):
    return running.app[ACCOUNTS].add(username, "王调解员", list(roles), PASSWORD)


async def login(http, url, username="wang", password=PASSWORD):
    async with http.get(url + "/login") as r:
        csrf = re.search(r"name='csrf' value='([^']+)'", await r.text()).group(1)
    return await http.post(
        url + "/login",
        data={"csrf": csrf, "username": username, "password": password},
        allow_redirects=False,
    )


def csrf_of(html: str) -> str:
    return re.search(r"name='csrf' value='([^']+)'", html).group(1)


def session_http():
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_console_needs_login_and_login_needs_csrf(running):
    add_user(running)
    async with session_http() as http:
        async with http.get(running.url + "/console", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/login"
        async with http.post(
            running.url + "/login",
            data={"username": "wang", "password": PASSWORD},
            allow_redirects=False,
        ) as r:
            assert r.status == 403  # no CSRF token
        r = await login(http, running.url, password="wrong password!")
        assert r.status == 401 and "Wrong username or password" in await r.text()
        r = await login(http, running.url, username="nobody")
        assert r.status == 401  # same answer for unknown users
        r = await login(http, running.url)
        assert r.status == 303 and r.headers["Location"] == "/console"
        cookie = r.cookies["parley_staff"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        async with http.get(running.url + "/console") as r:
            assert r.status == 200 and "新建调解 New mediation" in await r.text()


async def test_lockout_after_repeated_failures(running):
    add_user(running)
    async with session_http() as http:
        for _ in range(LOCK_AFTER):
            assert (await login(http, running.url, password="not the password")).status == 401
        r = await login(http, running.url)  # even the right password waits now, from here
        assert r.status == 429


async def test_create_session_invitations_enter_and_logout(running):
    add_user(running)
    add_user(running, "li", ("mediator",))
    async with session_http() as http:
        await login(http, running.url)
        async with http.get(running.url + "/console") as r:
            csrf = csrf_of(await r.text())
        form = {
            "csrf": csrf,
            "case_number": "(2026)京0105民调123号",
            "title": "房屋租赁纠纷",
            "name0": "张三",
            "role0": "party",
            "side0": "A",
            "name1": "李四",
            "role1": "party",
            "side1": "B",
            "name2": "王律师",
            "role2": "counsel",
            "side2": "A",
        }
        async with http.post(
            running.url + "/console/sessions",
            data={**form, "csrf": "forged"},
            allow_redirects=False,
        ) as r:
            assert r.status == 403
        before = len(running.service.sessions())
        async with http.post(
            running.url + "/console/sessions", data={**form, "side0": ""}, allow_redirects=False
        ) as r:
            assert r.status == 400 and "needs a side" in await r.text()
        async with http.post(
            running.url + "/console/sessions",
            data={**form, "role1": "judge"},
            allow_redirects=False,
        ) as r:
            assert r.status == 400 and "invalid" in await r.text()
        assert len(running.service.sessions()) == before  # nothing half-created
        async with http.post(
            running.url + "/console/sessions", data=form, allow_redirects=False
        ) as r:
            assert r.status == 303
            page_url = running.url + r.headers["Location"]
        sid = page_url.rsplit("/", 1)[1]
        state = running.service.state(sid)
        assert state.created_by == "staff:wang"
        assert sorted(p.role for p in state.participants.values()) == [
            "counsel",
            "mediator",
            "party",
            "party",
        ]
        async with http.get(page_url) as r:
            html = await r.text()
        links = re.findall(r"href='(http://[^']+/j/[^']+)'", html)
        assert len(links) == 3  # one per invited person, not the mediator
        root = running.app[DESK].root_sha256()
        assert html.count(f"<code>{root}</code>") == 3  # printed on each invitation
        for link in links:  # the invitation names the organisation root in its fragment
            link, fragment = link.split("#")
            assert fragment == f"root={root}"
            inv = running.signer.verify(link.rsplit("/", 1)[1], session=sid)
            assert state.participants[inv.participant].role == inv.role
        qr = re.search(r"src='(/console/sessions/[^']+\.svg)'", html).group(1)
        async with http.get(running.url + qr) as r:
            assert r.status == 200 and r.content_type == "image/svg+xml"
            assert b"<svg" in await r.read()
        async with http.get(page_url + "/enter", allow_redirects=False) as r:
            assert r.status == 303
            location, fragment = r.headers["Location"].split("#")
            assert fragment == f"root={root}"
            inv = running.signer.verify(location.rsplit("/", 1)[1], session=sid)
            assert inv.role == "mediator"

        # Revoke and re-issue one link: the old token is refused, the new one works.
        old_link = links[0].split("#")[0]
        old_inv = running.signer.verify(old_link.rsplit("/", 1)[1])
        async with http.post(
            f"{page_url}/reissue/{old_inv.participant}", data={"csrf": "bad"}, allow_redirects=False
        ) as r:
            assert r.status == 403
        async with http.post(
            f"{page_url}/reissue/{old_inv.participant}", data={"csrf": csrf}, allow_redirects=False
        ) as r:
            assert r.status == 303
        assert running.service.state(sid).participants[old_inv.participant].invitation_gen == 1
        refused = socketio.AsyncClient(reconnection=False)
        why = []
        refused.on("connect_error", lambda d=None: why.append(d), namespace=NAMESPACE)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(
                running.url,
                namespaces=[NAMESPACE],
                transports=["websocket"],
                auth={"token": old_link.rsplit("/", 1)[1]},
                wait_timeout=5,
            )
        assert why[0]["data"]["code"] == "token_revoked"
        async with http.get(page_url) as r:
            fresh = re.findall(r"href='(http://[^']+/j/[^']+)'", await r.text())
        new_inv = [running.signer.verify(x.split("#")[0].rsplit("/", 1)[1]) for x in fresh]
        assert any(i.participant == old_inv.participant and i.gen == 1 for i in new_inv)

        # logout ends the staff session at once
        async with http.post(
            running.url + "/logout", data={"csrf": csrf}, allow_redirects=False
        ) as r:
            assert r.status == 303
        async with http.get(page_url, allow_redirects=False) as r:
            assert r.status == 303

    async with session_http() as other:  # another mediator may not see it
        await login(other, running.url, username="li")
        async with other.get(page_url) as r:
            assert r.status == 403
        async with other.get(running.url + "/console/sessions/s-nope") as r:
            assert r.status == 404


def test_user_add_cli(tmp_path):
    cmd = [
        sys.executable,
        str(ROOT / "server.py"),
        "user",
        "add",
        "zhao",
        "--name",
        "赵调解员",
        "--role",
        "mediator",
        "--password-stdin",
        "--data-dir",
        str(tmp_path),
    ]
    ok = subprocess.run(
        cmd, input=PASSWORD + "\n", capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert ok.returncode == 0, ok.stderr
    again = subprocess.run(
        cmd, input=PASSWORD + "\n", capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert again.returncode == 2 and "exists" in again.stderr
    short = subprocess.run(
        cmd[:4] + ["qian"] + cmd[5:],
        input="short\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert short.returncode == 2 and "at least 10" in short.stderr
    listed = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "user", "list", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert "zhao 赵调解员 mediator" in listed.stdout
