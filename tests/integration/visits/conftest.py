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

    def now(self) -> dt.datetime:
        return dt.datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None, microsecond=0)

    def slot_now(self) -> dt.datetime:
        """The 15-minute cell we are in: a 15-minute visit booked there is on now."""
        now = self.now()
        return now.replace(minute=now.minute - now.minute % 15, second=0)

    def day(self, ahead: int = 3) -> dt.date:
        return dt.datetime.now(ZoneInfo("Asia/Shanghai")).date() + dt.timedelta(days=ahead)

    def count(self, table: str) -> int:
        return self.store.rows(f"SELECT count(*) FROM {table}")[0][0]

    def snapshot(self):
        return [
            self.store.rows(f"SELECT * FROM {t} ORDER BY 1")
            for t in ("bookings", "holds", "terminals", "inmates", "grants", "booking_log")
        ]


ALL_DAY = "1-7 00:00-24:00"  # live-visit tests book "now", whatever the hour


@pytest.fixture
async def province(tmp_path):
    async for p in _province(tmp_path, DAILY):
        yield p


@pytest.fixture
async def allday(tmp_path):
    async for p in _province(tmp_path, ALL_DAY):
        yield p


async def _province(tmp_path, hours):
    data = tmp_path / "data"
    store, directory, res, ids = build(data, hours)
    app = create_app(Config(data_dir=data, demo=False, log_format="text"))
    for name, roles in USERS.items():
        app[ACCOUNTS].add(name, f"User {name}", roles, PASSWORD)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    p = Province(f"http://127.0.0.1:{port}", store, directory, res, ids)
    p.app = app
    yield p
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


def visit_now(p, minutes: int = 30) -> tuple[dt.datetime, int]:
    """(start, minutes) of a visit that is on now and has at least 4 minutes left, inside today."""
    start = p.slot_now()
    midnight = dt.datetime.combine(start.date() + dt.timedelta(days=1), dt.time())
    minutes = min(minutes, int((midnight - start).total_seconds() // 60))
    if start + dt.timedelta(minutes=minutes) - p.now() < dt.timedelta(minutes=4):
        pytest.skip("too close to midnight in the province's time zone to book a visit now")
    return start, minutes


def approved_booking(p, start, minutes=30, visitors=("a1v0", "a1v1"), inmate="a1", **kw):
    """A booking approved the normal way, requested and decided as if two days before."""
    from visits.reservations import Request

    before = start - dt.timedelta(days=2)
    terminal = "pa-1" if inmate.startswith("a") else "pb-1"
    bid = p.res.request(
        "staff:op",
        Request(
            p.ids[inmate], "bx-1", terminal, start, minutes, tuple(p.ids[v] for v in visitors), **kw
        ),
        before,
    )
    p.res.decide("staff:off-a", bid, approve=True, reason="", supervisor=False, now=before)
    return bid


def id_of(key: str, n: int) -> str:
    """The identity number tests/support/province.py gave visitor n of inmate ``key``."""
    return f"11010119700101{n}{len(key)}{ord(key[0])}"
