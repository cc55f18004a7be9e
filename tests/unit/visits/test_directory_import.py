"""The directory and its CSV import: a dry run reports every bad line and changes nothing; a
real run with one bad line applies nothing; identity numbers are kept as keyed digests only;
terminal credentials are stored hashed and can be revoked."""

from __future__ import annotations

import stat

import pytest

from tests.support.province import build
from visits import importer
from visits.directory import Directory, insert_site
from visits.model import VisitError
from visits.store import VisitStore

INMATES = """facility,number,name,grade,status
prison-a,A-100,张三,normal,visitable
prison-a,A-101,李四,lenient,
prison-a,A-001,重复,normal,visitable
prison-z,Z-1,王五,normal,visitable
prison-a,A-102,赵六,vip,visitable
bureau-x,X-1,钱七,normal,visitable
prison-a,A-100,同文件重复,normal,visitable
prison-a,A-103,孙八,strict,visitable,extra
"""


@pytest.fixture
def province(tmp_path):
    store, d, res, ids = build(tmp_path)
    yield store, d
    store.close()


def count(store, table):
    return store.rows(f"SELECT count(*) FROM {table}")[0][0]


def test_dry_run_reports_errors_per_line_and_changes_nothing(province):
    store, _ = province
    before = count(store, "inmates")
    report = importer.run(store, "inmates", INMATES, dry_run=True)
    assert report.rows == 8 and not report.applied
    assert [(e.line, e.code) for e in report.errors] == [
        (4, "conflict"),  # A-001 exists already
        (5, "not_found"),  # no prison-z
        (6, "invalid"),  # grade vip
        (7, "not_found"),  # a bureau holds no inmates
        (8, "conflict"),  # A-100 twice in the file
        (9, "invalid"),  # one cell too many
    ]
    assert "grade" in report.errors[2].message
    assert count(store, "inmates") == before


def test_real_run_is_all_or_nothing(province):
    store, _ = province
    before = count(store, "inmates")
    report = importer.run(store, "inmates", INMATES, dry_run=False)
    assert not report.applied and len(report.errors) == 6
    assert count(store, "inmates") == before
    good = "\n".join(INMATES.splitlines()[:3]) + "\n"
    assert importer.run(store, "inmates", good, dry_run=True).errors == []
    report = importer.run(store, "inmates", good, dry_run=False)
    assert report.applied and report.rows == 2
    assert count(store, "inmates") == before + 2


def test_header_encoding_and_kind(province):
    store, _ = province
    report = importer.run(store, "inmates", "facility,name\nprison-a,x\n", dry_run=True)
    assert [(e.line, e.message) for e in report.errors] == [(1, "header: missing number, grade")]
    text = importer.decode(("\ufeff" + INMATES).encode("utf-8"))
    assert text.startswith("facility")
    assert importer.decode(INMATES.encode("gb18030")) == INMATES
    with pytest.raises(VisitError):
        importer.decode(b"\xff" * (importer.MAX_BYTES + 1))
    with pytest.raises(VisitError):
        importer.run(store, "prisons", INMATES, dry_run=True)
    assert importer.run(store, "inmates", "", dry_run=True).errors[0].line == 1


def test_terminals_sites_and_visitors_import(province):
    store, d = province
    sites = "id,kind,name\nprison-c,prison,C 监狱\nrehab-1,rehab,戒毒所\nbad id,prison,x\n"
    r = importer.run(store, "sites", sites, dry_run=False)
    assert [(e.line, e.code) for e in r.errors] == [(4, "invalid")] and d.site("prison-c") is None
    importer.run(store, "sites", sites.rsplit("bad", 1)[0], dry_run=False)
    assert d.site("rehab-1").facility
    terms = (
        "id,site,kind,name,hours\n"
        "pc-1,prison-c,inmate_room,C1,1-5 09:00-11:00\n"
        "pc-2,prison-c,visitor_room,C2,1-5 09:00-11:00\n"  # a prison has no visitor room
        "pc-3,prison-c,inmate_room,C3,9-9 09:00\n"
    )
    r = importer.run(store, "terminals", terms, dry_run=True)
    assert [(e.line, e.code) for e in r.errors] == [(3, "invalid"), (4, "invalid")]
    visitors = (
        "facility,inmate_number,name,relationship,id_number,evidence,approved_by,reason,expires,contact\n"
        "prison-a,A-002,母亲,parent,110101 19600101 1234,DOC-1,off-a,checked,2031-01-01,\n"
        "prison-a,A-002,母亲,parent,110101196001011234,DOC-1,off-a,checked,2031-01-01,\n"
        "prison-a,A-404,x,parent,110101196001019999,DOC-1,off-a,checked,2031-01-01,\n"
        "prison-a,A-002,x,cousin,110101196001018888,DOC-1,off-a,checked,2031-02-30,not-mail\n"
    )
    r = importer.run(store, "visitors", visitors, dry_run=True)
    assert [(e.line, e.code) for e in r.errors] == [
        (3, "conflict"),
        (4, "not_found"),
        (5, "invalid"),
    ]


def test_id_numbers_are_keyed_digests_and_the_key_is_private(tmp_path, province):
    store, d = province
    raw = store.rows("SELECT id_hash, id_last4 FROM visitors")
    dump = "\n".join(store._db.iterdump())
    assert "110101197001010" not in dump  # the numbers of tests/support/province.py
    assert all(len(h) == 64 and len(last4) == 4 for h, last4 in raw)
    key = tmp_path / "visits-id.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "visits.sqlite3").stat().st_mode) == 0o600
    other = VisitStore(tmp_path / "elsewhere")  # another key: another digest
    assert other.id_hash("110101197001011234") != store.id_hash("110101197001011234")
    other.close()


def test_terminal_credentials(province):
    store, d = province
    token = d.issue_credential("pa-1", 1.0)
    assert d.terminal_for_token(token).id == "pa-1"
    assert token not in "\n".join(store._db.iterdump())
    again = d.issue_credential("pa-1", 2.0)
    assert d.terminal_for_token(token) is None and d.terminal_for_token(again).id == "pa-1"
    d.revoke_credential("pa-1")
    assert d.terminal_for_token(again) is None and not d.has_credential("pa-1")
    for bad in ("", "pvt_", "x" * 200, None):
        assert d.terminal_for_token(bad) is None
    with pytest.raises(VisitError):
        d.issue_credential("nope", 1.0)


@pytest.mark.parametrize(
    "row",
    [
        {"id": "", "kind": "prison", "name": "x"},
        {"id": "Upper", "kind": "prison", "name": "x"},
        {"id": "ok", "kind": "jail", "name": "x"},
        {"id": "ok", "kind": "prison", "name": "x" * 101},
        {"id": "ok", "kind": "prison", "name": "a\x00b"},
        {"id": "prison-a", "kind": "prison", "name": "dup"},
    ],
)
def test_bad_sites(province, row):
    store, d = province
    with pytest.raises(VisitError):
        d.add(insert_site, row)
    assert count(store, "sites") == 3


def test_grants_are_checked_against_the_site(province):
    _, d = province
    for role, site, code in [
        ("operator", "prison-a", "invalid"),
        ("officer", "bureau-x", "invalid"),
        ("officer", "*", "invalid"),
        ("warden", "prison-a", "invalid"),
        ("officer", "prison-z", "not_found"),
    ]:
        with pytest.raises(VisitError) as err:
            d.grant("u", role, site)
        assert err.value.code == code
    assert d.grants("u") == []
    d.grant("u", "reviewer", "*")
    assert [g.site for g in d.grants("u")] == ["*"]
    assert isinstance(Directory(d.store).grants("op")[0].role, str)
