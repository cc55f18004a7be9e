"""A test clock for the session clock of a visit (R17): tests only (docs/visitation.md).

A visit lasts whole 15-minute cells, so a browser test cannot wait for its warnings at 5 and 1
minute left and its end at zero. With ``PARLEY_TEST_CLOCK=1`` the server's session service reads
the time from a ``TestClock`` — the real clock plus an offset that only grows — and a logged-in
supervisor moves it forward with ``POST /visits/test/clock``:

- ``{"csrf", "advance": seconds}``: the clock jumps forward (0 < seconds ≤ 3600);
- ``{"csrf", "session": id, "remaining": seconds}``: the clock jumps forward until that session's
  running visit has ``seconds`` left (0 ≤ seconds ≤ what is left now).

Everything else keeps running as in production: the system tick (once a second) sees the new
time and decides the warnings and the end exactly as it would; every event in the ledger is
stamped with the moved time. Without the variable the route does not exist and the service uses
``time.time``.

Enabling it is refused (the server does not start, with a message saying why) unless the server
is plainly a test one: listening on a loopback address, without TLS, without a public URL,
trusted proxies or a cluster (Redis). A production server has at least one of these; so the
variable cannot be left on one by accident.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import time
from collections.abc import Callable, Mapping

from aiohttp import web

from rooms.errors import CommandError
from signaling.guard import refusal
from signaling.staff import current
from visits.model import VisitError

log = logging.getLogger("parley.visits")

ENV = "PARLEY_TEST_CLOCK"
MAX_ADVANCE = 3600.0
MAX_BODY = 4096


class TestClockRefused(SystemExit):
    """``PARLEY_TEST_CLOCK`` on a server that is not plainly a test one: the server stops."""

    __test__ = False  # not a pytest class

    def __init__(self, why: str) -> None:
        super().__init__(f"{ENV}=1 refused: {why}. The test clock is for tests only.")


class TestClock:
    """The real time plus an offset that only grows: callable like ``time.time``."""

    __test__ = False  # not a pytest class

    def __init__(self, base: Callable[[], float] = time.time) -> None:
        self._base = base
        self.offset = 0.0

    def __call__(self) -> float:
        return self._base() + self.offset

    def advance(self, seconds: float) -> float:
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError("the test clock only moves forward")
        self.offset += float(seconds)
        return self.offset


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def from_env(env: Mapping[str, str], config) -> TestClock | None:
    """The test clock if ``PARLEY_TEST_CLOCK=1`` and ``config`` is a test server's; ``None`` when
    the variable is unset or empty; ``TestClockRefused`` otherwise."""
    raw = env.get(ENV, "")
    if raw == "":
        return None
    if raw != "1":
        raise TestClockRefused(f"the value must be 1 (or the variable unset), not {raw[:20]!r}")
    if not _loopback(str(config.host)):
        raise TestClockRefused(f"the server listens on {config.host}, not on a loopback address")
    if config.tls != "off":
        raise TestClockRefused("TLS is on")
    for name in ("public_url", "trusted_proxies", "redis_url"):
        if getattr(config, name, None):
            raise TestClockRefused(f"{name} is set")
    log.warning("TEST CLOCK ON: staff may move the session clock (%s=1); never in production", ENV)
    return TestClock()


class ClockRoute:
    """``POST /visits/test/clock``: supervisors (a ``supervisor`` grant at any site, or the
    ``admin`` account role) move the test clock forward."""

    def __init__(self, clock: TestClock, service, console) -> None:
        self.clock, self.service, self.c = clock, service, console
        if console is not None:  # the officer's console shows the time left by the same clock
            console.officer.clock = clock

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/visits/test/clock", self.move)]

    async def move(self, request: web.Request) -> web.Response:
        if current(request) is None:
            return refusal("unauthenticated", "log in first", 401)
        try:
            account, sess, grants = self.c._staff(request)
        except VisitError as exc:  # pragma: no cover - _staff only redirects
            return refusal(exc.code, exc.message, 403)
        supervisor = any(g.role == "supervisor" for g in grants) or "admin" in account.roles
        if not supervisor:
            return refusal("forbidden", "only a supervisor moves the test clock", 403)
        if request.content_length is None or request.content_length > MAX_BODY:
            return refusal("invalid", f"a JSON body of at most {MAX_BODY} bytes", 400)
        try:
            body = json.loads(await request.text())
        except (ValueError, UnicodeDecodeError):
            return refusal("invalid", "the body is not JSON", 400)
        if not isinstance(body, dict) or set(body) - {"csrf", "advance", "session", "remaining"}:
            return refusal("invalid", "fields: csrf, and advance or session with remaining", 400)
        if not isinstance(body.get("csrf"), str) or body["csrf"] != sess.csrf:
            return refusal("csrf", "the page expired; reload it", 403)
        if "advance" in body and "session" not in body and "remaining" not in body:
            seconds = body["advance"]
            if not _number(seconds) or not 0 < seconds <= MAX_ADVANCE:
                return refusal(
                    "invalid", f"advance: seconds, more than 0, at most {MAX_ADVANCE:g}", 400
                )
        elif "session" in body and "remaining" in body and "advance" not in body:
            seconds, problem = self._to_remaining(body["session"], body["remaining"])
            if problem:
                return problem
        else:
            return refusal("invalid", "give advance, or session with remaining", 400)
        offset = self.clock.advance(seconds)
        log.warning(
            "test clock moved", extra={"by": account.username, "seconds": seconds, "offset": offset}
        )
        return web.json_response({"ok": True, "advanced": seconds, "offset": offset})

    def _to_remaining(self, session, remaining) -> tuple[float, web.Response | None]:
        if not isinstance(session, str) or not 0 < len(session) <= 64:
            return 0.0, refusal("invalid", "session: a session id", 400)
        if not _number(remaining) or remaining < 0:
            return 0.0, refusal("invalid", "remaining: seconds, 0 or more", 400)
        try:
            state = self.service.state(session)
        except CommandError:
            return 0.0, refusal("not_found", "no such session", 404)
        left = state.remaining(self.clock())
        if left is None or state.ended or state.clock_since is None:
            return 0.0, refusal("conflict", "that session's clock is not running", 409)
        if remaining > left:
            return 0.0, refusal("conflict", "the test clock only moves forward", 409)
        return float(left - remaining), None


def _number(value) -> bool:
    return type(value) in (int, float) and math.isfinite(value)
