"""The visits database of a cluster (cluster/visits.py) on a real redis-server: each "machine"
here is its own data directory with its own SQLite copy. What one writes, every other reads
with the same ids; racing bookings of one slot from eight copies give one booking; a digest
made on one matches on another; an import is all or nothing everywhere; a writer whose lock
expired stores nothing; Redis away: reads serve the copy, writes are refused; a copy that
followed a log Redis no longer has refuses to go on."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from cluster import visits as cv
from cluster.client import sync_client
from cluster.visits import RedisVisitStore, ReplicaLost
from tests.integration.visits.conftest import id_of
from tests.support.province import NOW, build
from tests.support.redisd import redis_prefix, redis_server  # noqa: F401 - fixtures
from visits import importer
from visits.checkin import CheckIns
from visits.directory import Directory
from visits.model import VisitError
from visits.reservations import Request, Reservations

START = dt.datetime(2030, 1, 8, 9, 0)  # a Tuesday inside the province's opening hours
TABLES = ("sites", "terminals", "inmates", "visitors", "grants", "bookings", "holds")


@pytest.fixture
def machines(tmp_path, redis_server, redis_prefix):  # noqa: F811
    made = []

    def machine(name: str) -> RedisVisitStore:
        store = RedisVisitStore.from_url(tmp_path / name, redis_server.url, prefix=redis_prefix)
        made.append(store)
        return store

    yield machine
    for store in made:
        store.close()


def dump(store) -> dict:
    return {t: store.rows(f"SELECT * FROM {t} ORDER BY 1, 2") for t in TABLES}


def test_what_one_machine_writes_every_other_reads_with_the_same_ids(machines, tmp_path):
    a, b = machines("a"), machines("b")
    _, _, _, ids = build(None, store=a)
    assert dump(b) == dump(a) and dump(a)["inmates"]  # b applied the whole province
    res_b = Reservations(b)
    bid = res_b.request(
        "staff:op", Request(ids["a1"], "bx-1", "pa-1", START, 15, (ids["a1v0"],)), NOW
    )
    res_a = Reservations(a)
    assert res_a.get(bid).status == "requested"  # the booking b made, read on a by its id
    res_a.decide("staff:off-a", bid, approve=True, reason="", supervisor=False, now=NOW)
    assert res_b.get(bid).status == "approved"
    assert a.position() == b.position() and a.position()[0] > 1
    assert not (tmp_path / "a" / "visits.sqlite3").exists()  # the copy is a file of its own
    assert (tmp_path / "b" / cv.REPLICA_FILE).is_file()
    # a third machine, started later, catches up from the log alone
    c = machines("c")
    assert dump(c) == dump(a)


def test_one_slot_booked_from_eight_machines_at_once_gives_one_booking(machines):
    stores = [machines(f"m{i}") for i in range(8)]
    _, _, _, ids = build(None, store=stores[0])
    won, refused, other = [], [], []
    gate = threading.Barrier(len(stores))

    def book(store):
        gate.wait()
        try:
            won.append(
                Reservations(store).request(
                    "staff:op",
                    Request(ids["a1"], "bx-1", "pa-1", START, 15, (ids["a1v0"],)),
                    NOW,
                )
            )
        except VisitError as exc:
            (refused if exc.code == "conflict" else other).append(exc.code)

    threads = [threading.Thread(target=book, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1 and len(refused) == 7 and other == []
    first = dump(stores[0])
    assert len(first["bookings"]) == 1 and first["bookings"][0][0] == won[0]
    assert all(dump(s) == first for s in stores[1:])


def test_an_identity_number_taken_on_one_machine_matches_on_another(machines):
    a, b = machines("a"), machines("b")
    _, _, _, ids = build(None, store=a)
    res = Reservations(b)
    bid = res.request(
        "staff:op", Request(ids["a1"], "bx-1", "pa-1", START, 15, (ids["a1v0"],)), NOW
    )
    res.decide("staff:off-a", bid, approve=True, reason="", supervisor=False, now=NOW)
    number = id_of("a1", 0)
    at = START - dt.timedelta(minutes=5)
    with pytest.raises(VisitError) as e:
        CheckIns(b, res).check_in(
            "staff:op", bid, ids["a1v0"], id_of("a1", 1), method="id_card", pledge=True, now=at
        )
    assert e.value.code == "identity_mismatch"
    done = CheckIns(b, res).check_in(
        "staff:op", bid, ids["a1v0"], number, method="id_card", pledge=True, now=at
    )
    assert done.visitor == ids["a1v0"]
    assert [c.visitor for c in CheckIns(a, Reservations(a)).checked(bid)] == [ids["a1v0"]]


def test_an_import_with_a_bad_line_is_applied_nowhere_and_a_good_one_everywhere(machines):
    a, b = machines("a"), machines("b")
    build(None, store=a)
    before = b.position()
    bad = "facility,number,name,grade\nprison-a,A-100,张三,normal\nprison-z,Z-1,王五,normal\n"
    report = importer.run(a, "inmates", bad, dry_run=False)
    assert report.errors and not report.applied
    assert b.position() == before  # nothing reached the log
    good = "facility,number,name,grade\nprison-a,A-100,张三,normal\nprison-a,A-101,李四,strict\n"
    assert importer.run(b, "inmates", good, dry_run=False).applied
    assert [
        r[0] for r in a.rows("SELECT number FROM inmates WHERE number LIKE 'A-10_' ORDER BY number")
    ] == [
        "A-100",
        "A-101",
    ]
    assert dump(a) == dump(b)


def test_a_writer_whose_lock_expired_stores_nothing(machines, monkeypatch):
    a, b = machines("a"), machines("b")
    build(None, store=a)
    before = dump(b), b.position()
    d = Directory(a)
    with pytest.raises(VisitError) as e, a.tx() as db:
        db.execute("INSERT INTO grants VALUES ('late', 'officer', 'prison-a')")
        a.redis.delete(a._lock_key)  # the lock ran out while this node stalled
    assert e.value.code == "unavailable"
    assert ("late", "officer", "prison-a") not in a.rows("SELECT * FROM grants")  # rolled back
    assert (dump(b), b.position()) == before  # and never in the log
    # another node wrote after the lock was lost: the stalled writer's append is refused too
    with pytest.raises(VisitError) as e, a.tx() as db:
        db.execute("INSERT INTO grants VALUES ('late', 'officer', 'prison-a')")
        token = a.redis.get(a._lock_key)
        a.redis.delete(a._lock_key)
        d_b = Directory(b)
        d_b.grant("first", "officer", "prison-a")
        a.redis.set(a._lock_key, token)  # even with its token back: the log moved on
    assert e.value.code == "unavailable" and "meanwhile" in e.value.message
    assert [r[0] for r in a.rows("SELECT username FROM grants WHERE site='prison-a'")].count(
        "late"
    ) == 0
    assert d.grants("first")  # a applied b's write when it read again


def test_redis_away_reads_serve_the_copy_and_writes_are_refused(machines, tmp_path):
    built = machines("a")
    build(None, store=built)
    sites = built.rows("SELECT id FROM sites ORDER BY id")
    # the same machine's copy, with a Redis where nothing listens
    a = RedisVisitStore(tmp_path / "a", sync_client("redis://127.0.0.1:1/0"))
    try:
        assert a.rows("SELECT id FROM sites ORDER BY id") == sites
        with pytest.raises(VisitError) as e:
            Directory(a).grant("x", "officer", "prison-a")
        assert e.value.code == "unavailable"
        with pytest.raises(VisitError) as e:
            a.id_hash("110101197001010011")
        assert e.value.code == "unavailable"
    finally:
        a.close()


def test_a_copy_that_followed_another_log_refuses_to_go_on(machines, redis_server):  # noqa: F811
    a = machines("a")
    build(None, store=a)
    for key in a.redis.scan_iter(a.prefix + "*"):
        a.redis.delete(key)  # Redis emptied (or another Redis given)
    with pytest.raises(ReplicaLost):
        a.catch_up()
    with pytest.raises(ReplicaLost):
        Directory(a).grant("x", "officer", "prison-a")
    assert a.rows("SELECT count(*) FROM sites")[0][0] == 3  # reads: the copy, said in the log


def test_a_long_log_is_snapshotted_and_trimmed_and_a_copy_behind_it_loads_the_snapshot(machines):
    a, b = machines("a"), machines("b")
    _, _, _, ids = build(None, store=a)
    assert dump(b) == dump(a)  # b caught up here, then stops reading (a machine that is down)
    behind = b.position()
    Directory(a).grant("after", "officer", "prison-a")
    Directory(a).grant("later", "officer", "prison-b")
    tail = a.position()[0]
    assert a.compact(every=tail + 1) is None  # not due: the log is shorter than that
    assert a.redis.xlen(a._log) == tail  # nothing trimmed
    assert a.compact(every=tail, keep=1) == (tail, tail - 1)
    assert a.redis.xlen(a._log) == 1  # only the last entry is left
    assert a.compact(every=1) is None  # nothing new since the snapshot
    # b was behind the trimmed log: it loads the snapshot (one local transaction), then goes on
    assert dump(b) == dump(a) and b.position() == a.position() != behind
    assert ("after", "officer", "prison-a") in b.rows("SELECT * FROM grants")
    # a new machine starts from the snapshot alone, and writes after it reach everyone
    c = machines("c")
    assert dump(c) == dump(a)
    bid = Reservations(c).request(
        "staff:op", Request(ids["a1"], "bx-1", "pa-1", START, 15, (ids["a1v0"],)), NOW
    )
    assert Reservations(a).get(bid).status == Reservations(b).get(bid).status == "requested"
    assert c.id_hash("110101197001010011") == a.id_hash("110101197001010011")


def test_a_snapshot_made_by_a_copy_behind_the_log_is_completed_from_the_log(machines):
    a, b = machines("a"), machines("b")
    build(None, store=a)
    assert dump(b) == dump(a)
    at = b.position()[0]
    Directory(a).grant("after", "officer", "prison-a")  # b has not read this one
    assert b.compact(every=1, keep=0) == (at, at)  # b's copy as it stands: the log keeps the rest
    assert a.redis.xlen(a._log) == 1
    c = machines("c")
    assert dump(c) == dump(a) and c.position() == a.position() == (at + 1, a.position()[1])


def test_without_a_fitting_snapshot_a_copy_behind_a_trimmed_log_refuses(machines):
    a, b = machines("a"), machines("b")
    build(None, store=a)
    assert dump(b) == dump(a)
    before = dump(b)
    Directory(a).grant("after", "officer", "prison-a")
    Directory(a).grant("later", "officer", "prison-a")
    a.compact(every=1, keep=1)
    # a damaged snapshot: not loaded, the copy stays as it was, pages are told to try again
    a.redis.hset(a._snapshot, "data", b"not a database")
    with pytest.raises(VisitError) as e:
        b.catch_up()
    assert e.value.code == "unavailable" and "snapshot" in e.value.message
    assert [r[1] for r in b._db.execute("PRAGMA database_list")] == ["main"]  # detached
    assert b.rows("SELECT * FROM replica") and dump(b) == before
    # no snapshot at all: the entries are gone, the copy cannot go on
    a.redis.delete(a._snapshot)
    with pytest.raises(ReplicaLost):
        b.catch_up()
    assert dump(b) == before


def test_one_node_compacts_at_a_time_and_redis_away_compacts_nothing(machines, tmp_path):
    a = machines("a")
    build(None, store=a)
    a.redis.set(a._compacting, "another node", px=60_000)
    assert a.compact(every=1) is None and a.redis.xlen(a._log) == a.position()[0]
    a.redis.delete(a._compacting)
    dead = RedisVisitStore(tmp_path / "a", sync_client("redis://127.0.0.1:1/0"))
    try:
        assert dead.compact(every=1) is None
    finally:
        dead.close()
    assert a.compact(every=1, keep=0)[1] == a.position()[0]


def test_two_workers_on_one_copy_load_the_snapshot_once(
    machines, tmp_path, redis_server, redis_prefix
):  # noqa: F811
    a, b = machines("a"), machines("b")
    build(None, store=a)
    assert dump(b) == dump(a)
    # a second worker of machine b: the same file
    b2 = RedisVisitStore.from_url(tmp_path / "b", redis_server.url, prefix=redis_prefix)
    try:
        Directory(a).grant("after", "officer", "prison-a")
        Directory(a).grant("later", "officer", "prison-b")
        a.compact(every=1, keep=1)
        assert dump(b) == dump(a)  # b loaded the snapshot into the file both workers share
        at = b2.position()
        assert at == a.position()  # b2 reads the file b wrote: nothing left to load or apply
        assert b2.catch_up() == 0 and dump(b2) == dump(a)
        Directory(b2).grant("from-b2", "officer", "prison-a")  # and writes after it
        assert ("from-b2", "officer", "prison-a") in a.rows("SELECT * FROM grants")
    finally:
        b2.close()
