"""Drain on SIGTERM (docs/scaling.md, "Drain"), with two real ``server.py serve --redis``
processes on one real redis-server, each with its own public URL, and aiortc bots that follow
the nodes' answers as the page does (``bench.takeover.Page``).

* SIGTERM: node A says draining in its next heartbeat at once and keeps serving its session;
  at the deadline it hands the session over to B (lease deleted, B adopts it at its next round,
  no TTL to wait for), closes the pages' sockets; the pages connect to A again, are redirected
  to B, are back in the joint room with media; A exits 0; the ledger verifies.
* A session that ends during the drain lets A exit long before the deadline.
* A second SIGTERM hands over at once.

The lease TTL is 5 s here so that the hand-over is told apart from the expiry path: the pages
must be served by B well within the TTL.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import sys
import time

import msgspec
import pytest
import redis

from bench.takeover import CONSENTS, ROOT, Page, handed_over, until
from cluster.registry import NodeInfo
from signaling.tokens import TokenSigner
from tests.support.redisd import redis_server  # noqa: F401 - fixture
from tests.support.server_proc import ServerProcess, cluster_node

pytestmark = pytest.mark.slow

TTL_S = 5.0
BOUND = 2.5  # seconds from the hand-over's start to both pages welcomed on B: half the TTL


@pytest.fixture
def cluster(tmp_path, redis_server):  # noqa: F811
    url = redis_server.url.rsplit("/", 1)[0] + "/8"  # a database of its own on the test server
    redis.Redis.from_url(url).flushdb()
    secret = secrets.token_hex(32)
    env = {
        "PARLEY_SECRET": secret,
        "PARLEY_REDIS_URL": url,
        "PARLEY_LEASE_TTL_MS": str(int(TTL_S * 1000)),
    }
    made = []

    def node(name: str, *extra: str, drain_s: float = 30.0) -> ServerProcess:
        drain = {**env, "PARLEY_DRAIN_SECONDS": str(drain_s)}
        return cluster_node(tmp_path / name, name, drain, made, *extra)

    node.url, node.secret = url, secret
    yield node
    for proc in made:
        proc.stop(sig_kill=True)  # whatever a failed test left running


def heartbeat(url: str, node_id: str) -> NodeInfo | None:
    raw = redis.Redis.from_url(url)
    try:
        value = raw.get(f"parley:node:{node_id}")
    finally:
        raw.close()
    return msgspec.json.decode(value, type=NodeInfo) if value else None


async def call_on_a(cluster, a, b):
    """The mediator and the party in the joint room of A's demo session, media both ways, A's
    welcome naming B. Returns the pages, their ids and the session id."""
    tokens = {role: links[0].rsplit("/j/", 1)[1] for role, links in a.links.items()}
    session = TokenSigner(bytes.fromhex(cluster.secret)).verify(tokens["mediator"]).session
    mediator = Page(tokens["mediator"], "mediator", (200, 30, 30))
    party = Page(tokens["party"], "party", (30, 200, 30))
    deadline = time.monotonic() + 10
    for page in (mediator, party):  # A names B once its rounds have read B's heartbeat
        while (await page.open(a.url), page.nodes)[1] != [b.url]:
            assert time.monotonic() < deadline, page.nodes
            await page.close()
    for topic in CONSENTS:
        await party.command(type="record_consent", topic=topic, given=True)
    await mediator.media()
    await party.media()
    m_id, p_id = mediator.welcome["participant"], party.welcome["participant"]
    await mediator.command(type="admit", participant=p_id)
    await until(lambda: mediator.bot.frames_from(p_id) > 5 and party.bot.frames_from(m_id) > 5, 30)
    return mediator, party, m_id, p_id, session


async def draining_said(cluster, node_id: str) -> None:
    await until(lambda: (heartbeat(cluster.url, node_id) or NodeInfo("", "", None)).draining, 5)


async def exit_code(proc: ServerProcess, timeout: float) -> int:  # noqa: ASYNC109
    return await asyncio.to_thread(proc.proc.wait, timeout)


def ledger_verify(cluster, session: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "ledger", "verify", session]
        + ["--redis", cluster.url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def back_on_b(a, b, mediator, party, m_id, p_id, started):
    (ms, mw, m_media), (ps, pw, p_media) = await asyncio.gather(
        handed_over(mediator, a.url, p_id, started), handed_over(party, a.url, m_id, started)
    )
    assert (ms, ps) == (b.url, b.url), (mediator.answers, party.answers)
    for page in (mediator, party):
        assert (a.url, "redirect") in page.answers  # A itself sent the page on
        assert page.welcome["session"]["space"] == "joint"  # where they were
    return max(mw, pw), max(m_media, p_media)


async def test_at_the_deadline_the_session_is_handed_to_the_other_node(cluster):
    a = cluster("a", drain_s=1.5)
    b = cluster("b", "--no-demo")
    mediator, party, m_id, p_id, session = await call_on_a(cluster, a, b)
    try:
        started = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        await draining_said(cluster, "a")
        said = time.monotonic() - started
        # still served on A during the wait: a command is answered, media flows
        await mediator.command(type="chat", text="drain")
        frames = party.bot.frames_from(m_id)
        await until(lambda: party.bot.frames_from(m_id) > frames + 5, 10)
        assert mediator.sio.connected and party.sio.connected
        welcomed, media = await back_on_b(a, b, mediator, party, m_id, p_id, started)
        print(
            f"\ndrain deadline 1.5 s, lease TTL {TTL_S} s: draining said after {said:.2f} s; "
            f"both welcomed on B {welcomed:.2f} s after SIGTERM, media {media:.2f} s"
        )
        assert 1.5 <= welcomed < 1.5 + BOUND, welcomed
        assert await exit_code(a, 20) == 0
        out = a.output()
        assert "handing sessions over" in out and "sessions adopted" in out, out[-3000:]
        verified = ledger_verify(cluster, session)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        for page in (mediator, party):
            await page.close()


async def test_a_session_that_ends_during_the_drain_lets_the_node_exit_early(cluster):
    a = cluster("a", drain_s=60)
    b = cluster("b", "--no-demo")
    mediator, party, m_id, p_id, session = await call_on_a(cluster, a, b)
    try:
        started = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        await draining_said(cluster, "a")
        assert a.proc.poll() is None  # waiting for the session
        await mediator.command(type="end_session", reason="done")
        code = await exit_code(a, 30)
        took = time.monotonic() - started
        print(f"\nsession ended during the drain: A exited {code} after {took:.2f} s")
        assert code == 0 and took < 30, took
        assert "drained: every session ended" in a.output()
        assert "handing sessions over" not in a.output()
        verified = ledger_verify(cluster, session)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        for page in (mediator, party):
            await page.close()


async def test_a_second_sigterm_hands_over_at_once(cluster):
    a = cluster("a", drain_s=120)
    b = cluster("b", "--no-demo")
    mediator, party, m_id, p_id, session = await call_on_a(cluster, a, b)
    try:
        a.proc.send_signal(signal.SIGTERM)
        await draining_said(cluster, "a")
        # a page opening its link on B meanwhile is sent to A, which still serves the session
        late = Page(party.token, "party", (0, 0, 0))
        assert not await late.connect(b.url)
        assert late.refused["code"] == "redirect" and late.refused["url"] == a.url, late.refused
        assert mediator.sio.connected and party.sio.connected
        started = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        welcomed, media = await back_on_b(a, b, mediator, party, m_id, p_id, started)
        print(
            f"\nsecond SIGTERM, lease TTL {TTL_S} s: both welcomed on B {welcomed:.2f} s after "
            f"it, media {media:.2f} s"
        )
        assert welcomed < BOUND, welcomed
        assert await exit_code(a, 20) == 0
        print(f"A exited {time.monotonic() - started:.2f} s after the second SIGTERM")
        assert "second signal" in a.output()
        verified = ledger_verify(cluster, session)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        for page in (mediator, party):
            await page.close()


async def test_a_single_node_stops_at_once_on_sigterm(tmp_path):
    """Without Redis there is no cluster and no drain: SIGTERM closes the node as before, with
    a participant connected, and it exits 0; PARLEY_DRAIN_SECONDS (60 here) is not waited for.
    (As before this change, the close takes about 15 s while a page's socket is open.)"""
    env = {"PARLEY_DRAIN_SECONDS": "60", "PARLEY_REDIS_URL": ""}
    a = ServerProcess(tmp_path / "single", env=env).start()
    token = a.links["mediator"][0].rsplit("/j/", 1)[1]
    mediator = Page(token, "mediator", (200, 30, 30))
    try:
        assert await mediator.open(a.url) == a.url
        started = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        code = await exit_code(a, 30)
        took = time.monotonic() - started
        print(f"\nsingle node: exited {code} {took:.2f} s after SIGTERM")
        assert code == 0 and took < 45, took
        assert "draining" not in a.output()
    finally:
        await mediator.close()
        a.stop(sig_kill=True)
