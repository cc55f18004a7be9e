"""``POST /visits/test/clock`` (signaling/visits_clock.py) in a real app, and the server refusing
``PARLEY_TEST_CLOCK=1`` when it is not plainly a test server."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from rooms.service import ParticipantSpec
from server import SERVICE
from tests.integration.visits.conftest import ALL_DAY, _province, staff_session
from tests.support.server_proc import ROOT

ROUTE = "/visits/test/clock"


def _session(service):
    """A visit's session, not started: its clock is not running."""
    people = [ParticipantSpec("bureau", "visitor"), ParticipantSpec("inmate", "inmate")]
    return service.create_session(
        "visitation", actor="system", title="t", case_number=None, participants=people
    )


@pytest.fixture
async def clocked(tmp_path, monkeypatch):
    monkeypatch.setenv("PARLEY_TEST_CLOCK", "1")
    async for p in _province(tmp_path, ALL_DAY):
        yield p


async def test_the_route_does_not_exist_without_the_variable(allday):
    http, csrf = await staff_session(allday.url, "sup-a")
    async with http:
        async with http.post(allday.url + ROUTE, json={"csrf": csrf, "advance": 60}) as r:
            assert r.status == 404


async def test_a_supervisor_moves_the_session_clock_forward(clocked):
    service = clocked.app[SERVICE]
    http, csrf = await staff_session(clocked.url, "sup-a")
    async with http:
        async with http.post(clocked.url + ROUTE, json={"csrf": csrf, "advance": 600}) as r:
            assert r.status == 200
            assert await r.json() == {"ok": True, "advanced": 600, "offset": 600.0}
        # the ledger's times are the moved clock's
        state = _session(service)
        assert 599 < service.events(state.id)[0].ts - time.time() < 605


async def test_refusals(clocked):
    url = clocked.url + ROUTE
    operator, csrf = await staff_session(clocked.url, "op")  # not a supervisor
    async with operator as http:
        async with http.post(url, json={"csrf": csrf, "advance": 60}) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
        http.cookie_jar.clear()
        async with http.post(url, json={"csrf": csrf, "advance": 60}) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "unauthenticated"
    officer, csrf = await staff_session(clocked.url, "off-a")
    async with officer as http:
        async with http.post(url, json={"csrf": csrf, "advance": 60}) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
    sup, csrf = await staff_session(clocked.url, "sup-a")
    async with sup as http:
        bad = [
            (b"not json", 400, "invalid"),
            ({"csrf": csrf, "advance": 60, "extra": 1}, 400, "invalid"),
            ({"csrf": "wrong", "advance": 60}, 403, "csrf"),
            ({"advance": 60}, 403, "csrf"),
            ({"csrf": csrf, "advance": 0}, 400, "invalid"),
            ({"csrf": csrf, "advance": -5}, 400, "invalid"),
            ({"csrf": csrf, "advance": 3601}, 400, "invalid"),
            ({"csrf": csrf, "advance": "60"}, 400, "invalid"),
            ({"csrf": csrf, "advance": True}, 400, "invalid"),
            ({"csrf": csrf}, 400, "invalid"),
            ({"csrf": csrf, "advance": 5, "remaining": 5}, 400, "invalid"),
            ({"csrf": csrf, "session": "s-nope"}, 400, "invalid"),
            ({"csrf": csrf, "session": "s-nope", "remaining": 60}, 404, "not_found"),
            ({"csrf": csrf, "session": ["s"], "remaining": 60}, 400, "invalid"),
        ]
        for body, status, code in bad:
            kw = {"data": body} if isinstance(body, bytes) else {"json": body}
            async with http.post(url, **kw) as r:
                got = await r.json()
                assert (r.status, got["error"]["code"]) == (status, code), body
        async with http.post(url, data=b"x" * 5000) as r:
            assert r.status == 400
        # a session without a running clock
        state = _session(clocked.app[SERVICE])
        async with http.post(url, json={"csrf": csrf, "session": state.id, "remaining": 0}) as r:
            assert r.status == 409 and (await r.json())["error"]["code"] == "conflict"
        async with http.post(url, json={"csrf": csrf, "advance": 1}) as r:
            assert (await r.json())["offset"] == 1.0  # nothing refused moved the clock


@pytest.mark.parametrize(
    "flags",
    [["--host", "0.0.0.0"], ["--public-url", "https://visits.example.org"]],
)
def test_the_server_refuses_to_start_with_it_outside_a_test(tmp_path, flags):
    env = {"PATH": "/usr/bin:/bin", "PARLEY_TEST_CLOCK": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "server.py"),
            "serve",
            "--port",
            "0",
            "--no-demo",
            "--data-dir",
            str(tmp_path / "data"),
            *flags,
        ],  # fmt: skip
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # fmt: skip
    )
    assert done.returncode == 1
    assert "PARLEY_TEST_CLOCK=1 refused" in done.stderr
    assert "LISTENING" not in done.stdout
