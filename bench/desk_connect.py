"""The duty-lawyer desk's time to connected: a citizen from the QR poster, a mediator's caucus.

    python -m bench.desk_connect [--runs 20]

Starts ONE real ``server.py serve --no-demo`` on 127.0.0.1 with a fresh data directory; staff
accounts (an admin, a mediator, a duty lawyer) are added with ``server.py user add`` before it
starts, and the admin sets up a service point and shifts through ``/desk/admin/*`` (forms, as
in a browser). Then, ``--runs`` times each:

1. citizen: a code is requested and read from the SMS spool (``<data>/sms-outbox``), the
   citizen joins the queue, the lawyer (available) picks up, the citizen's page reads its
   ticket, and both sides' aiortc peers join their ``/j/<token>`` links; timed from the join
   request to the first video frame each way (split: join→picked, picked→media, and of the
   latter the part until both peers are welcomed and have their answers). The lawyer then ends
   the consultation with a summary (available again).
2. mediator: a mediation (created in the console) whose mediator, media up, then opens and
   visits caucus "a" (in that order: a host's first offer puts them in the joint room); the
   mediator's page issues ``call_duty_lawyer`` into the caucus and posts its one-line
   question to ``/api/sessions/<sid>/desk-ring/<lawyer>`` (the panel's bearer route); the lawyer
   finds the row on the desk and picks it up, its peer lands in the caucus; timed from the
   ring (the command) to the first frame each way between mediator and lawyer. The mediator then
   releases the lawyer.

The people's part is NOT in these figures: the lawyer's click is immediate here (the desk page
shows a new caller on its next 2 s poll, the citizen's page learns the pick-up on its next 2 s
poll), and typing the code, camera permission and the phone page's checks come on top.
The desk limits codes and joins to 30 per address per 10–15 min and all the citizens come from
127.0.0.1, so ``--runs`` is at most 29 on one server (one warm-up round of each path is run
first and not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.takeover import ROOT, Node, Participant, until
from signaling.desk_notify import SmsSpool
from signaling.namespace import NAMESPACE

PASSWORD = "bench-desk-2026-pass"
POINT = "hall-1"
STAFF = (
    ("boss", "管理员 Admin", "admin"),
    ("wang", "王调解员", "mediator"),
    ("li", "李律师", "duty_lawyer"),
)
CSRF = re.compile(r"(?:data-csrf='|name='csrf' value=')([^']+)'")


class Staff:
    """A logged-in staff member's browser: cookies and the session's CSRF token."""

    def __init__(self, url: str, username: str) -> None:
        self.url, self.username, self.csrf = url, username, ""
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def login(self) -> Staff:
        async with self.http.get(self.url + "/login") as r:
            csrf = CSRF.search(await r.text()).group(1)
        form = {"csrf": csrf, "username": self.username, "password": PASSWORD}
        async with self.http.post(self.url + "/login", data=form, allow_redirects=False) as r:
            if r.status != 303:
                raise RuntimeError(f"login {self.username}: {r.status} {await r.text()}")
        return self

    async def page_csrf(self, path: str) -> None:
        async with self.http.get(self.url + path) as r:
            self.csrf = CSRF.search(await r.text()).group(1)

    async def form(self, path: str, fields: dict) -> str:
        """POST a form; the redirect's target (a form's success) or an error."""
        async with self.http.post(
            self.url + path, data={"csrf": self.csrf, **fields}, allow_redirects=False
        ) as r:
            if r.status != 303:
                raise RuntimeError(f"{path}: {r.status} {(await r.text())[:300]}")
            return r.headers["Location"]

    async def api(self, what: str, payload: dict | None = None) -> dict:
        """The desk's JSON API (GET without a payload); raises on an error answer."""
        method = "GET" if payload is None else "POST"
        async with self.http.request(
            method,
            f"{self.url}/desk/api/{what}",
            json=payload,
            headers={"X-CSRF-Token": self.csrf},
        ) as r:
            data = await r.json()
            if r.status != 200:
                raise RuntimeError(f"desk/api/{what}: {r.status} {data}")
            return data

    async def close(self) -> None:
        await self.http.close()


async def call(http: aiohttp.ClientSession, method: str, url: str, payload=None, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, json=payload, headers=headers) as r:
        data = await r.json()
        if r.status != 200:
            raise RuntimeError(f"{method} {url}: {r.status} {data}")
        return data


def token_of(path: str) -> str:
    """``/j/<token>#root=…`` → the token."""
    return path.split("#", 1)[0].rsplit("/j/", 1)[1]


async def peer(url: str, path: str, name: str, color) -> Participant:
    """A page joining its ``/j/<token>`` link: socket.io, then an aiortc peer offering."""
    person = Participant(token_of(path), name, color)
    if not await person.connect(url):
        raise RuntimeError(f"{name}: the server refused the link")
    await person.media()
    return person


def add_staff(data_dir: Path) -> None:
    for username, name, role in STAFF:
        subprocess.run(
            [sys.executable, str(ROOT / "server.py"), "user", "add", username, "--name", name]
            + ["--role", role, "--password-stdin", "--data-dir", str(data_dir)],
            input=PASSWORD + "\n",
            text=True,
            check=True,
            capture_output=True,
            cwd=ROOT,
        )


async def set_up_hall(url: str) -> None:
    """The admin's point (open every day, all day) and the lawyer's shifts: three whole days
    around today (UTC dates), so that one covers now whatever the desk's time zone."""
    admin = await Staff(url, "boss").login()
    try:
        await admin.page_csrf("/desk")
        await admin.form(
            "/desk/admin/points",
            {
                "id": POINT,
                "name": "公共法律服务中心 Legal Service Hall",
                "hours": "1-7 00:00-24:00",
            },
        )
        today = dt.datetime.now(dt.UTC).date()
        for d in (-1, 0, 1):
            day = (today + dt.timedelta(days=d)).isoformat()
            await admin.form(
                "/desk/admin/shifts",
                {"lawyer": "li", "point": POINT, "date": day, "start": "00:00", "end": "23:59"},
            )
    finally:
        await admin.close()


async def citizen_round(url: str, spool: SmsSpool, lawyer: Staff, n: int) -> dict:
    phone = f"1380013{n:04d}"
    base = f"{url}/consult/api/points/{POINT}"
    people: list[Participant] = []
    async with aiohttp.ClientSession() as http:
        try:
            await call(http, "POST", base + "/code", {"phone": phone})
            code = next(
                re.search(r"\b(\d{6})\b", text).group(1)
                for to, _, text in reversed(spool.messages())
                if to == phone
            )
            payload = {"name": f"市民 {n}", "phone": phone, "code": code, "topic": "labour"}
            started = time.monotonic()
            joined = await call(http, "POST", base + "/join", payload | {"consent_online": True})
            picked = (await lawyer.api("pickup", {}))["current"]
            picked_at = time.monotonic()
            ticket = (await call(http, "GET", f"{url}/consult/api/tickets/{joined['ticket']}"))[
                "ticket"
            ]
            if ticket["state"] != "serving":
                raise RuntimeError(f"the citizen's ticket is {ticket['state']}")
            lawyer_page, citizen_page = await asyncio.gather(
                peer(url, picked["join_path"], "lawyer", (200, 40, 40)),
                peer(url, ticket["join_path"], "citizen", (40, 200, 40)),
            )
            people += [lawyer_page, citizen_page]
            answered_at = time.monotonic()
            lid, cid = lawyer_page.welcome["participant"], citizen_page.welcome["participant"]
            await until(
                lambda: (
                    lawyer_page.bot.frames_from(cid) > 0 and citizen_page.bot.frames_from(lid) > 0
                ),
                60,
                0.005,
            )
            done = time.monotonic()
            await lawyer.api("end", {"ticket": picked["id"], "summary": "bench"})
            return {
                "total": done - started,
                "picked": picked_at - started,
                "media": done - picked_at,
                "answered": answered_at - picked_at,
            }
        finally:
            for person in people:
                with contextlib.suppress(Exception):
                    await person.close()


async def new_mediation(mediator: Staff, n: int) -> str:
    """A mediation created in the console; the mediator's link from 'Enter the session'."""
    await mediator.page_csrf("/console")
    fields = {"case_number": f"M-{n}", "title": f"劳动争议 Wage dispute {n}"}
    fields |= {"name0": "Party A", "role0": "party", "side0": "A"}
    where = await mediator.form("/console/sessions", fields)
    async with mediator.http.get(mediator.url + where + "/enter", allow_redirects=False) as r:
        if r.status != 303:
            raise RuntimeError(f"enter: {r.status}")
        return r.headers["Location"]


async def mediator_round(url: str, mediator: Staff, lawyer: Staff, n: int) -> dict:
    people: list[Participant] = []
    path = await new_mediation(mediator, n)
    views: list[dict] = []
    async with aiohttp.ClientSession() as http:
        try:
            host = Participant(token_of(path), "mediator", (200, 200, 40))
            if not await host.connect(url):
                raise RuntimeError("the mediator's link was refused")
            people.append(host)
            host.sio.on("state", views.append, namespace=NAMESPACE)
            await host.media()
            await host.bot.wait_connected(15)
            await host.command(type="create_caucus", caucus="a")
            await host.command(type="visit_caucus", caucus="a")
            mid = host.welcome["participant"]

            def lawyer_in_view() -> dict | None:  # the panel finds the new lawyer in a view
                for view in reversed(views):
                    for p in view.get("participants") or []:
                        if p.get("role") == "duty_lawyer":
                            return p
                return None

            started = time.monotonic()
            await host.command(type="call_duty_lawyer", name="值班律师 Duty lawyer", space="a")
            pid = (await until(lawyer_in_view, 20, 0.005))["id"]
            sid = host.welcome["session"]["session"]["id"]
            ring = f"{url}/api/sessions/{sid}/desk-ring/{pid}"
            await call(http, "POST", ring, {"question": "违约金能否主张？"}, host.token)
            queue = (await lawyer.api("state"))["desk"]["queue"]
            row = next(r for r in queue if r["kind"] == "mediation")
            picked = (await lawyer.api("pickup", {"ticket": row["id"]}))["current"]
            picked_at = time.monotonic()
            guest = await peer(url, picked["join_path"], "lawyer", (40, 40, 200))
            people.append(guest)
            answered_at = time.monotonic()
            try:
                await until(
                    lambda: host.bot.frames_from(pid) > 0 and guest.bot.frames_from(mid) > 0,
                    60,
                    0.005,
                )
            except TimeoutError:
                raise RuntimeError(
                    f"no media: mediator got {host.bot.frames_from(pid)} frames, lawyer "
                    f"{guest.bot.frames_from(mid)}; the lawyer in the view: {lawyer_in_view()}, "
                    f"the mediator: {views[-1]['you']}"
                ) from None
            done = time.monotonic()
            shown = (await call(http, "GET", ring, token=host.token))["ring"]
            if shown["state"] != "accepted":
                raise RuntimeError(f"the panel shows {shown}")
            if lawyer_in_view()["space"] != "caucus:a":  # as the mediator's view shows it
                raise RuntimeError(f"the lawyer is in {lawyer_in_view()['space']}")
            await host.command(type="remove", participant=pid)  # released: the desk is free
            return {
                "total": done - started,
                "picked": picked_at - started,
                "media": done - picked_at,
                "answered": answered_at - picked_at,
            }
        finally:
            for person in people:
                with contextlib.suppress(Exception):
                    await person.close()


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


def summary(name: str, rows: list[dict]) -> None:
    print(f"{name}: {len(rows)} runs")
    for key, label in (
        ("total", "request → first frames both ways"),
        ("picked", "  → picked"),
        ("media", "  picked → media"),
        ("answered", "    of which: peers joined and answered"),
    ):
        values = [r[key] for r in rows]
        print(
            f"  {label:40s} p50 {statistics.median(values):.3f} s  p95 {p95(values):.3f} s  "
            f"max {max(values):.3f} s"
        )


async def bench(url: str, spool: SmsSpool, runs: int) -> None:
    lawyer = await Staff(url, "li").login()
    mediator = await Staff(url, "wang").login()
    try:
        await lawyer.page_csrf("/desk")
        await lawyer.api("status", {"status": "available"})
        citizens, mediations = [], []
        for n in range(runs + 1):  # round 0 warms up (imports, first codecs) and is not counted
            c = await citizen_round(url, spool, lawyer, n)
            m = await mediator_round(url, mediator, lawyer, n)
            if n:
                citizens.append(c)
                mediations.append(m)
            print(
                f"run {n}{' (warm-up)' if not n else ''}: citizen {c['total']:.3f} s "
                f"({c['picked']:.3f} + {c['media']:.3f}), mediator {m['total']:.3f} s "
                f"({m['picked']:.3f} + {m['media']:.3f}), load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        summary("citizen (QR poster: join request → lawyer and citizen on video)", citizens)
        summary("mediator (ring from the caucus → lawyer in the caucus on video)", mediations)
    finally:
        await lawyer.close()
        await mediator.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    if not 1 <= args.runs <= 29:
        ap.error("--runs: 1 to 29 (the desk allows 30 codes per address per 15 min)")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="parley-desk-bench-") as tmp:
        data = Path(tmp) / "data"
        add_staff(data)
        node = Node(data, {}, demo=False)
        try:
            url, _ = node.start()
            asyncio.run(set_up_hall(url))
            asyncio.run(bench(url, SmsSpool(data / "sms-outbox"), args.runs))
        finally:
            node.stop()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print("the lawyer's click is immediate here: the people's part comes on top")


if __name__ == "__main__":
    main()
