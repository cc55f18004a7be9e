"""A live visit goes on when the worker serving it stalls and another takes it over
(``serve --workers 2``, docs/scaling.md "Workers"): two headless Chromium kiosks (440 Hz and
1000 Hz) on worker 0's page and an officer watching from worker 0's console, a real
supervisor, its workers and a real redis-server.

Worker 0 runs the live-visits clock and serves the visit; it is stopped (SIGSTOP) for longer
than its lease, so worker 1 takes the visit over from the ledger. When worker 0 runs again it
finds its lease lost and closes the sockets; each page connects again, is told ``redirect`` to
worker 1, opens its socket there while staying on worker 0's page (web/static/follow.js; the
pages' Content-Security-Policy names the other workers), and the two rooms hear each other and
the officer hears both again."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from types import SimpleNamespace

import pytest
import redis

from tests.e2e.conftest import (  # noqa: F401 - fixtures
    DOMINANT_FREQ,
    TEST_TIMEOUT_S,
    WAIT_S,
    launch,
    new_page,
    pw,
)
from tests.e2e.test_visit_kiosk import approved_visit_now, live_visit, staff_login, wait_hearing
from tests.integration.cluster.test_workers import supervisor, workers_of  # noqa: F401
from tests.support.redisd import redis_server  # noqa: F401 - fixture
from tests.support.server_proc import add_staff, migrate_visits, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]


def officer_hears_both(page) -> None:
    """The watch page shows both rooms and hears both tones (second by second, one deadline)."""
    page.wait_for_function(
        "() => document.querySelectorAll('#watch-tiles figure:not([hidden])').length === 2"
    )
    deadline = time.monotonic() + WAIT_S
    while True:
        heard = sorted(
            page.evaluate(
                DOMINANT_FREQ,
                {"selector": f"#watch-tiles figure[data-slot='{i}'] video", "ms": 1000},
            )["freq"]
            for i in (0, 1)
        )
        if abs(heard[0] - 440) <= 30 and abs(heard[1] - 1000) <= 30:
            return
        assert time.monotonic() < deadline, heard


def test_the_kiosks_and_the_officer_follow_their_visit_to_the_worker_that_took_it_over(
    tmp_path,
    supervisor,  # noqa: F811
    launch,  # noqa: F811
    new_page,  # noqa: F811
):
    tokens = approved_visit_now(tmp_path / "data")
    migrate_visits(tmp_path / "data", supervisor.redis_url)  # the workers' visits database
    add_staff(tmp_path / "data", "off-a", "李警官", "officer")
    sup = supervisor("--no-demo")
    nodes = workers_of(sup)
    w0, w1 = sorted(nodes)
    url = {node: f"http://127.0.0.1:{port}" for node, (_, port) in nodes.items()}
    # worker 0's pages may connect to worker 1 (and only so: 'self' and the other worker)
    with urllib.request.urlopen(url[w0] + "/kiosk") as r:
        csp = r.headers["Content-Security-Policy"]
    port1 = url[w1].rsplit(":", 1)[1]
    assert f"connect-src 'self' http://127.0.0.1:{port1} ws://127.0.0.1:{port1};" in csp, csp

    # both rooms on worker 0's page (the visits' home), in the visit, hearing each other
    family, inmate = live_visit(launch, new_page, SimpleNamespace(url=url[w0]), tokens)
    wait_hearing(family, 1000, True)
    wait_hearing(inmate, 440, True)
    session = family.evaluate("() => window.parleyKiosk.session")
    # the officer watches it from worker 0's console (silent, hears both rooms)
    officer = new_page(launch())
    staff_login(officer, url[w0], "off-a")
    officer.goto(f"{url[w0]}/visits/live/{session}/watch")
    officer.click("#watch-start")
    officer_hears_both(officer)
    leases = redis.Redis.from_url(sup.redis_url)

    def holder():
        value = leases.get(f"parley:lease:{session}")
        return value.decode() if value else None

    assert holder() == w0
    pid = nodes[w0][0]
    os.kill(pid, signal.SIGSTOP)  # worker 0 stalls, mid-visit
    try:
        assert wait_until(lambda: holder() == w1, WAIT_S), holder()
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.monotonic()
    for page, who in ((family, "parleyKiosk"), (inmate, "parleyKiosk"), (officer, "parleyOfficer")):
        page.wait_for_function(  # back in the visit, their sockets on worker 1
            f"(w1) => window.{who}.socket.connected && window.{who}.socket.io.uri.startsWith(w1)",
            arg=url[w1],
        )
    wait_hearing(family, 1000, True)
    wait_hearing(inmate, 440, True)
    officer_hears_both(officer)
    print(
        f"\nrooms and officer hear each other on worker 1 {time.monotonic() - resumed:.1f} s later"
    )
    for page in (family, inmate, officer):  # the same pages, on worker 0
        assert page.url.startswith(url[w0]), page.url
    assert holder() == w1
    leases.close()
