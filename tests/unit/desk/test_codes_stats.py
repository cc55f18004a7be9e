"""Phone numbers, one-time codes, flood limits and hall statistics."""

from __future__ import annotations

import pytest

from desk.codes import CODE_TTL, MAX_ATTEMPTS, PhoneCodes, Window, normalise_phone
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


def test_codes_expire_and_lock():
    codes = PhoneCodes()
    code = codes.issue("13800138000", "1.2.3.4", 0)
    codes.verify("13800138000", code, 10)
    with pytest.raises(DeskError, match="no valid code"):
        codes.verify("13800138000", code, 11)  # used once
    code = codes.issue("13800138000", "1.2.3.4", 20)
    with pytest.raises(DeskError) as e:
        codes.verify("13800138000", code, 21 + CODE_TTL)
    assert e.value.code == "no_code"
    code = codes.issue("13800138000", "1.2.3.4", 30)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(MAX_ATTEMPTS - 1):
        with pytest.raises(DeskError, match="not right"):
            codes.verify("13800138000", wrong, 31)
    with pytest.raises(DeskError) as e:
        codes.verify("13800138000", wrong, 31)
    assert e.value.code == "locked"
    with pytest.raises(DeskError) as e:
        codes.verify("13800138000", code, 31)  # the right code no longer helps
    assert e.value.code == "no_code"


def test_code_sending_is_limited_per_phone_and_per_address():
    codes = PhoneCodes(per_phone=3, per_address=5, window=900)
    for i in range(3):
        codes.issue("13800138000", "a", i)
    with pytest.raises(DeskError) as e:
        codes.issue("13800138000", "b", 5)
    assert e.value.code == "throttled"
    codes.issue("13800138000", "b", 901)  # the window moved on
    for i in range(2):
        codes.issue(f"1390013800{i}", "a", 10 + i)
    with pytest.raises(DeskError):
        codes.issue("13900138009", "a", 20)  # five from address a within the window


def test_window():
    w = Window(2, 10)
    assert w.allow("k", 0) and w.allow("k", 1) and not w.allow("k", 2)
    assert w.allow("k", 10.5) and w.allow("other", 2)


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
