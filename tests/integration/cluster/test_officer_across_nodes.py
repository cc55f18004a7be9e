"""A prison officer's console on node 1 sees and controls a visit node 2 serves (issue #15): two
real ``server.py serve --redis`` processes on one real redis-server, one secret; the visits
database is node 1's, moved to the cluster with ``server.py visits migrate``. A visit booked for now opens on node 1; its two terminals (aiortc peers
with the kiosk tokens) connect there, are checked in and admitted, media flows. Node 1 is
SIGKILLed; node 2 takes the session over and the terminals reconnect to it with media. Node 1
starts again (same node id, port and data directory): its officer console lists the visit (from
the ledger) as live, and a warning then an end made there take effect on node 2 (the ledger
has them from the officer, both terminals get the warning and are ended), and the booking
completes on node 1. Bad input on the officer routes is refused as on one node."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
import redis
import socketio

from cluster.ledger import RedisLedgerStore
from cluster.visits import RedisVisitStore
from tests.integration.signaling.conftest import until
from tests.integration.visits.conftest import (
    ALL_DAY,
    PASSWORD,
    Province,
    approved_booking,
    id_of,
    staff_session,
    visit_now,
)
from tests.integration.visits.test_live_visit import Peer, check_in, kiosk_live, post
from tests.support.procs import free_port
from tests.support.province import build
from tests.support.redisd import redis_server  # noqa: F401 - fixture
from tests.support.server_proc import ServerProcess, add_staff, cluster_node, migrate_visits
from visits.booking import Rules
from visits.reservations import Reservations

pytestmark = pytest.mark.slow


async def rejoin(url: str, name: str, token: str, color, within: float = 30.0) -> Peer:
    """A terminal connecting again with its token until the node serves its session."""
    end = time.monotonic() + within
    while True:
        peer = Peer(name)
        try:
            await peer.join(url, token, color)
            return peer
        except socketio.exceptions.ConnectionError:
            await peer.close()
            assert time.monotonic() < end, f"{name}: the node never served the session"
            await asyncio.sleep(0.2)


async def test_node_1s_officer_warns_and_ends_a_visit_node_2_serves(tmp_path, redis_server):  # noqa: F811
    url = redis_server.url.rsplit("/", 1)[0] + "/14"  # a database of its own on the test server
    redis.Redis.from_url(url).flushdb()
    data1 = tmp_path / "n1"
    store, directory, res, ids = build(data1, ALL_DAY)
    p = Province(None, store, directory, res, ids)
    start, minutes = visit_now(p)
    bid = approved_booking(p, start, minutes)
    family_token = directory.issue_credential("bx-1", 0.0)
    inmate_token = directory.issue_credential("pa-1", 0.0)
    store.close()
    migrate_visits(data1, url)  # the cluster's visits database: node 1's, moved to Redis
    for username, role in (("op", "operator"), ("off-a", "officer"), ("off-b", "officer")):
        add_staff(tmp_path / "cli", username, username, role, PASSWORD, url)

    env = {
        "PARLEY_SECRET": "ab" * 32,
        "PARLEY_REDIS_URL": url,
        "PARLEY_LEASE_TTL_MS": "2000",
        "PARLEY_DRAIN_SECONDS": "0",
    }
    ports = {"n1": free_port(), "n2": free_port()}

    def node(name: str, data) -> ServerProcess:
        return cluster_node(data, name, env, [], "--no-demo", port=ports[name])

    peers: list[Peer] = []
    n1 = node("n1", data1)
    n2 = node("n2", tmp_path / "n2")
    try:
        p.url = n1.url
        async with aiohttp.ClientSession() as http:
            fam_live = await kiosk_live(http, n1.url, family_token)
            inm_live = await kiosk_live(http, n1.url, inmate_token)
        session = fam_live["session"]
        family, inmate = Peer("family"), Peer("inmate")
        peers += [family, inmate]
        await family.join(n1.url, fam_live["token"], (200, 40, 40), consent=True)
        await inmate.join(n1.url, inm_live["token"], (40, 40, 200))
        await check_in(p, bid, "a1v0", id_of("a1", 0))
        await until(lambda: family.last().get("session", {}).get("clock", {}).get("running"), 20)
        await until(lambda: family.bot.frames_from(inmate.pid) > 5, timeout=20)

        killed = time.monotonic()
        n1.stop(sig_kill=True)  # mid-visit: both terminals connected, media flowing
        family2 = await rejoin(n2.url, "family", fam_live["token"], (200, 40, 40))
        peers.append(family2)
        inmate2 = await rejoin(n2.url, "inmate", inm_live["token"], (40, 40, 200))
        peers.append(inmate2)
        await until(lambda: family2.bot.frames_from(inmate2.pid) > 5, timeout=20)
        await until(lambda: inmate2.bot.frames_from(family2.pid) > 5, timeout=20)
        print(f"\nterminals back on node 2 with media {time.monotonic() - killed:.1f} s after kill")
        assert (family2.pid, inmate2.pid) == (family.pid, inmate.pid)

        n1 = node("n1", data1)  # back, same id, port and data: node 2 keeps serving the visit
        off_a, csrf = await staff_session(n1.url, "off-a")
        async with off_a:
            base = f"{n1.url}/visits/live/{session}"
            async with off_a.get(f"{n1.url}/visits/sites/prison-a/live") as r:
                listing = await r.text()
            assert r.status == 200 and f"data-session='{session}'" in listing
            assert "进行中 live" in listing  # the ledger's state, read on node 1
            async with off_a.get(f"{n1.url}/visits/sites/prison-a/live.json") as r:
                [visit] = (await r.json())["visits"]
            assert visit["session"] == session and visit["status"]["code"] == "live"
            assert [e["online"] for e in visit["ends"]] == [True, True]

            # bad input, as on one node: refused, nothing sent to node 2
            status, html = await post(off_a, f"{base}/warn", csrf, "shout")
            assert status == 400 and "data-code='invalid'" in html
            status, html = await post(off_a, f"{n1.url}/visits/live/s-nothere/warn", csrf, "other")
            assert status == 404 and "data-code='not_found'" in html
            async with off_a.post(
                f"{base}/mute",
                data={"csrf": csrf, "side": "officer", "on": "1"},
                allow_redirects=False,
            ) as r:
                assert r.status == 400
            status, _ = await post(off_a, f"{base}/warn", "wrong-csrf", "language")
            assert status == 403

            status, _ = await post(off_a, f"{base}/warn", csrf, "language")
            assert status == 303
            for peer in (family2, inmate2):
                await until(lambda peer=peer: peer.last()["session"]["warnings"], timeout=10)
                [warning] = peer.last()["session"]["warnings"]
                assert warning["reason"] == "language"

            status, _ = await post(off_a, f"{base}/end", csrf, "security")
            assert status == 303
        for peer in (family2, inmate2):
            await until(lambda peer=peer: peer.last()["session"]["ended"], timeout=10)
            assert peer.last()["session"]["ended_reason"] == "terminated:security"

        ledger = RedisLedgerStore.from_url(url)
        events = ledger.read(session)
        ledger.close()
        [warned] = [e for e in events if e.type == "visit.warned"]
        [ended] = [e for e in events if e.type == "session.ended"]
        assert warned.actor == ended.actor == "staff:off-a"
        assert ended.data["reason"] == "terminated:security"
        restarts = [
            e
            for e in events
            if e.type == "participant.disconnected" and e.data.get("reason") == "node_restart"
        ]
        assert {e.data["participant"] for e in restarts} == {family.pid, inmate.pid}
        visits = RedisVisitStore.from_url(tmp_path / "reader", url)  # the cluster's database
        try:  # the booking completes (at once: node 1's end route steps the clock)
            book = Reservations(visits, Rules())
            await until(lambda: book.get(bid).status == "completed", timeout=10)
        finally:
            visits.close()
    finally:
        for peer in peers:
            await peer.close()
        n1.stop()
        n2.stop()
