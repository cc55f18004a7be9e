"""``serve --workers 2``: the live visits live on worker 0 (it runs the live-visits clock), so
worker 1 sends their pages there (signaling/visits_home.py) and serves the rest itself, from
the shared data directory. Real supervisor, workers and redis-server."""

from __future__ import annotations

import aiohttp
import pytest

from tests.integration.cluster.test_workers import supervisor, workers_of  # noqa: F401
from tests.support.redisd import redis_server  # noqa: F401 - fixture

pytestmark = pytest.mark.slow


async def test_worker_1_sends_the_live_visits_pages_to_worker_0(supervisor):  # noqa: F811
    proc = supervisor("--no-demo")
    ports = {node.rsplit("-", 1)[1]: port for node, (_, port) in workers_of(proc).items()}
    w0, w1 = f"http://127.0.0.1:{ports['w0']}", f"http://127.0.0.1:{ports['w1']}"
    async with aiohttp.ClientSession() as http:
        for method, path in (
            ("GET", "/kiosk"),
            ("POST", "/kiosk/state"),
            ("GET", "/visits/sites/prison-1/live.json?since=0"),
            ("POST", "/visits/live/s-1/warn"),
        ):
            async with http.request(method, w1 + path, allow_redirects=False) as r:
                assert r.status == 307, (path, r.status)
                assert r.headers["Location"] == w0 + path
        # worker 0 serves them itself: the kiosk page, and a terminal with a wrong token
        # refused by the kiosk's own check (not sent anywhere)
        async with http.get(w0 + "/kiosk", allow_redirects=False) as r:
            assert r.status == 200 and "kiosk" in (await r.text()).lower()
        async with http.post(
            w0 + "/kiosk/state", headers={"Authorization": "Bearer pvt_wrong"}
        ) as r:
            assert r.status == 401 and "terminal_unauthorized" in await r.text()
        # a page from the shared database stays on worker 1 (the staff login it asks for)
        async with http.get(w1 + "/visits", allow_redirects=False) as r:
            assert r.status != 307 and w0 not in r.headers.get("Location", "")
        # through the one public port a terminal reaches the kiosk page, wherever it lands
        async with http.get(proc.url + "/kiosk") as r:
            assert r.status == 200 and str(r.url).startswith((w0, proc.url))
