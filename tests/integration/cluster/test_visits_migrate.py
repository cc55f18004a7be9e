"""``server.py visits migrate`` (cluster/visits_migrate.py) and the visits tools with ``--redis``:
a one-machine visits database copied into a real redis-server is read the same, table by table,
on another machine's copy; what is made afterwards continues its ids; an identity number
checked there matches the digests made before the move. A second run is refused and changes
nothing; bad input is refused before anything is written. ``user grant`` and ``visits import``
with ``--redis`` write the cluster's database. A clustered node started on a directory whose
visits database was not copied says so in its log."""

from __future__ import annotations

import datetime as dt

import pytest

from cluster.visits import TABLES, RedisVisitStore
from cluster.visits_migrate import left_behind
from tests.integration.visits.conftest import id_of
from tests.support.procs import free_port
from tests.support.province import NOW, build
from tests.support.redisd import own_database, redis_server, snapshot  # noqa: F401
from tests.support.server_proc import add_staff, cli
from visits.checkin import CheckIns
from visits.directory import Directory
from visits.reservations import Request, Reservations
from visits.store import VisitStore

START = dt.datetime(2030, 1, 8, 9, 0)


@pytest.fixture
def url(redis_server):  # noqa: F811
    with own_database(redis_server, 11) as url:
        yield url


def every_row(store) -> dict:
    return {t: store.rows(f"SELECT * FROM {t} ORDER BY 1, 2") for t in TABLES}


def test_a_visits_database_moved_to_redis_reads_the_same_elsewhere(tmp_path, url):
    own, _, res, ids = build(tmp_path / "one")
    bid = res.request(
        "staff:op", Request(ids["a1"], "bx-1", "pa-1", START, 15, (ids["a1v0"],)), NOW
    )
    res.decide("staff:off-a", bid, approve=True, reason="", supervisor=False, now=NOW)
    expected = every_row(own)
    own.close()

    done = cli(tmp_path / "one", "visits", "migrate", "--redis", url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("copied 3 sites, 4 terminals,"), done.stdout
    assert " 1 bookings, " in done.stdout and " 5 grants, " in done.stdout, done.stdout
    other = RedisVisitStore.from_url(tmp_path / "two", url)  # another machine
    try:
        assert every_row(other) == expected
        res2 = Reservations(other)
        later = res2.request(  # ids continue (case numbers and recordings name them)
            "staff:op", Request(ids["b1"], "bx-2", "pb-1", START, 15, (ids["b1v0"],)), NOW
        )
        assert later == bid + 1
        at = START - dt.timedelta(minutes=5)
        checked = CheckIns(other, res2).check_in(  # the digests of before the move match
            "staff:op", bid, ids["a1v0"], id_of("a1", 0), method="id_card", pledge=True, now=at
        )
        assert checked.visitor == ids["a1v0"]
        assert not left_behind(tmp_path / "one" / "visits.sqlite3", other)
    finally:
        other.close()

    before = snapshot(url)
    again = cli(tmp_path / "one", "visits", "migrate", "--redis", url)
    assert again.returncode == 1 and again.stdout.startswith("REFUSED"), again.stdout
    assert snapshot(url) == before  # nothing written


def test_bad_input_is_refused_and_writes_nothing(tmp_path, url):
    build(tmp_path)[0].close()
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    for args, code, says in [
        ((), 2, "invalid: name the cluster's Redis"),
        (("--redis", "http://nowhere"), 2, "invalid:"),
        (("--redis", closed), 2, "unavailable: Redis at"),
    ]:
        out = cli(tmp_path, "visits", "migrate", *args)
        assert (out.returncode, out.stdout.startswith(says)) == (code, True), out.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    out = cli(empty, "visits", "migrate", "--redis", url)
    assert out.returncode == 2 and out.stdout.startswith("not_found: no visits database at")
    assert not (empty / "visits.sqlite3").exists()  # not made by looking
    assert snapshot(url) == {}


def test_the_tools_with_redis_write_the_clusters_database(tmp_path, url):
    built, _, _, _ = build(tmp_path / "one")
    built.close()
    assert cli(tmp_path / "one", "visits", "migrate", "--redis", url).returncode == 0
    add_staff(tmp_path / "tool", "zhou", "周警官", "officer", redis_url=url)
    out = cli(tmp_path / "tool", "user", "grant", "zhou", "--role", "officer", "--site", "prison-b",
              "--redis", url)  # fmt: skip
    assert out.returncode == 0 and "granted officer at prison-b to zhou" in out.stdout, out
    inmates = "facility,number,name,grade\nprison-b,B-200,新人,normal\n"
    (tmp_path / "in.csv").write_text(inmates, encoding="utf-8")
    out = cli(tmp_path / "tool", "visits", "import", str(tmp_path / "in.csv"), "--kind", "inmates",
              "--redis", url)  # fmt: skip
    assert out.returncode == 0 and "applied" in out.stdout, out.stdout
    elsewhere = RedisVisitStore.from_url(tmp_path / "two", url)
    try:
        assert [(g.role, g.site) for g in Directory(elsewhere).grants("zhou")] == [
            ("officer", "prison-b")
        ]
        assert elsewhere.rows("SELECT name FROM inmates WHERE number='B-200'") == [("新人",)]
    finally:
        elsewhere.close()
    own = VisitStore(tmp_path / "tool")  # the tool's directory's own file has none of it
    try:
        assert own.rows("SELECT count(*) FROM grants") == [(0,)]
    finally:
        own.close()
    # Redis away: a listing reads the tool's copy as it stands
    away = f"redis://127.0.0.1:{free_port()}/0"
    out = cli(tmp_path / "tool", "user", "grants", "zhou", "--redis", away)
    assert (out.returncode, out.stdout) == (0, "officer prison-b\n"), out


def test_a_node_on_a_visits_database_left_behind_says_so(tmp_path, url, caplog):
    build(tmp_path)[0].close()
    store = RedisVisitStore.from_url(tmp_path / "node", url)
    try:
        with caplog.at_level("WARNING", logger="parley"):
            assert left_behind(tmp_path / "visits.sqlite3", store)
        assert "python server.py visits migrate" in caplog.text
        assert not left_behind(tmp_path / "nothing.sqlite3", store)
    finally:
        store.close()
