"""The education record against the real store: the facility publishes per inmate, only an
approved relative (not a lawyer, not expired) reads it, and each read is logged first."""

from __future__ import annotations

import pytest

from tests.support.province import NOW, build
from visits.model import VisitError
from visits.records import Records


@pytest.fixture
def rec(tmp_path):
    store, d, res, ids = build(tmp_path)
    yield store, Records(store), ids
    store.close()


def entry(**kw):
    return {"kind": "course", "period": "2030-01", "title": "职业技能 Vocational skills", **kw}


def test_publish_read_log_withdraw(rec):
    store, r, ids = rec
    first = r.publish("staff:off-a", ids["a1"], entry(detail="passed"), NOW)
    r.publish("staff:off-a", ids["a1"], entry(kind="points", period="2030-02", title="95"), NOW)
    got = r.read("staff:op", ids["a1"], ids["a1v0"], NOW)
    assert [(e.kind, e.period) for e in got] == [("points", "2030-02"), ("course", "2030-01")]
    [read] = r.reads(ids["a1"])
    assert (read.read_by, read.visitor, read.entries) == ("staff:op", ids["a1v0"], 2)
    r.withdraw(ids["a1"], first)
    assert [e.kind for e in r.read("staff:op", ids["a1"], ids["a1v1"], NOW)] == ["points"]
    assert len(r.reads(ids["a1"])) == 2
    with pytest.raises(VisitError) as err:
        r.withdraw(ids["b1"], first)  # another inmate's entry
    assert err.value.code == "not_found"


@pytest.mark.parametrize(
    "fields",
    [
        entry(kind="diary"),
        entry(period="2030-13"),
        entry(period="30-01"),
        entry(title=""),
        entry(detail="x" * 501),
    ],
)
def test_bad_entries(rec, fields):
    store, r, ids = rec
    with pytest.raises(VisitError) as err:
        r.publish("staff:off-a", ids["a1"], fields, NOW)
    assert err.value.code == "invalid"
    assert store.rows("SELECT count(*) FROM record_entries") == [(0,)]


def test_only_an_approved_relative_reads_and_a_refusal_logs_nothing(rec):
    store, r, ids = rec
    with pytest.raises(VisitError) as err:
        r.read("staff:op", ids["a1"], ids["b1v0"], NOW)  # a relative of another inmate
    assert err.value.code == "invalid"
    assert store.rows("SELECT count(*) FROM record_reads") == [(0,)]
