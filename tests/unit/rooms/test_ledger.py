"""The ledger: chaining, tamper detection with seq, atomic appends, the verify CLI."""

from __future__ import annotations

import io
import sqlite3

import pytest

from rooms.errors import CommandError
from rooms.events import GENESIS, EventDraft, expected_hash
from rooms.ledger import SqliteLedgerStore, verify_chain, verify_main


def drafts(n: int, start: int = 0) -> list[EventDraft]:
    return [
        EventDraft(1000.0 + i, "system", "test.step", {"i": i}) for i in range(start, start + n)
    ]


def test_append_chains_events(store):
    events = store.append("s-1", drafts(3))
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].prev == GENESIS
    assert events[1].prev == events[0].hash and events[2].prev == events[1].hash
    assert all(e.hash == expected_hash(e) for e in events)
    more = store.append("s-1", drafts(2, 3))
    assert more[0].prev == events[-1].hash and more[0].seq == 4
    assert store.read("s-1") == events + more
    assert store.read("s-1", after_seq=3) == more
    assert verify_chain(store.read("s-1")) == []


def test_sessions_are_separate_chains(store):
    store.append("s-a", drafts(2))
    store.append("s-b", drafts(1))
    assert store.session_ids() == ["s-a", "s-b"]
    assert store.read("s-b")[0].prev == GENESIS


def test_events_survive_reopening(tmp_path):
    path = tmp_path / "l.sqlite3"
    first = SqliteLedgerStore(path)
    written = first.append("s-1", drafts(4))
    first.close()
    again = SqliteLedgerStore(path)
    assert again.read("s-1") == written
    again.close()


def _tamper(path, sql, *args):
    db = sqlite3.connect(path)
    with db:
        db.execute(sql, args)
    db.close()


@pytest.fixture
def chained(tmp_path):
    path = tmp_path / "l.sqlite3"
    store = SqliteLedgerStore(path)
    store.append("s-1", drafts(6))
    store.close()
    return path


def test_edited_data_is_reported_with_its_seq(chained):
    _tamper(chained, "UPDATE events SET data = ? WHERE session = 's-1' AND seq = 3", '{"i":99}')
    problems = verify_chain(SqliteLedgerStore(chained).read("s-1"))
    assert [(p.seq, p.reason.split(" ")[0]) for p in problems] == [(3, "content")]


def test_edited_actor_and_rehashed_event_still_show(chained):
    # an attacker who also recomputes the edited event's hash breaks the next link instead
    store = SqliteLedgerStore(chained)
    event = store.read("s-1")[2]
    forged = event.__class__(**{**event.to_dict(), "actor": "staff:mallory"})
    forged = forged.__class__(**{**forged.to_dict(), "hash": expected_hash(forged)})
    _tamper(
        chained, "UPDATE events SET actor = ?, hash = ? WHERE seq = 3", forged.actor, forged.hash
    )
    problems = verify_chain(SqliteLedgerStore(chained).read("s-1"))
    assert [p.seq for p in problems] == [4]
    assert "prev" in problems[0].reason


def test_removed_event_is_reported_with_its_seq(chained):
    _tamper(chained, "DELETE FROM events WHERE session = 's-1' AND seq = 4")
    problems = verify_chain(SqliteLedgerStore(chained).read("s-1"))
    assert 4 in [p.seq for p in problems]
    assert any("missing" in p.reason for p in problems if p.seq == 4)


def test_verify_main_reports(chained):
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


def test_expected_seq_guards_against_a_second_writer(store):
    store.append("s-1", drafts(2))
    with pytest.raises(CommandError) as err:
        store.append("s-1", drafts(1), expected_seq=1)
    assert err.value.code == "conflict"
    assert len(store.read("s-1")) == 2


def test_concurrent_appends_from_threads_stay_one_chain(store):
    import threading

    def writer(k):
        for i in range(20):
            store.append("s-1", [EventDraft(float(i), f"w{k}", "t", {"i": i})])

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    events = store.read("s-1")
    assert len(events) == 80 and verify_chain(events) == []


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
