"""The ceremony's PDF work does not stall the event loop that forwards media.

A probe task sleeps 5 ms in a loop and records how late it wakes up. pyHanko's work is
CPU-bound Python, so in a worker thread it still competes for the GIL: the probe is late by
a few switch intervals at a time, never by the whole step. Before, a seal ran on the loop and
the probe waited for all of it. The bound is relative to the step's own duration so that a
loaded machine (which slows both) does not make the test flaky."""

from __future__ import annotations

from esign.measure import longest_stall
from tests.integration.esign.conftest import sign_turn


async def test_a_seal_leaves_the_loop_running(make_ceremony):
    ceremony = await make_ceremony()
    for pid in ("p-app", "p-res", "p-med"):
        await sign_turn(ceremony, pid)
    assert ceremony.status == "complete"
    stall, duration, _ = await longest_stall(ceremony.seal())
    assert ceremony.status == "sealed"
    assert stall < duration / 2, f"the loop stalled {stall:.3f} s during a {duration:.3f} s seal"
