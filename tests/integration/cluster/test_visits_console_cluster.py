"""The visitation console on two real ``server.py serve --redis`` nodes sharing the cluster's
visits database (cluster/visits.py), moved there with ``server.py visits migrate``: the counter
books through node A, the facility approves through node B, and A's page shows it approved; two
counters on the two nodes booking one slot at the same moment: one booking, the other refused
with ``conflict``; the nodes' own files never hold any of it."""

from __future__ import annotations

import asyncio
import re
import secrets

import redis

from tests.integration.visits.conftest import DAILY, PASSWORD, Province, staff_session
from tests.integration.visits.test_visits_console import book
from tests.support.province import build
from tests.support.redisd import redis_server  # noqa: F401 - fixture
from tests.support.server_proc import add_staff, cluster_node, migrate_visits
from visits.store import VisitStore


async def test_a_booking_made_on_one_node_is_decided_on_another(tmp_path, redis_server):  # noqa: F811
    url = redis_server.url.rsplit("/", 1)[0] + "/15"  # a database of its own on the test server
    redis.Redis.from_url(url).flushdb()
    store, directory, res, ids = build(tmp_path / "one", DAILY)
    store.close()
    migrate_visits(tmp_path / "one", url)
    for username, role in (("op", "operator"), ("off-a", "officer")):
        add_staff(tmp_path / "cli", username, username, role, PASSWORD, url)
    env = {"PARLEY_SECRET": secrets.token_hex(32), "PARLEY_REDIS_URL": url}
    env["PARLEY_DRAIN_SECONDS"] = "0"
    made = []
    try:
        a = cluster_node(tmp_path / "a", "a", env, made, "--no-demo")
        b = cluster_node(tmp_path / "b", "b", env, made, "--no-demo")
        p = Province(a.url, None, None, None, ids)
        op, op_csrf = await staff_session(a.url, "op")
        off, off_csrf = await staff_session(b.url, "off-a")
        async with op, off:
            bid = await book(op, a.url, op_csrf, p)
            day = p.day().isoformat()
            async with off.get(f"{b.url}/visits/sites/prison-a", params={"date": day}) as r:
                assert f"/visits/bookings/{bid}/decide" in await r.text()  # B lists A's booking
            async with off.post(
                f"{b.url}/visits/bookings/{bid}/decide",
                data={"csrf": off_csrf, "decision": "approve"},
                allow_redirects=False,
            ) as r:
                assert r.status == 303, await r.text()
            async with op.get(f"{a.url}/visits/sites/bureau-x", params={"date": day}) as r:
                html = await r.text()
            row = re.search(rf"<tr id='b{bid}' data-booking='{bid}'>.*?</tr>", html).group(0)
            assert "已批准 approved" in row, row  # A shows B's decision

            # one inmate's visit in the same rooms at the same time (two relatives asking), from
            # the counters on A and on B at once: one booking
            op_b, csrf_b = await staff_session(b.url, "op")
            async with op_b:
                got = await asyncio.gather(
                    _book_at(op, a.url, op_csrf, p, "A-002", "a2v0"),
                    _book_at(op_b, b.url, csrf_b, p, "A-002", "a2v1"),
                    return_exceptions=True,
                )
            assert sorted(s for s, _ in got) == [303, 409], got
            assert "slot: taken" in next(body for s, body in got if s == 409)
        for node in ("a", "b"):  # each node's own file holds nothing of it
            own = VisitStore(tmp_path / node)
            try:
                assert own.rows("SELECT count(*) FROM bookings") == [(0,)]
            finally:
                own.close()
    finally:
        for proc in made:
            proc.stop()


async def _book_at(http, url, csrf, p, number: str, visitor: str) -> tuple[int, str]:
    """Book inmate ``number`` at 11:00 on p.day() in room bx-1 with pa-1 (the terminals both
    counters want); (status, body)."""
    day = p.day()
    async with http.get(
        f"{url}/visits/sites/bureau-x/book",
        params={
            "facility": "prison-a",
            "number": number,
            "dates": day.isoformat(),
            "minutes": "30",
        },
    ) as r:
        inmate = re.search(r"name='inmate' value='(\d+)'", await r.text()).group(1)
    data = [
        ("csrf", csrf),
        ("inmate", inmate),
        ("minutes", "30"),
        ("slot", f"{day.isoformat()}T11:00|bx-1|pa-1"),
        ("visitor", str(p.ids[visitor])),
    ]
    async with http.post(
        f"{url}/visits/sites/bureau-x/bookings", data=data, allow_redirects=False
    ) as r:
        return r.status, await r.text()
