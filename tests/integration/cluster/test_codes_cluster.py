"""Codes on Redis (cluster/codes.py): two real server processes, each with its own data
directory, on one real redis-server.

Desk phone codes: a code requested through node A (sent to A's SMS spool) lets the citizen join
through node B, and is then used up on both; the per-phone window (3 codes in 15 minutes)
counts the requests made to both nodes; wrong codes tried alternately on the two nodes lock the
code after five in total; bad input is refused the same way. The family page's codes likewise:
requested through A, signed in with through B, and the per-contact window counts both; the
sign-in made through B serves the relative through A, and signing out through A ends it on B.

A mediation's identity code after a failover: the mediator on node A has a code mailed to the
party (a real SMTP server on loopback); node A is SIGKILLed; node B takes the session over and
the party, reconnected to B, enters the code they received: accepted, and the ledger records
the check."""

from __future__ import annotations

import asyncio
import re
import secrets
import time

import aiohttp
import pytest
import redis
from aiosmtpd.controller import Controller

from bench.takeover import Participant
from cluster.desk import RedisDeskStore
from cluster.ledger import RedisLedgerStore
from signaling.desk_notify import SmsSpool
from signaling.namespace import NAMESPACE
from signaling.tokens import TokenSigner
from tests.integration.signaling.conftest import until
from tests.integration.signaling.test_one_time_code import Inbox
from tests.support import province
from tests.support.procs import free_port
from tests.support.redisd import redis_server  # noqa: F401 - fixture
from tests.support.server_proc import ServerProcess, migrate_visits, wait_until
from visits.directory import insert_visitor

pytestmark = pytest.mark.slow

POINT = "hall-1"


RELATIVE = "13700137000"  # the contact on an approved visitor record, in both nodes' files


def open_hall(redis_url: str) -> None:
    """The service point and a lawyer on shift, in the cluster's desk (Redis)."""
    store = RedisDeskStore.from_url(redis_url)
    store.add_point(POINT, "公共法律服务中心 Legal Service Hall", "1-7 00:00-24:00")
    store.add_shift("li", POINT, time.time() - 60, time.time() + 3600)
    store.close()


def open_visits(data_dir) -> None:
    """The province's visitation records in this data directory's file, with one relative reachable
    by phone."""
    visits, directory, _, _ = province.build(data_dir)
    visitor = {
        "facility": "prison-a",
        "inmate_number": "A-001",
        "name": "亲属 王",
        "relationship": "spouse",
        "id_number": "220101198001010001",
        "evidence": "DOC-W",
        "approved_by": "officer-a",
        "reason": "kinship checked",
        "expires": "2031-12-31",
        "contact": RELATIVE,
    }
    directory.add(insert_visitor, visitor)
    visits.close()


def last_code(data_dir, phone: str) -> str:
    for to, _, text in reversed(SmsSpool(data_dir / "sms-outbox").messages()):
        if to == phone:
            return re.search(r"\b(\d{6})\b", text).group(1)
    raise AssertionError(f"no code was sent to {phone}")


def sent_codes(data_dir, phone: str) -> list[str]:
    texts = [t for to, _, t in SmsSpool(data_dir / "sms-outbox").messages() if to == phone]
    return [re.search(r"\b(\d{6})\b", t).group(1) for t in texts]


async def family(http, node: ServerProcess, path: str, **payload) -> tuple[int, dict]:
    async with http.post(f"{node.url}/family/api{path}", json=payload) as r:
        return r.status, await r.json()


async def post(http, node: ServerProcess, path: str, payload) -> tuple[int, dict]:
    async with http.post(f"{node.url}/consult/api/points/{POINT}{path}", json=payload) as r:
        return r.status, await r.json()


def join_body(phone: str, code: str) -> dict:
    return {"name": "张三", "phone": phone, "code": code, "topic": "labour", "consent_online": True}


def error(answer: tuple[int, dict]) -> tuple[int, str]:
    status, data = answer
    return status, data["error"]["code"]


async def test_a_code_from_one_node_is_accepted_through_another(tmp_path, redis_server):  # noqa: F811
    url = redis_server.url.rsplit("/", 1)[0] + "/10"  # a database of its own on the test server
    client = redis.Redis.from_url(url)
    client.flushdb()
    env = {"PARLEY_SECRET": secrets.token_hex(32), "PARLEY_REDIS_URL": url}
    env["PARLEY_DRAIN_SECONDS"] = "0"
    open_hall(url)
    open_visits(tmp_path / "a")
    migrate_visits(tmp_path / "a", url)  # the cluster's visits database, for both nodes
    a = ServerProcess(tmp_path / "a", "--no-demo", env={**env, "PARLEY_NODE_ID": "a"})
    b = ServerProcess(tmp_path / "b", "--no-demo", env={**env, "PARLEY_NODE_ID": "b"})
    try:
        a.start_quiet()
        b.start_quiet()
        async with aiohttp.ClientSession() as http:
            phone = "13800138000"
            assert await post(http, a, "/code", {"phone": phone}) == (200, {"ok": True})
            code = last_code(tmp_path / "a", phone)
            status, data = await post(http, b, "/join", join_body(phone, code))
            assert status == 200 and data["ticket"], data
            # used up, on both nodes
            for node in (a, b):
                answer = await post(http, node, "/join", join_body(phone, code))
                assert error(answer) == (400, "no_code")
            # the per-phone window counts both nodes' requests: 3 codes a phone per 15 minutes
            assert (await post(http, b, "/code", {"phone": phone}))[0] == 200
            assert (await post(http, a, "/code", {"phone": phone}))[0] == 200
            for node in (b, a):
                answer = await post(http, node, "/code", {"phone": phone})
                assert error(answer) == (429, "throttled")
            # wrong codes on either node count together: the fifth locks the code
            other = "13900139000"
            assert (await post(http, b, "/code", {"phone": other}))[0] == 200
            code = last_code(tmp_path / "b", other)
            wrong = "000000" if code != "000000" else "111111"
            for node in (a, b, a, b):
                answer = await post(http, node, "/join", join_body(other, wrong))
                assert error(answer) == (400, "wrong_code")
            assert error(await post(http, a, "/join", join_body(other, wrong))) == (429, "locked")
            assert error(await post(http, b, "/join", join_body(other, code))) == (400, "no_code")
            # bad input, on a clustered node as on a single one
            assert error(await post(http, b, "/code", {"phone": "12345"})) == (400, "invalid")
            assert error(await post(http, a, "/join", {"phone": phone})) == (400, "invalid")
            bad = join_body(phone, "12ab56")
            assert error(await post(http, b, "/join", bad)) == (400, "invalid")
            # the family page: a code sent by node A signs the relative in through node B
            assert (await family(http, a, "/code", contact=RELATIVE))[0] == 200
            code = wait_until(lambda: sent_codes(tmp_path / "a", RELATIVE), 10)[-1]
            status, data = await family(http, b, "/login", contact=RELATIVE, code=code)
            assert status == 200 and data["token"], data
            # signed in through B, served through A; signed out through A, gone on B too
            signed_in = {"Authorization": "Bearer " + data["token"]}
            async with http.get(f"{a.url}/family/api/me", headers=signed_in) as r:
                assert r.status == 200, await r.text()
                assert [v["name"] for v in (await r.json())["records"]] == ["亲属 王"]
            async with http.post(f"{a.url}/family/api/logout", headers=signed_in) as r:
                assert r.status == 200
            async with http.get(f"{b.url}/family/api/me", headers=signed_in) as r:
                assert r.status == 401
            answer = await family(http, a, "/login", contact=RELATIVE, code=code)
            assert error(answer) == (400, "no_code")
            # 3 codes a contact per 15 minutes, counted on both nodes
            assert (await family(http, b, "/code", contact=RELATIVE))[0] == 200
            assert (await family(http, a, "/code", contact=RELATIVE))[0] == 200
            answer = await family(http, b, "/code", contact=RELATIVE)
            assert error(answer) == (429, "throttled")
            answer = await family(http, a, "/login", contact=RELATIVE, code="12ab56")
            assert error(answer) == (400, "invalid")
        names = [k.decode() for k in client.keys("parley:*")]
        assert any(n.startswith("parley:code:") for n in names)  # the codes are in Redis
        assert any(n.startswith("parley:window:") for n in names)
        numbers = (phone, other, RELATIVE)
        assert not [n for n in names if any(x in n for x in numbers)]  # pseudonyms, no numbers
    finally:
        a.stop()
        b.stop()
        client.close()


async def otp(person: Participant, **payload) -> dict:
    return await person.sio.call("otp", {"v": 1, **payload}, namespace=NAMESPACE, timeout=15)


async def test_an_identity_code_sent_before_a_failover_verifies_after_it(
    tmp_path,
    redis_server,  # noqa: F811
):
    url = redis_server.url.rsplit("/", 1)[0] + "/12"  # a database of its own on the test server
    redis.Redis.from_url(url).flushdb()
    inbox, port = Inbox(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    secret = secrets.token_hex(32)
    env = {"PARLEY_SECRET": secret, "PARLEY_REDIS_URL": url, "PARLEY_LEASE_TTL_MS": "2000"}
    env |= {"PARLEY_DRAIN_SECONDS": "0", "PARLEY_SMTP_HOST": "127.0.0.1"}
    env |= {"PARLEY_SMTP_PORT": str(port), "PARLEY_SMTP_STARTTLS": "0"}
    a = ServerProcess(tmp_path / "a", env={**env, "PARLEY_NODE_ID": "a"})
    b = ServerProcess(tmp_path / "b", "--no-demo", env={**env, "PARLEY_NODE_ID": "b"})
    people: list[Participant] = []
    try:
        a.start()  # prints the demo session's links
        b.start_quiet()
        token_of = {role: links[0].rsplit("/j/", 1)[1] for role, links in a.links.items()}
        session = TokenSigner(bytes.fromhex(secret)).verify(token_of["mediator"]).session
        mediator = Participant(token_of["mediator"], "mediator", (0, 0, 0))
        party = Participant(token_of["party"], "party", (0, 0, 0))
        people += [mediator, party]
        assert await mediator.connect(a.url) and await party.connect(a.url)
        pid = party.welcome["participant"]
        sent = await otp(mediator, action="send", participant=pid, email="zhang@example.org")
        assert sent == {"ok": True}, sent
        await until(lambda: inbox.messages, 15)
        code = re.search(r"\b(\d{6})\b", inbox.messages[-1][1]).group(1)
        wrong = "000000" if code != "000000" else "111111"
        assert (await otp(party, action="verify", code=wrong))["error"]["code"] == "wrong_code"

        a.stop(sig_kill=True)  # node A and its memory are gone
        party2 = Participant(party.token, "party", (0, 0, 0))
        people.append(party2)
        deadline = time.monotonic() + 30
        while not await party2.connect(b.url):  # until B has taken the session over
            assert time.monotonic() < deadline, "node B never took the session"
            await asyncio.sleep(0.1)
        assert (await otp(party2, action="verify", code=code)) == {"ok": True}
        assert (await otp(party2, action="verify", code=code))["error"]["code"] == "no_code"

        store = RedisLedgerStore.from_url(url)
        events = store.read(session)
        store.close()
        checked = [
            e.data
            for e in events
            if e.type == "participant.identity_checked" and e.data.get("participant") == pid
        ]
        assert checked and checked[-1].get("method") == "one_time_code", checked
    finally:
        for person in people:
            await person.close()
        a.stop()
        b.stop()
        smtp.stop()
