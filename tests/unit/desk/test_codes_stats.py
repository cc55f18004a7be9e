"""Phone numbers and hall statistics. The codes and their windows: tests/unit/cluster/test_codes.py
(one suite on the memory and the Redis store)."""

from __future__ import annotations

import pytest

from desk.codes import normalise_phone
from desk.errors import DeskError
from desk.stats import Record, percentile, summarise


@pytest.mark.parametrize(
    "raw,phone",
    [
        ("13800138000", "13800138000"),
        ("138 0013 8000", "13800138000"),
        ("+86 138-0013-8000", "13800138000"),
        ("+4915112345678", "+4915112345678"),
    ],
)
def test_phone_numbers(raw, phone):
    assert normalise_phone(raw) == phone


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "12345",
        "1380013800",
        "23800138000",
        None,
        13800138000,
        "x" * 40,
        "+0123456789",
        "1380013800a",
    ],
)
def test_bad_phone_numbers(raw):
    with pytest.raises(DeskError) as e:
        normalise_phone(raw)
    assert e.value.code == "invalid"


def test_percentile_and_summary():
    assert percentile([], 50) is None
    assert percentile([5, 1, 3], 50) == 3
    assert percentile(list(range(1, 101)), 95) == 95
    records = [
        Record("citizen", "done", 100, 160, 760, 5),
        Record("citizen", "done", 110, 230, 530, 3),
        Record("citizen", "abandoned", 120, None, None, None),
        Record("mediation", "serving", 130, 140, None, None),
        Record("citizen", "callback", 140, None, None, None),  # an appointment, not a call
        Record("citizen", "done", 10, 20, 30, 1),  # before the day
    ]
    s = summarise(records, since=100)
    assert s["calls"] == 4 and s["answered"] == 3
    assert s["wait_p50"] == 60 and s["wait_p95"] == 120
    assert s["abandoned"] == 1 and s["abandonment"] == 0.25
    assert s["talk_mean"] == 450 and s["rating_mean"] == 4 and s["ratings"] == 2
