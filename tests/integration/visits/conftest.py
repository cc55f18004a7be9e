"""A real Parley app on a loopback port with a small province in its visitation database and
staff accounts holding site grants."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

from server import Config, create_app
from signaling.staff import ACCOUNTS
from tests.support.province import build

PASSWORD = "correct horse battery"
DAILY = "1-7 08:00-18:00"
USERS = {  # username -> account roles; grants come from tests/support/province.py
    "op": ["operator"],
    "off-a": ["officer"],
    "sup-a": ["supervisor"],
    "off-b": ["officer"],
    "admin": ["admin"],
    "wang": ["mediator"],
}


class Province:
    def __init__(self, url, store, directory, res, ids) -> None:
        self.url, self.store, self.directory, self.res, self.ids = url, store, directory, res, ids

    def day(self, ahead: int = 3) -> dt.date:
        return dt.datetime.now(ZoneInfo("Asia/Shanghai")).date() + dt.timedelta(days=ahead)

    def count(self, table: str) -> int:
        return self.store.rows(f"SELECT count(*) FROM {table}")[0][0]

    def snapshot(self):
        return [
            self.store.rows(f"SELECT * FROM {t} ORDER BY 1")
            for t in ("bookings", "holds", "terminals", "inmates", "grants", "booking_log")
        ]


@pytest.fixture
async def province(tmp_path):
    data = tmp_path / "data"
    store, directory, res, ids = build(data, DAILY)
    app = create_app(Config(data_dir=data, demo=False, log_format="text"))
    for name, roles in USERS.items():
        app[ACCOUNTS].add(name, f"User {name}", roles, PASSWORD)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield Province(f"http://127.0.0.1:{port}", store, directory, res, ids)
    await runner.cleanup()
    store.close()


def csrf_of(html: str) -> str:
    return re.search(r"name='csrf' value='([^']+)'", html).group(1)


async def staff_session(url: str, username: str) -> tuple[aiohttp.ClientSession, str]:
    """A logged-in client and its CSRF token."""
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(url + "/login") as r:
        csrf = csrf_of(await r.text())
    async with http.post(
        url + "/login",
        data={"csrf": csrf, "username": username, "password": PASSWORD},
        allow_redirects=False,
    ) as r:
        assert r.status == 303, await r.text()
    async with http.get(url + "/visits") as r:
        assert r.status == 200
        return http, csrf_of(await r.text())
