"""WindowRate gives exactly what aiortc's RateCounter gives, for any nondecreasing times."""

from __future__ import annotations

from aiortc.rate import RateCounter
from hypothesis import given, settings
from hypothesis import strategies as st

from media.windowrate import WindowRate

steps = st.lists(
    st.tuples(
        st.sampled_from(["add", "rate", "reset"]),
        st.integers(min_value=0, max_value=1500),  # ms since the previous step
        st.integers(min_value=0, max_value=1500),  # bytes
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(steps, st.sampled_from([1000, 50, 7]))
def test_same_figures_as_aiortcs_rate_counter(script, window):
    theirs, ours = RateCounter(window, 8000), WindowRate(window, 8000)
    now = 10_000
    for op, dt, size in script:
        now += dt
        if op == "add":
            theirs.add(size, now)
            ours.add(size, now)
        elif op == "reset":
            theirs.reset()
            ours.reset()
        assert ours.rate(now) == theirs.rate(now)


def test_a_steady_stream_reads_as_its_bitrate():
    rate = WindowRate(1000, 8000)
    for ms in range(0, 3000, 10):
        rate.add(1000, ms)  # 1000 bytes every 10 ms = 800 kbit/s
    assert abs(rate.rate(2999) - 800_000) < 10_000
