"""/readyz reports the recorder through a real server: ready while the recordings directory
can be written, 503 with ``storage: false`` once it cannot (here: a file where the directory
was), ready again once it can. The stuck writer, the backlog and a dead writer thread are in
tests/unit/recording/test_health.py."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from server import CONFIG
from tests.integration.signaling.conftest import running  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow


async def _ready(url):
    async with aiohttp.ClientSession() as http, http.get(url + "/readyz") as r:
        return r.status, await r.json()


async def _ready_until(url, status: int, within: float = 10.0):
    """Poll /readyz until it answers ``status`` (the probe is cached for up to 2 s)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        got = await _ready(url)
        if got[0] == status or loop.time() > end:
            return got
        await asyncio.sleep(0.1)


async def test_ready_says_when_the_recorder_cannot_write(running):  # noqa: F811
    status, body = await _ready(running.url)
    assert status == 200 and body["status"] == "ready", body
    recorder = body["checks"]["recorder"]
    assert recorder["ok"] and recorder["writer"] and recorder["storage"], recorder
    assert recorder["queue_limit"] > 0 and not recorder["backlogged"]

    directory = running.app[CONFIG].data_dir / "recordings"
    aside = directory.with_name("recordings-aside")
    directory.rename(aside)
    directory.write_bytes(b"not a directory")
    try:
        status, body = await _ready_until(running.url, 503)
    finally:
        directory.unlink()
        aside.rename(directory)
    assert status == 503 and body["status"] == "not_ready", body
    assert body["checks"]["recorder"]["storage"] is False and body["checks"]["ledger"], body
    status, body = await _ready_until(running.url, 200)
    assert status == 200 and body["checks"]["recorder"]["ok"], body
