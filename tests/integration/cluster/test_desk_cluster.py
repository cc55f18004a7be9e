"""The desk on Redis (cluster/desk.py): one hall's queue across two real server processes, each
with its own data directory, on one real redis-server.

A citizen asks for a code through node A and joins the queue through node B; their ticket reads
the same on both (position 1). Two duty lawyers on shift, one logged in on each node, press
"pick up next" at the same moment: exactly one gets the citizen, the other is told nobody is
waiting (or that the citizen was taken). The citizen's page opens its link on the other node,
is redirected to the node that made the consultation, and the lawyer and the citizen see each
other there (real aiortc peers). Bad input through a clustered node is refused as on one."""

from __future__ import annotations

import asyncio
import secrets
import time

import aiohttp
import pytest
import redis

from bench.takeover import Page
from cluster.desk import RedisDeskStore
from cluster.ledger import RedisLedgerStore
from cluster.peer_files import HEADER, signature
from desk.store import DeskStore
from tests.integration.cluster.test_codes_cluster import error, last_code, post
from tests.integration.desk.helpers import PASSWORD, POINT, Lawyer, call
from tests.integration.desk.test_desk_documents import PDF, attach
from tests.integration.signaling.conftest import until
from tests.support.redisd import redis_server  # noqa: F401 - fixture
from tests.support.server_proc import add_staff, cluster_node

pytestmark = pytest.mark.slow


async def test_one_queue_across_two_nodes(tmp_path, redis_server):  # noqa: F811
    url = redis_server.url.rsplit("/", 1)[0] + "/9"  # a database of its own on the test server
    client = redis.Redis.from_url(url)
    client.flushdb()
    desk = RedisDeskStore.from_url(url)  # the hall and its shifts, as the admin page writes them
    desk.add_point(POINT, "公共法律服务中心 Legal Service Hall", "1-7 00:00-24:00")
    for name in ("li", "wu"):
        desk.add_shift(name, POINT, time.time() - 60, time.time() + 3600)
        add_staff(tmp_path / "cli", name, f"律师 {name}", "duty_lawyer", PASSWORD, url)
    env = {"PARLEY_SECRET": secrets.token_hex(32), "PARLEY_REDIS_URL": url}
    env["PARLEY_DRAIN_SECONDS"] = "0"
    made, lawyers, pages = [], [], []
    try:
        a = cluster_node(tmp_path / "a", "a", env, made, "--no-demo")
        b = cluster_node(tmp_path / "b", "b", env, made, "--no-demo")
        async with aiohttp.ClientSession() as http:
            phone = "13800138000"
            assert await post(http, a, "/code", {"phone": phone}) == (200, {"ok": True})
            body = {"name": "张三", "phone": phone, "code": last_code(tmp_path / "a", phone)}
            body |= {"topic": "labour", "consent_online": True}
            status, data = await post(http, b, "/join", body)
            assert status == 200, data
            secret = data["ticket"]
            for node in (a, b):
                status, data = await call(http, "GET", f"{node.url}/consult/api/tickets/{secret}")
                assert status == 200 and data["ticket"]["position"] == 1, data

            li, wu = Lawyer(a, "li"), Lawyer(b, "wu")
            lawyers += [li, wu]
            for lawyer in (li, wu):
                await lawyer.login()
                assert (await lawyer.post("status", {"status": "available"}))[0] == 200
                status, state = await lawyer.get()  # each desk sees the one queue
                assert [r["name"] for r in state["desk"]["queue"]] == ["张三"], state

            # a file the citizen attaches through A: the lawyer on B opens it (B fetches it
            # from A, signed with the cluster's key, and keeps a copy)
            status, data = await attach(http, a, secret, PDF)
            assert status == 200, data
            doc, tid = data["document"], state["desk"]["queue"][0]["id"]
            async with wu.http.get(f"{b.url}/desk/api/tickets/{tid}/documents/{doc['id']}") as r:
                assert r.status == 200 and await r.read() == PDF
            copy = tmp_path / "b" / "desk-documents" / str(tid) / f"{doc['id']}.bin"
            assert copy.read_bytes() == PDF
            peer = f"/cluster/desk-documents/{tid}/{doc['id']}"
            later = int(time.time() + 20)
            for headers in (
                {},  # not a node of the cluster
                {HEADER: f"{later}.{signature(b'k' * 32, peer, later)}"},  # another key
                {HEADER: f"{later}.{'0' * 64}"},
                {HEADER: "soon.abc"},
            ):
                async with http.get(a.url + peer, headers=headers) as r:
                    assert r.status == 403, headers
            answers = await asyncio.gather(li.post("pickup", {}), wu.post("pickup", {}))
            won = [i for i, (status, _) in enumerate(answers) if status == 200]
            assert len(won) == 1, answers
            lost = answers[1 - won[0]]
            assert lost[0] in (404, 409) and lost[1]["error"]["code"] in ("not_found", "conflict")
            winner, other = ((a, b), (b, a))[won[0]]
            current = answers[won[0]][1]["current"]
            status, data = await call(http, "GET", f"{other.url}/consult/api/tickets/{secret}")
            assert status == 200, data
            served = data["ticket"]
            assert served["state"] == "serving" and served["join_path"].startswith("/j/"), data

            # the lawyer on their node; the citizen's page opens on the other and follows
            lawyer = Page(current["join_path"].rsplit("/", 1)[1], "lawyer", (200, 40, 40))
            citizen = Page(served["join_path"].rsplit("/", 1)[1], "citizen", (40, 200, 40))
            pages += [lawyer, citizen]
            assert await lawyer.open(winner.url) == winner.url
            assert await citizen.open(other.url) == winner.url
            for page in (lawyer, citizen):
                await page.media()
            l_id, c_id = lawyer.welcome["participant"], citizen.welcome["participant"]
            await until(
                lambda: lawyer.bot.frames_from(c_id) > 5 and citizen.bot.frames_from(l_id) > 5,
                30,
            )

            # the winner hands the citizen to the colleague on the other node, who takes the
            # call there (the lawyer's place reissued on the serving node through the relay),
            # ends it there (the session ends on the serving node) and the citizen rates
            giver, taker = (li, wu)[won[0]], (li, wu)[1 - won[0]]
            tid, session = current["id"], current["session"]
            status, data = await giver.post("transfer", {"ticket": tid, "to": taker.username})
            assert status == 200, data
            status, data = await taker.post("pickup", {})
            assert status == 200, data
            taken = data["current"]
            assert taken["id"] == tid and taken["join_path"] != current["join_path"], data
            summary = "欠条保留好 Keep the IOU."
            status, data = await taker.post("end", {"ticket": tid, "summary": summary})
            assert status == 200, data
            for node in (a, b):
                status, data = await call(http, "GET", f"{node.url}/consult/api/tickets/{secret}")
                assert data["ticket"]["state"] == "done", data
                assert data["ticket"]["summary"] == summary, data
            rated = await call(
                http, "POST", f"{other.url}/consult/api/tickets/{secret}/rating", {"stars": 5}
            )
            assert rated[0] == 200, rated
            ledger = RedisLedgerStore.from_url(url)
            try:

                def steps():
                    return [e.type for e in ledger.read(session) if e.type != "media.stats"]

                await until(lambda: "desk.rating" in steps(), 10)
                got = steps()
            finally:
                ledger.close()
            desk_steps = [t for t in got if t.startswith("desk.")]
            assert desk_steps == [  # nobody was available when the citizen queued: no offer
                "desk.queued",
                "desk.accepted",
                "desk.transferred",
                "desk.accepted",
                "desk.summary",
                "desk.rating",
            ], got
            assert got.index("session.ended") < got.index("desk.summary")

            # bad input, on a clustered node as on a single one
            status, data = await li.post("pickup", {"ticket": "x"})
            assert status == 400 and data["error"]["code"] == "invalid"
            bad = await post(http, a, "/join", {"phone": phone})
            assert error(bad) == (400, "invalid")
        names = [k.decode() for k in client.keys("parley:desk:*")]
        assert f"parley:desk:done:{POINT}" in names and any(
            n.startswith("parley:desk:ticket:") for n in names
        )
        for node in ("a", "b"):  # nothing of the desk went to a node's own file
            if (tmp_path / node / "desk.sqlite3").exists():
                own = DeskStore(tmp_path / node)
                assert own.since(0) == [] and own.points() == []
                own.close()
    finally:
        for page in pages:
            await page.close()
        for lawyer in lawyers:
            await lawyer.close()
        for node in made:
            node.stop()
        desk.close()
        client.close()
