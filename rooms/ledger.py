"""The ledger: each session's events, append-only, hash-chained, durable before acknowledged.

``LedgerStore`` is the interface (``cluster.ledger.RedisLedgerStore`` is the other
implementation, for several nodes: ``append`` is one atomic step that checks the chain's tail,
``read`` pages by seq; both pass tests/unit/rooms/test_ledger.py). ``SqliteLedgerStore`` is
the embedded default: one table, WAL journal, one transaction per append so a batch lands whole
or not at all. ``verify_chain`` finds edited, removed or reordered events; ``verify_main`` is the
CLI around it.

Durability, two modes:

* ``sync="full"`` (default): ``synchronous=FULL``, the commit is fsync'd before ``append``
  returns. On a busy disk that is milliseconds to tens of milliseconds inside ``append``, on the
  caller's thread (the event loop). See docs/benchmarks.md.
* ``sync="group"``: group commit. ``append`` commits with ``synchronous=NORMAL`` (the commit is
  in the WAL file, which survives a crash of the process but not yet of the OS) and returns; a
  background thread fdatasyncs the WAL, one sync for every commit made since the last one.
  ``await store.durable()`` (or ``store.wait_durable()`` off the loop) returns once every commit
  made before the call is on disk: an acknowledgement that awaits it is "durable before
  acknowledged" again, without the loop waiting on the disk. SQLite's own checkpoints fsync
  the WAL before copying it into the database file, and the database file after.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
from pathlib import Path
from typing import NamedTuple, Protocol

import msgspec

from rooms.errors import CommandError
from rooms.events import GENESIS, Event, EventDraft, expected_hash, seal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    session TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    ts      REAL NOT NULL,
    actor   TEXT NOT NULL,
    type    TEXT NOT NULL,
    data    TEXT NOT NULL,
    prev    TEXT NOT NULL,
    hash    TEXT NOT NULL,
    PRIMARY KEY (session, seq)
) WITHOUT ROWID
"""


class LedgerStore(Protocol):
    def append(
        self, session_id: str, events: list[EventDraft], *, expected_seq: int | None = None
    ) -> list[Event]:
        """Chain and store ``events`` atomically and durably; all or nothing.

        ``expected_seq``: the caller's view of the last seq; a different tail (another writer
        got there first) raises ``CommandError("conflict")`` and stores nothing.
        """
        ...

    def read(self, session_id: str, after_seq: int = 0) -> list[Event]: ...

    def session_ids(self) -> list[str]: ...


class SqliteLedgerStore:
    """The embedded ledger: one SQLite file, safe to share between threads."""

    def __init__(self, path: str | Path, *, sync: str = "full") -> None:
        if sync not in ("full", "group"):
            raise ValueError("sync is 'full' or 'group'")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sync = sync
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "PRAGMA synchronous=FULL" if sync == "full" else "PRAGMA synchronous=NORMAL"
        )
        self._db.execute(_SCHEMA)
        # group commit: tickets count commits; the syncer makes them durable in groups
        self._cond = threading.Condition()
        self._committed = 0
        self._synced = 0
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._closing = False
        self.syncs = 0  # fdatasync calls made by the syncer (fewer than commits under load)
        self._syncer: threading.Thread | None = None
        if sync == "group":
            self._wal_fd = os.open(f"{self.path}-wal", os.O_RDWR | os.O_CREAT, 0o600)
            self._syncer = threading.Thread(target=self._sync_loop, name="ledger-sync", daemon=True)
            self._syncer.start()

    # -- group commit ---------------------------------------------------------------------------
    def _committed_one(self) -> None:
        if self._syncer is None:
            return
        with self._cond:
            self._committed += 1
            self._cond.notify_all()

    def _sync_loop(self) -> None:
        while True:
            with self._cond:
                while self._synced >= self._committed and not self._closing:
                    self._cond.wait()
                if self._synced >= self._committed and self._closing:
                    return
                target = self._committed
            os.fdatasync(self._wal_fd)  # every commit up to ``target`` is in the WAL's pages
            with self._cond:
                self._synced = target
                self.syncs += 1
                self._cond.notify_all()
                due = [w for w in self._waiters if w[0] <= target]
                self._waiters = [w for w in self._waiters if w[0] > target]
            for _, loop, fut in due:
                loop.call_soon_threadsafe(_resolve, fut)

    async def durable(self) -> None:
        """Return once every append made before this call is on disk (at once in ``full``)."""
        if self._syncer is None:
            return
        loop = asyncio.get_running_loop()
        with self._cond:
            ticket = self._committed
            if self._synced >= ticket:
                return
            fut = loop.create_future()
            self._waiters.append((ticket, loop, fut))
        await fut

    def wait_durable(self, timeout: float | None = None) -> bool:
        """``durable`` for threads: block until every earlier append is on disk."""
        if self._syncer is None:
            return True
        with self._cond:
            ticket = self._committed
            return self._cond.wait_for(lambda: self._synced >= ticket, timeout)

    def append(
        self, session_id: str, events: list[EventDraft], *, expected_seq: int | None = None
    ) -> list[Event]:
        if not events:
            return []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT seq, hash FROM events WHERE session = ? ORDER BY seq DESC LIMIT 1",
                    (session_id,),
                ).fetchone()
                seq, prev = row if row else (0, GENESIS)
                if expected_seq is not None and expected_seq != seq:
                    raise CommandError(
                        "conflict", f"session {session_id} moved on (seq {seq}, not {expected_seq})"
                    )
                sealed = []
                for draft in events:
                    seq += 1
                    event = seal(session_id, seq, prev, draft)
                    self._db.execute(
                        "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            session_id,
                            event.seq,
                            event.ts,
                            event.actor,
                            event.type,
                            msgspec.json.encode(event.data).decode(),
                            event.prev,
                            event.hash,
                        ),
                    )
                    sealed.append(event)
                    prev = event.hash
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self._committed_one()
        return sealed

    def read(self, session_id: str, after_seq: int = 0) -> list[Event]:
        with self._lock:
            rows = self._db.execute(
                "SELECT session, seq, ts, actor, type, data, prev, hash FROM events"
                " WHERE session = ? AND seq > ? ORDER BY seq",
                (session_id, after_seq),
            ).fetchall()
        return [row_event(row) for row in rows]

    def session_ids(self) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT session FROM events GROUP BY session ORDER BY MIN(ts), session"
            ).fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        """Close; in ``group`` mode the last commits are synced first."""
        if self._syncer is not None:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._syncer.join()
            os.close(self._wal_fd)
            self._syncer = None
        with self._lock:
            self._db.close()


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def row_event(row: tuple) -> Event:
    session, seq, ts, actor, type_, data, prev, digest = row
    try:
        decoded = msgspec.json.decode(data)
    except msgspec.DecodeError:
        decoded = {"__undecodable__": data}
    if not isinstance(decoded, dict):
        decoded = {"__not_an_object__": decoded}
    return Event(session, seq, ts, actor, type_, decoded, prev, digest)


class ChainProblem(NamedTuple):
    seq: int
    reason: str


def verify_chain(events: list[Event]) -> list[ChainProblem]:
    """Every way ``events`` fail to be one unbroken chain, each with the seq it concerns."""
    problems: list[ChainProblem] = []
    want_seq, want_prev = 1, GENESIS
    session = events[0].session if events else None
    for event in events:
        if event.seq > want_seq:
            missing = (
                f"seq {want_seq}"
                if event.seq == want_seq + 1
                else f"seqs {want_seq}-{event.seq - 1}"
            )
            for gone in range(want_seq, event.seq):
                problems.append(ChainProblem(gone, f"event missing ({missing} removed)"))
        elif event.seq < want_seq:
            problems.append(ChainProblem(event.seq, "event out of order or repeated"))
        if event.session != session:
            problems.append(ChainProblem(event.seq, f"belongs to session {event.session}"))
        if event.hash != expected_hash(event):
            problems.append(ChainProblem(event.seq, "content edited (hash does not match)"))
        if event.prev != want_prev:
            problems.append(ChainProblem(event.seq, "prev does not match the previous event"))
        want_seq, want_prev = event.seq + 1, event.hash
    return problems


def verify_main(db_path: str | Path, session_id: str, out=None) -> int:
    """``python server.py ledger verify <session>``: print a report; 0 when the chain holds."""
    out = out or sys.stdout
    path = Path(db_path)
    if not path.exists():
        print(f"no ledger at {path}", file=out)
        return 1
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT session, seq, ts, actor, type, data, prev, hash FROM events"
            " WHERE session = ? ORDER BY seq",
            (session_id,),
        ).fetchall()
    finally:
        db.close()
    return report_chain(session_id, [row_event(r) for r in rows], str(path), out)


def report_chain(session_id: str, events: list[Event], where: str, out=None) -> int:
    """Print the chain report for ``events`` read from ``where``; 0 when the chain holds."""
    out = out or sys.stdout
    if not events:
        print(f"session {session_id}: no events in {where}", file=out)
        return 1
    problems = verify_chain(events)
    head = events[-1]
    print(f"session {session_id}: {len(events)} events, last seq {head.seq}", file=out)
    print(f"head {head.hash}", file=out)
    if not problems:
        print("chain OK: every hash matches and every event links to the one before", file=out)
        return 0
    print(f"{len(problems)} problem(s):", file=out)
    for problem in problems:
        print(f"  seq {problem.seq}: {problem.reason}", file=out)
    print(
        "note: events removed from the very end cannot be detected from the chain alone", file=out
    )
    return 1
