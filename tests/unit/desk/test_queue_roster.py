"""The queue and the roster as tables over a simulated clock (no I/O)."""

from __future__ import annotations

import pytest

from desk import queue as q
from desk.queue import Entry
from desk.roster import Shift, free_lawyers, lawyers_on_shift, pickup_refusal, points_on_shift

T0 = 1_800_000_000.0


def citizen(i, at, point="hall", seen=None, state="waiting"):
    return Entry(i, "citizen", point, T0 + at, T0 + (at if seen is None else seen), state)


def mediation(i, at):
    return Entry(i, "mediation", None, T0 + at, T0 + at)


SHIFTS = [
    Shift(1, "li", "hall", T0, T0 + 3600),
    Shift(2, "zhao", "village", T0, T0 + 3600),
    Shift(3, "li", "village", T0 + 3600, T0 + 7200),
]


@pytest.mark.parametrize(
    "lawyer,at,points",
    [
        ("li", 0, {"hall"}),
        ("li", 3599, {"hall"}),
        ("li", 3600, {"village"}),  # shifts are half-open: the first ended, the second began
        ("li", 7200, set()),
        ("li", -1, set()),
        ("zhao", 10, {"village"}),
        ("nobody", 10, set()),
    ],
)
def test_points_on_shift(lawyer, at, points):
    assert points_on_shift(SHIFTS, lawyer, T0 + at) == points


@pytest.mark.parametrize(
    "lawyer,statuses,entry_point,at,refusal",
    [
        ("li", {"li": "available"}, "hall", 10, None),
        ("li", {"li": "available"}, None, 10, None),  # a mediation's call: any lawyer on shift
        ("li", {"li": "available"}, "village", 10, "not_your_point"),
        ("li", {"li": "busy"}, "hall", 10, "busy"),
        ("li", {"li": "away"}, "hall", 10, None),  # away does not ring, but may pick up by choice
        ("li", {"li": "available"}, "hall", 8000, "not_on_shift"),
        ("wu", {"wu": "available"}, "hall", 10, "not_on_shift"),
    ],
)
def test_pickup_refusal(lawyer, statuses, entry_point, at, refusal):
    assert pickup_refusal(SHIFTS, statuses, lawyer, entry_point, T0 + at) == refusal


def test_who_rings():
    statuses = {"li": "available", "zhao": "away"}
    assert lawyers_on_shift(SHIFTS, "hall", T0) == {"li"}
    assert lawyers_on_shift(SHIFTS, None, T0) == {"li", "zhao"}
    assert free_lawyers(SHIFTS, statuses, None, T0) == {"li"}
    assert free_lawyers(SHIFTS, statuses, "village", T0) == frozenset()  # zhao: away, default
    assert free_lawyers(SHIFTS, {}, "hall", T0) == frozenset()


def test_fifo_within_priority_and_mediation_first():
    entries = [citizen(1, 0), citizen(2, 5), mediation(3, 10), citizen(4, 1, point="village")]
    now = T0 + 11
    assert [e.id for e in q.line(entries, ["hall"], now)] == [3, 1, 2]
    assert [e.id for e in q.line(entries, None, now)] == [3, 1, 4, 2]
    assert q.position(entries, 2, now) == 3
    assert q.position(entries, 4, now) == 2  # its own point: the mediation call, then it
    assert q.next_for(entries, ["hall"], now).id == 3


@pytest.mark.parametrize(
    "gone_for,present,held",
    [
        (0, True, True),
        (q.PRESENCE_SECONDS, True, True),
        (q.PRESENCE_SECONDS + 1, False, True),  # away: the place is kept
        (q.PRESENCE_SECONDS + q.HOLD_SECONDS, False, True),
        (q.PRESENCE_SECONDS + q.HOLD_SECONDS + 1, False, False),  # lapsed
    ],
)
def test_keeping_the_place(gone_for, present, held):
    e = citizen(1, 0, seen=0)
    now = T0 + gone_for
    assert q.present(e, now) is present
    assert q.held(e, now) is held
    assert q.lapsed([e], now) == ([] if held else [1])


def test_an_absent_caller_keeps_the_position_but_is_skipped():
    first = citizen(1, 0, seen=0)
    second = citizen(2, 1, seen=100)
    now = T0 + 100
    assert q.position([first, second], 2, now) == 2
    assert q.next_for([first, second], ["hall"], now).id == 2
    with pytest.raises(ValueError, match="caller_away"):
        q.choose([first, second], 1, ["hall"], now)
    back = citizen(1, 0, seen=100)  # came back within the hold: first again
    assert q.next_for([back, second], ["hall"], now).id == 1


@pytest.mark.parametrize(
    "entry_id,points,error",
    [(9, ["hall"], "not_found"), (1, ["village"], "not_your_point"), (5, ["hall"], "not_found")],
)
def test_choose_refusals(entry_id, points, error):
    entries = [citizen(1, 0), citizen(5, 0, state="serving")]
    with pytest.raises(ValueError, match=error):
        q.choose(entries, entry_id, points, T0 + 1)


@pytest.mark.parametrize(
    "position,free,on_shift,recent,wait",
    [
        (1, 1, 1, [], 0.0),
        (1, 0, 1, [], q.DEFAULT_HANDLING),
        (2, 1, 1, [300, 500], 400.0),  # one free lawyer takes the first; then a round of 400 s
        (2, 0, 1, [300, 500], 800.0),
        (3, 0, 2, [600], 1200.0),
        (2, 2, 2, [600], 0.0),
        (1, 0, 0, [600], None),  # nobody on shift: no estimate (the page offers a call-back)
        (0, 1, 1, [], None),
    ],
)
def test_estimated_wait(position, free, on_shift, recent, wait):
    assert q.estimate_wait(position, free, on_shift, recent) == wait


def test_the_estimate_uses_only_recent_handling_times():
    old = [10_000.0] * 5
    recent = [300.0] * q.RECENT
    assert q.mean_handling(old + recent) == 300.0
