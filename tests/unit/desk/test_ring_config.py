"""The mediator's ring time before the fallback link is configurable (PARLEY_DESK_RING_SECONDS)."""

from server import Config


def test_the_ring_time_comes_from_the_environment_with_a_default():
    assert Config.from_sources(env={}).desk_ring_seconds == 60.0
    assert Config.from_sources(env={"PARLEY_DESK_RING_SECONDS": "15"}).desk_ring_seconds == 15.0
