"""Citizens and lawyers through the desk's real HTTP API; codes read from the SMS spool."""

from __future__ import annotations

import re
import time

import aiohttp

from bench.bot import Bot
from server import CONSULT
from signaling.desk_notify import SmsSpool
from signaling.namespace import NAMESPACE
from signaling.staff import ACCOUNTS

PASSWORD = "duty-desk-2026-pass"
POINT = "hall-1"


def setup_desk(running, lawyers=("li",), on_shift=("li",), hours="1-7 00:00-24:00"):
    accounts = running.app[ACCOUNTS]
    for name in lawyers:
        accounts.add(name, f"律师 {name}", ["duty_lawyer"], PASSWORD)
    store = running.app[CONSULT].store
    store.add_point(POINT, "公共法律服务中心 Legal Service Hall", hours)
    now = time.time()
    for name in on_shift:
        store.add_shift(name, POINT, now - 60, now + 3600)
    return store


def spool(running) -> SmsSpool:
    return SmsSpool(running.app[CONSULT].notifier.sms.directory)


def last_code(running, phone: str) -> str:
    for to, _, text in reversed(spool(running).messages()):
        if to == phone:
            return re.search(r"\b(\d{6})\b", text).group(1)
    raise AssertionError(f"no code was sent to {phone}")


async def call(http, method, url, payload=None, headers=None):
    async with http.request(method, url, json=payload, headers=headers or {}) as r:
        try:
            data = await r.json()
        except aiohttp.ContentTypeError:
            data = {"text": await r.text()}
        return r.status, data


async def queue_citizen(http, running, name, phone, topic="labour", **extra):
    base = f"{running.url}/consult/api/points/{POINT}"
    status, data = await call(http, "POST", base + "/code", {"phone": phone})
    assert status == 200, data
    code = last_code(running, phone)
    payload = {"name": name, "phone": phone, "code": code, "topic": topic, "consent_online": True}
    status, data = await call(http, "POST", base + "/join", payload | extra)
    assert status == 200, data
    return data["ticket"]


async def ticket(http, running, secret):
    status, data = await call(http, "GET", f"{running.url}/consult/api/tickets/{secret}")
    assert status == 200, data
    return data["ticket"]


class Lawyer:
    """A logged-in duty lawyer's browser session: cookies and the CSRF token of the desk page."""

    def __init__(self, running, username):
        self.running, self.username = running, username
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def login(self):
        url = self.running.url
        async with self.http.get(url + "/login") as r:
            csrf = re.search(r"name='csrf' value='([^']+)'", await r.text()).group(1)
        async with self.http.post(
            url + "/login",
            data={"csrf": csrf, "username": self.username, "password": PASSWORD},
            allow_redirects=False,
        ) as r:
            assert r.status == 303, await r.text()
        async with self.http.get(url + "/desk") as r:
            assert r.status == 200
            self.csrf = re.search(r"data-csrf='([^']+)'", await r.text()).group(1)
        return self

    async def login_as_other(self):
        """Log in a staff member who has no desk (the desk page would answer 403)."""
        url = self.running.url
        async with self.http.get(url + "/login") as r:
            csrf = re.search(r"name='csrf' value='([^']+)'", await r.text()).group(1)
        async with self.http.post(
            url + "/login",
            data={"csrf": csrf, "username": self.username, "password": PASSWORD},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
        async with self.http.get(url + "/desk") as r:
            assert r.status == 403
        return self

    async def get(self):
        return await call(self.http, "GET", self.running.url + "/desk/api/state")

    async def post(self, what, payload, csrf=True):
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        return await call(
            self.http, "POST", f"{self.running.url}/desk/api/{what}", payload, headers
        )

    async def close(self):
        await self.http.close()


async def bot_from_path(running, path, color, name):
    """A real aiortc peer joining through the invitation link ``/j/<token>``."""
    token = path.rsplit("/", 1)[1]
    sio, inbox = await running.client(token)
    welcome = inbox["welcome"][0]
    bot = Bot(
        welcome["participant"], slots=welcome["slots"], color=color, tone_hz=None, size=(160, 120)
    )
    reply = await sio.call(
        "offer", {"v": 1, "sdp": await bot.create_offer()}, namespace=NAMESPACE, timeout=20
    )
    assert reply["ok"], reply
    await bot.accept_answer(reply["sdp"])
    bot.set_slot_map(reply["slots"])
    sio.on("slots", lambda msg: bot.set_slot_map(msg["slots"]), namespace=NAMESPACE)
    await bot.wait_connected(15)
    return sio, bot
