"""The test clock of signaling/visits_clock.py: off unless asked, refused on anything that looks
like a production server, only forward; and the route's arithmetic for "move to N seconds left"."""

from __future__ import annotations

import dataclasses

import pytest

from server import Config
from signaling.visits_clock import ClockRoute, TestClock, TestClockRefused, from_env


def test_off_unless_the_variable_is_one():
    assert from_env({}, Config()) is None
    assert from_env({"PARLEY_TEST_CLOCK": ""}, Config()) is None
    clock = from_env({"PARLEY_TEST_CLOCK": "1"}, Config(host="127.0.0.1"))
    assert isinstance(clock, TestClock)
    assert isinstance(from_env({"PARLEY_TEST_CLOCK": "1"}, Config(host="::1")), TestClock)
    assert isinstance(from_env({"PARLEY_TEST_CLOCK": "1"}, Config(host="localhost")), TestClock)


@pytest.mark.parametrize(
    ("value", "change", "why"),
    [
        ("yes", {}, "the value must be 1"),
        ("0", {}, "the value must be 1"),
        ("1", {"host": "0.0.0.0"}, "not on a loopback address"),
        ("1", {"host": "192.168.1.20"}, "not on a loopback address"),
        ("1", {"host": "parley.example.org"}, "not on a loopback address"),
        ("1", {"tls": "self-signed"}, "TLS is on"),
        ("1", {"tls": "files"}, "TLS is on"),
        ("1", {"public_url": "https://visits.example.org"}, "public_url is set"),
        ("1", {"trusted_proxies": ["127.0.0.1"]}, "trusted_proxies is set"),
        ("1", {"redis_url": "redis://127.0.0.1:6379/0"}, "redis_url is set"),
    ],
)
def test_refused_on_anything_like_a_production_server(value, change, why):
    config = dataclasses.replace(Config(), **change)
    with pytest.raises(TestClockRefused) as refused:
        from_env({"PARLEY_TEST_CLOCK": value}, config)
    message = str(refused.value)
    assert message.startswith("PARLEY_TEST_CLOCK=1 refused: ") and why in message
    assert message.endswith("The test clock is for tests only.")
    assert isinstance(refused.value, SystemExit)  # the server stops with that message


def test_the_clock_only_moves_forward():
    now = [1000.0]
    clock = TestClock(lambda: now[0])
    assert clock() == 1000.0
    assert clock.advance(90) == 90.0
    now[0] = 1001.0
    assert clock() == 1091.0
    for bad in (-1, float("nan"), float("inf"), "5"):
        with pytest.raises(ValueError):
            clock.advance(bad)
    assert clock() == 1091.0


class FakeState:
    def __init__(self, left, running=True, ended=False):
        self.left, self.ended = left, ended
        self.clock_since = 1.0 if running else None

    def remaining(self, now):
        return self.left


class FakeService:
    def __init__(self, states):
        self.states = states

    def state(self, sid):
        from rooms.errors import CommandError

        if sid not in self.states:
            raise CommandError("not_found", "no")
        return self.states[sid]


def _status(answer):
    return None if answer is None else answer.status


def test_moving_to_seconds_left():
    route = ClockRoute(
        TestClock(),
        FakeService(
            {
                "s-run": FakeState(1500.0),
                "s-paused": FakeState(900.0, running=False),
                "s-ended": FakeState(0.0, ended=True),
                "s-none": FakeState(None),
            }
        ),
        console=None,
    )
    seconds, problem = route._to_remaining("s-run", 300)
    assert problem is None and seconds == 1200.0
    assert route._to_remaining("s-run", 0)[0] == 1500.0
    assert _status(route._to_remaining("s-run", 1600)[1]) == 409  # backwards
    assert _status(route._to_remaining("s-paused", 60)[1]) == 409  # the clock is not running
    assert _status(route._to_remaining("s-ended", 0)[1]) == 409
    assert _status(route._to_remaining("s-none", 0)[1]) == 409  # a session without a clock
    assert _status(route._to_remaining("s-gone", 0)[1]) == 404
    for session, remaining in (("", 1), ("x" * 65, 1), (5, 1), ("s-run", -1), ("s-run", True)):
        assert _status(route._to_remaining(session, remaining)[1]) == 400


def test_the_officers_console_reads_the_same_clock():
    """The officer's list shows the time left by the session clock, moved or not."""
    from types import SimpleNamespace

    console = SimpleNamespace(officer=SimpleNamespace(clock=None))
    clock = TestClock()
    ClockRoute(clock, FakeService({}), console)
    assert console.officer.clock is clock
