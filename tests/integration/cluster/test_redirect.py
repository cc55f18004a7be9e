"""Redirect (docs/scaling.md, "Routing: redirect"), with two real ``server.py serve --redis``
processes on one real redis-server, each with its own public URL (``PARLEY_PUBLIC_URL``).

A participant whose link reaches node B for a session node A serves is told ``redirect`` with
A's URL, connects there with the same token (both nodes sign with one secret) and gets the
other participant's media. When A is SIGKILLed, the pages on A fall back to the other node they
were told about in A's welcome (``nodes``): B answers ``session_moving`` until it has taken the
session over, then serves it, and media flows again. ``Page.open`` follows the answers as
web/static/app.js does (the Chromium test, tests/integration/cluster/test_redirect_chromium.py, runs the page
itself).
"""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest
import redis

from bench.takeover import CONSENTS, Page, until
from tests.support.redisd import redis_server  # noqa: F401 - fixture
from tests.support.server_proc import ServerProcess, cluster_node

pytestmark = pytest.mark.slow


@pytest.fixture
def nodes(tmp_path, redis_server):  # noqa: F811
    url = redis_server.url.rsplit("/", 1)[0] + "/6"  # a database of its own on the test server
    redis.Redis.from_url(url).flushdb()
    env = {
        "PARLEY_SECRET": secrets.token_hex(32),
        "PARLEY_REDIS_URL": url,
        "PARLEY_LEASE_TTL_MS": "2000",
        "PARLEY_DRAIN_SECONDS": "0",  # the teardown's SIGTERM hands over at once (no wait)
    }
    made = []

    def node(name: str, *extra: str) -> ServerProcess:
        return cluster_node(tmp_path / name, name, env, made, *extra)

    yield node
    for proc in made:
        proc.stop()


async def test_a_page_on_the_wrong_node_is_redirected_and_follows_the_session_after_a_kill(
    nodes,
):
    a = nodes("a")  # the demo session is created, and leased, here
    b = nodes("b", "--no-demo")
    tokens = {role: links[0].rsplit("/j/", 1)[1] for role, links in a.links.items()}
    mediator = Page(tokens["mediator"], "mediator", (200, 30, 30))
    party = Page(tokens["party"], "party", (30, 200, 30))
    people = [mediator, party]
    try:
        # A names B in its welcome once its rounds have read B's heartbeat (a quarter second)
        deadline = time.monotonic() + 10
        while (await mediator.open(a.url), mediator.nodes)[1] != [b.url]:
            assert time.monotonic() < deadline, mediator.nodes
            await mediator.close()
        # the party's link reaches B: redirected to A, the same token works there
        assert await party.open(b.url) == a.url
        assert party.answers[0] == (b.url, "redirect")
        for topic in CONSENTS:
            await party.command(type="record_consent", topic=topic, given=True)
        await mediator.media()
        await party.media()
        m_id, p_id = mediator.welcome["participant"], party.welcome["participant"]
        await mediator.command(type="admit", participant=p_id)
        await until(
            lambda: mediator.bot.frames_from(p_id) > 5 and party.bot.frames_from(m_id) > 5, 30
        )
        assert mediator.nodes == [b.url] and party.nodes == [b.url]

        # A dies; the pages on A fall back to B (A's welcome named it), which takes over
        started = time.monotonic()
        a.stop(sig_kill=True)
        for page in people:
            await page.bot.close()
            page.bot = None
            await asyncio.wait_for(page.sio.disconnect(), 5)
            page.sio = None
        served = await asyncio.gather(*(page.open(a.url) for page in people))
        welcomed = time.monotonic() - started
        assert served == [b.url, b.url]
        for page in people:
            assert (a.url, None) in page.answers  # A did not answer
            assert page.welcome["session"]["space"] == "joint"  # where they were
        await mediator.media()
        await party.media()
        await until(
            lambda: mediator.bot.frames_from(p_id) >= 1 and party.bot.frames_from(m_id) >= 1, 30
        )
        print(
            f"\nafter SIGKILL of A: both welcomed on B {welcomed:.2f} s, media "
            f"{time.monotonic() - started:.2f} s; answers {party.answers}"
        )
    finally:
        for page in people:
            await page.close()


async def test_a_node_still_refuses_what_no_node_serves(nodes):
    """Redirect only for a genuine token of a session some node serves: a bad token is refused
    as before, and so is a session nobody serves or lists (ended, or unknown)."""
    a = nodes("a")
    b = nodes("b", "--no-demo")
    answers = []
    for token in ("not-a-token", "x" * 300):
        page = Page(token, "x", (0, 0, 0))
        assert not await page.connect(b.url)
        answers.append(page.refused["code"])
    assert "redirect" not in answers and all(answers), answers
    # the demo session ended by its mediator (its lease given back): gone from the cluster
    tokens = {role: links[0].rsplit("/j/", 1)[1] for role, links in a.links.items()}
    mediator = Page(tokens["mediator"], "mediator", (0, 0, 0))
    await mediator.open(a.url)
    try:
        await mediator.command(type="end_session", reason="done")
    finally:
        await mediator.close()
    party = Page(tokens["party"], "party", (0, 0, 0))

    async def not_found():
        await party.connect(b.url)
        return (party.refused or {}).get("code") == "session_not_found"

    deadline = time.monotonic() + 10
    while not await not_found():
        assert time.monotonic() < deadline, party.refused
        await asyncio.sleep(0.1)
