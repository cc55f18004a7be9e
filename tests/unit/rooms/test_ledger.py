"""The ledger stores: chaining, tamper detection with seq, atomic appends, a second writer
refused, the verify CLI. One suite for both stores — ``SqliteLedgerStore`` (the embedded
default) and ``RedisLedgerStore`` (cluster/ledger.py, against a real redis-server started for
the test session) — through the ``ledger`` fixture; what only one of them has (SQLite's group
commit, Redis restarts) follows at the end."""

from __future__ import annotations

import io
import sqlite3
import threading

import msgspec
import pytest
import redis

from cluster.ledger import RedisLedgerStore
from rooms.errors import CommandError
from rooms.events import GENESIS, EventDraft, expected_hash
from rooms.ledger import SqliteLedgerStore, verify_chain, verify_main
from tests.support.redisd import redis_prefix, redis_server  # noqa: F401 - fixtures


def drafts(n: int, start: int = 0) -> list[EventDraft]:
    return [
        EventDraft(1000.0 + i, "system", "test.step", {"i": i}) for i in range(start, start + n)
    ]


class SqliteBackend:
    """Opens SQLite stores on one file and edits that file behind the store's back."""

    name = "sqlite"

    def __init__(self, tmp_path):
        self.path = tmp_path / "ledger.sqlite3"

    def open(self):
        return SqliteLedgerStore(self.path)

    def _sql(self, sql, *args):
        db = sqlite3.connect(self.path)
        with db:
            db.execute(sql, args)
        db.close()

    def edit(self, session, seq, **fields):
        for name, value in fields.items():
            if name == "data":
                value = msgspec.json.encode(value).decode()
            self._sql(
                f"UPDATE events SET {name} = ? WHERE session = ? AND seq = ?", value, session, seq
            )

    def delete(self, session, seq):
        self._sql("DELETE FROM events WHERE session = ? AND seq = ?", session, seq)


class RedisBackend:
    """Opens Redis stores under one key prefix and edits the streams as an attacker with
    Redis access could: XDEL an entry, or rebuild the stream with one entry changed."""

    name = "redis"

    def __init__(self, server, prefix, sync="full"):
        self.url, self.prefix, self.sync = server.url, prefix, sync
        self.raw = redis.Redis.from_url(self.url)

    def open(self):
        return RedisLedgerStore.from_url(self.url, prefix=self.prefix, sync=self.sync)

    def edit(self, session, seq, **fields):
        key = f"{self.prefix}ledger:{session}"
        entries = self.raw.xrange(key)
        self.raw.delete(key)
        for entry_id, values in entries:
            if int(entry_id.split(b"-")[0]) == seq:
                for name, value in fields.items():
                    values[name.encode()] = (
                        msgspec.json.encode(value) if name == "data" else str(value).encode()
                    )
            self.raw.xadd(key, values, id=entry_id)

    def delete(self, session, seq):
        self.raw.xdel(f"{self.prefix}ledger:{session}", f"{seq}-0")


@pytest.fixture(params=["sqlite", "redis", "redis-group"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        yield SqliteBackend(tmp_path)
    else:
        server = request.getfixturevalue("redis_server")
        sync = "group" if request.param == "redis-group" else "full"
        backend = RedisBackend(server, request.getfixturevalue("redis_prefix"), sync)
        backend.name = request.param
        yield backend
        backend.raw.close()


@pytest.fixture
def ledger(backend):
    store = backend.open()
    yield store
    store.close()


def test_append_chains_events(ledger):
    store = ledger
    events = store.append("s-1", drafts(3))
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].prev == GENESIS
    assert events[1].prev == events[0].hash and events[2].prev == events[1].hash
    assert all(e.hash == expected_hash(e) for e in events)
    more = store.append("s-1", drafts(2, 3))
    assert more[0].prev == events[-1].hash and more[0].seq == 4
    assert store.read("s-1") == events + more
    assert store.read("s-1", after_seq=3) == more
    assert store.read("s-1", after_seq=5) == [] and store.read("s-absent") == []
    assert verify_chain(store.read("s-1")) == []


def test_sessions_are_separate_chains(ledger):
    store = ledger
    store.append("s-b", drafts(1, 5))  # created later (ts 1005) though written first
    store.append("s-a", drafts(2))
    store.append("s-c", drafts(1))  # the same first ts as s-a: ordered by name
    assert store.session_ids() == ["s-a", "s-c", "s-b"]
    assert store.read("s-b")[0].prev == GENESIS


def test_events_survive_reopening(backend):
    first = backend.open()
    written = first.append("s-1", drafts(4))
    first.close()
    again = backend.open()
    assert again.read("s-1") == written
    assert [e.seq for e in again.append("s-1", drafts(1, 4))] == [5]  # chains onto what it read
    assert verify_chain(again.read("s-1")) == []
    again.close()


def test_odd_content_round_trips_exactly(ledger):
    # the hash covers the exact ts and data: both must come back bit for bit
    odd = [
        EventDraft(
            1700000000.123456789, "staff:王", "t", {"text": '调解 \u0000 "q"', "n": [1, 2.5]}
        ),
        EventDraft(1e-7, "p-1", "t", {}),
        EventDraft(3, "p-1", "t", {"nested": {"a": None, "b": True}}),  # an int ts
    ]
    written = ledger.append("s:odd/{x}", odd)
    assert ledger.read("s:odd/{x}") == written
    assert verify_chain(ledger.read("s:odd/{x}")) == []


@pytest.fixture
def chained(backend):
    store = backend.open()
    store.append("s-1", drafts(6))
    store.close()
    return backend


def _problems(backend):
    store = backend.open()
    try:
        return verify_chain(store.read("s-1"))
    finally:
        store.close()


def test_edited_data_is_reported_with_its_seq(chained):
    chained.edit("s-1", 3, data={"i": 99})
    assert [(p.seq, p.reason.split(" ")[0]) for p in _problems(chained)] == [(3, "content")]


def test_edited_actor_and_rehashed_event_still_show(chained):
    # an attacker who also recomputes the edited event's hash breaks the next link instead
    store = chained.open()
    event = store.read("s-1")[2]
    store.close()
    forged = event.__class__(**{**event.to_dict(), "actor": "staff:mallory"})
    forged = forged.__class__(**{**forged.to_dict(), "hash": expected_hash(forged)})
    chained.edit("s-1", 3, actor=forged.actor, hash=forged.hash)
    problems = _problems(chained)
    assert [p.seq for p in problems] == [4]
    assert "prev" in problems[0].reason


def test_removed_event_is_reported_with_its_seq(chained):
    chained.delete("s-1", 4)
    problems = _problems(chained)
    assert 4 in [p.seq for p in problems]
    assert any("missing" in p.reason for p in problems if p.seq == 4)


def test_data_that_cannot_be_encoded_stores_nothing(ledger):
    store = ledger
    store.append("s-1", drafts(2))
    before = store.read("s-1")
    with pytest.raises(TypeError):
        store.append("s-1", [*drafts(1, 2), EventDraft(1.0, "system", "x", {"o": object()})])
    assert store.read("s-1") == before
    assert [e.seq for e in store.append("s-1", drafts(1, 2))] == [3]
    assert verify_chain(store.read("s-1")) == []


def test_expected_seq_guards_against_a_second_writer(ledger):
    store = ledger
    store.append("s-1", drafts(2))
    for wrong in (1, 3, 0):
        with pytest.raises(CommandError) as err:
            store.append("s-1", drafts(1), expected_seq=wrong)
        assert err.value.code == "conflict"
    assert len(store.read("s-1")) == 2
    assert [e.seq for e in store.append("s-1", drafts(1, 2), expected_seq=2)] == [3]
    assert store.append("s-1", []) == []


def test_two_writers_racing_for_one_seq_exactly_one_wins(backend):
    """Two stores (two connections: two nodes) both see the tail at seq n and append onto it
    at the same moment, round after round, with batches of varying size: each round exactly
    one wins, the other gets ``conflict`` and nothing of its batch is stored."""
    a, b = backend.open(), backend.open()
    try:
        a.append("s-1", drafts(1))
        barrier = threading.Barrier(2)
        for n in range(40):
            tail = a.read("s-1")[-1].seq
            assert b.read("s-1")[-1].seq == tail
            results = {}

            def write(name, store, size, n=n, tail=tail, results=results):
                batch = [EventDraft(float(n), name, "race", {"n": n, "k": k}) for k in range(size)]
                barrier.wait(timeout=10)
                try:
                    results[name] = store.append("s-1", batch, expected_seq=tail)
                    store.wait_durable()  # group mode: the loser learns it here
                except CommandError as err:
                    results[name] = err
                    if hasattr(store, "forgive"):
                        store.forgive("s-1")  # the node would drop the session

            sizes = {"a": 1 + n % 3, "b": 1 + (n * 7) % 4}
            threads = [
                threading.Thread(target=write, args=(k, s, sizes[k]))
                for k, s in (("a", a), ("b", b))
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
            won = [k for k, r in results.items() if isinstance(r, list)]
            lost = [r for r in results.values() if isinstance(r, CommandError)]
            assert len(won) == 1 and len(lost) == 1, results
            assert lost[0].code == "conflict"
            after = a.read("s-1", after_seq=tail)
            assert [e.actor for e in after] == won * sizes[won[0]]  # the winner's whole batch
            assert [e.seq for e in after] == list(range(tail + 1, tail + 1 + sizes[won[0]]))
        assert verify_chain(a.read("s-1")) == []
    finally:
        a.close()
        b.close()


def test_writers_without_expectation_all_get_in_one_chain(backend):
    if backend.name == "redis-group":
        pytest.skip("group mode has one writer per session (the lease holder): no retries")
    stores = [backend.open() for _ in range(3)]
    try:

        def writer(k):
            for i in range(15):
                stores[k % 3].append("s-1", [EventDraft(float(i), f"w{k}", "t", {"i": i})])

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        events = stores[0].read("s-1")
        assert len(events) == 60 and verify_chain(events) == []
    finally:
        for store in stores:
            store.close()


async def test_durable_barrier_returns(ledger):
    ledger.append("s-1", drafts(1))
    await ledger.durable()
    assert ledger.wait_durable(timeout=5)


def _tamper(path, sql, *args):
    db = sqlite3.connect(path)
    with db:
        db.execute(sql, args)
    db.close()


# -- SQLite only: the verify CLI reads the file; the database itself refusing a row -----------


@pytest.fixture
def sqlite_chained(tmp_path):
    path = tmp_path / "l.sqlite3"
    store = SqliteLedgerStore(path)
    store.append("s-1", drafts(6))
    store.close()
    return path


def test_verify_main_reports(sqlite_chained):
    chained = sqlite_chained
    out = io.StringIO()
    assert verify_main(chained, "s-1", out=out) == 0
    assert "chain OK" in out.getvalue() and "6 events" in out.getvalue()
    _tamper(chained, "UPDATE events SET ts = ts + 1 WHERE seq = 2")
    out = io.StringIO()
    assert verify_main(chained, "s-1", out=out) == 1
    assert "seq 2: content edited" in out.getvalue()
    out = io.StringIO()
    assert verify_main(chained, "s-unknown", out=out) == 1
    assert "no events" in out.getvalue()
    out = io.StringIO()
    assert verify_main(chained.parent / "absent.sqlite3", "s-1", out=out) == 1
    assert not (chained.parent / "absent.sqlite3").exists()


def test_a_failed_append_changes_nothing(tmp_path):
    path = tmp_path / "l.sqlite3"
    store = SqliteLedgerStore(path)
    store.append("s-1", drafts(2))
    before = store.read("s-1")
    # the database itself refuses the third row of the batch: the first two must not stay
    _tamper(
        path,
        "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.type = 'test.bad' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    batch = [*drafts(2, 2), EventDraft(1.0, "system", "test.bad", {})]
    with pytest.raises(sqlite3.IntegrityError):
        store.append("s-1", batch)
    assert store.read("s-1") == before
    # data that cannot be encoded fails the same way
    with pytest.raises(TypeError):
        store.append("s-1", [*drafts(1, 2), EventDraft(1.0, "system", "x", {"o": object()})])
    assert store.read("s-1") == before
    assert [e.seq for e in store.append("s-1", drafts(1, 2))] == [3]
    assert verify_chain(store.read("s-1")) == []
    store.close()


# -- group commit: durability off the caller's thread ------------------------------------------


async def test_group_commit_durable_barrier_covers_earlier_appends(tmp_path):
    store = SqliteLedgerStore(tmp_path / "l.sqlite3", sync="group")
    try:
        for i in range(50):
            store.append("s-1", drafts(1, i))
        await store.durable()
        assert store._synced >= 50  # every append before the barrier is synced
        assert 1 <= store.syncs <= 50  # one fdatasync per group, not per append
        # committed before it was synced: another connection reads it (process-crash safe)
        other = sqlite3.connect(tmp_path / "l.sqlite3")
        assert other.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 50
        other.close()
        assert verify_chain(store.read("s-1")) == []
    finally:
        store.close()


async def test_group_commit_barrier_with_nothing_pending_returns(tmp_path):
    store = SqliteLedgerStore(tmp_path / "l.sqlite3", sync="group")
    try:
        await store.durable()
        assert store.syncs == 0
        assert store.wait_durable(timeout=5)
    finally:
        store.close()


def test_group_commit_from_threads_and_close_syncs_the_rest(tmp_path):
    import threading

    store = SqliteLedgerStore(tmp_path / "l.sqlite3", sync="group")

    def writer(name):
        for i in range(20):
            store.append(name, drafts(1, i))
        assert store.wait_durable(timeout=30)

    threads = [threading.Thread(target=writer, args=(f"s-{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.append("s-last", drafts(1))
    store.close()  # syncs the last commit before it returns
    assert store._synced == store._committed == 81
    reopened = SqliteLedgerStore(tmp_path / "l.sqlite3")
    assert sorted(reopened.session_ids()) == ["s-0", "s-1", "s-2", "s-3", "s-last"]
    assert all(verify_chain(reopened.read(s)) == [] for s in reopened.session_ids())
    reopened.close()


def test_full_mode_is_durable_on_return(store):
    store.append("s-1", drafts(2))
    assert store.sync == "full" and store.wait_durable(timeout=0)


def test_unknown_sync_mode_is_refused(tmp_path):
    with pytest.raises(ValueError):
        SqliteLedgerStore(tmp_path / "l.sqlite3", sync="sometimes")
