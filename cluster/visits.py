"""The visits database of a cluster: each machine's own SQLite copy, kept in step through one
Redis stream of write transactions (docs/scaling.md, "The visits database on Redis").

visits/ and signaling/visits*.py reach their database only through ``tx()`` (one write
transaction) and ``rows()`` (a read): some sixty statements over twenty tables. Rather than a
second implementation of each, a clustered node keeps the same schema in its data directory's
``visits-replica.sqlite3`` and the cluster shares the *writes*: a transaction's statements
(SQL and parameters, in the order they ran) are one entry of the stream ``visits:log``, whose
ids are ``0-1``, ``0-2``, …. A transaction runs under the cluster's one write lock (``SET NX
PX``): it applies the entries this copy has not applied yet, runs, and appends its statements
only if it still holds the lock and the stream's last entry is the one it applied last (one Lua
script); otherwise nothing is appended, the local transaction is rolled back and the caller
gets ``unavailable``. Every read first applies what is new (one round trip when nothing is).
The same statements on the same rows give the same rows everywhere: the statements use no clock
or randomness of SQLite's, and new ids are rowids, given in the same order on every copy.

The identity-number key (digests of identity numbers, visits/store.py) must be one for the
cluster: it is kept in Redis (``visits:id-key``), set from the first node's own key file, or
from the copied directory's by ``server.py visits migrate`` (cluster/visits_migrate.py).

``visits:tail`` holds the log's epoch (a name drawn when it starts) and its last position, so
a read with nothing new costs one GET; a copy that followed another log (Redis emptied or
replaced) refuses to write rather than build on rows the cluster no longer has.

The log does not grow for ever: once it holds ``SNAPSHOT_EVERY`` entries past the last snapshot,
one node (``compact``, in a thread, every few minutes) stores its copy as it stands in
``visits:snapshot`` (the SQLite image, compressed, with its position) and trims the log to the
``KEEP`` entries before that position. A copy further behind than the log reaches (a new
machine, one that was down) loads the snapshot in one local transaction and applies the log from
there.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import sqlite3
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import msgspec
import redis

from cluster.client import sync_client
from visits.model import VisitError
from visits.store import SCHEMA, VisitStore

log = logging.getLogger("parley.visits")

REPLICA_FILE = "visits-replica.sqlite3"
LOCK_MS = 5000  # a transaction is milliseconds; the lock outlives a stalled holder this long
LOCK_WAIT_S = 5.0  # how long a writer waits for another node's transaction before giving up
APPLY_BATCH = 500  # log entries applied per local transaction while catching up
SNAPSHOT_EVERY = 20_000  # log entries past the last snapshot before the next is stored
KEEP = 2_000  # entries kept before a snapshot: a copy a little behind needs only the log
COMPACT_LOCK_MS = 120_000  # one node compacts at a time; a crashed one's turn passes after this
COMPACT_CHECK_S = 300.0  # how often each node looks whether the log is due for a snapshot

TABLES = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA)  # parents before children

_POSITION = """
CREATE TABLE IF NOT EXISTS replica (
  id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL, epoch TEXT NOT NULL);
"""

# KEYS: log, lock, tail, id key. ARGV: the position the writer applied last, its lock token,
# the entry, a new epoch (used when the log starts), an id key ('' = leave it; else set it).
# ``tail`` is "<epoch> <last position>": what a read checks in one GET.
# Returns {position, epoch} and releases the lock; -1: the log moved on; -2: the lock is not
# the writer's.
_APPEND = """#!lua
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return -2 end
local epoch, n = ARGV[4], 0
local tail = redis.call('GET', KEYS[3])
if tail then
  local e, last = string.match(tail, '^(%S+) (%d+)$')
  epoch, n = e, tonumber(last)
end
if n ~= tonumber(ARGV[1]) then return -1 end
if ARGV[5] ~= '' then redis.call('SET', KEYS[4], ARGV[5]) end
redis.call('XADD', KEYS[1], '0-' .. (n + 1), 'tx', ARGV[3])
redis.call('SET', KEYS[3], epoch .. ' ' .. (n + 1))
redis.call('DEL', KEYS[2])
return {n + 1, epoch}
"""

# KEYS: lock, tail. ARGV: token, ttl ms. {1, tail}: the lock is the caller's now (and this is
# the log's tail it must catch up to); 0: another writer holds it.
_LOCK = """#!lua
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('GET', KEYS[2]) or ''}
end
return 0
"""

# KEYS: lock. ARGV: token. Deletes the lock only if it is still the caller's.
_UNLOCK = """#!lua
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# KEYS: snapshot, tail, log. ARGV: position, epoch, the compressed image, keep.
# Stores the snapshot if it is of this log and newer than the one held, then trims the log to
# the ``keep`` entries before it. Returns {stored (1/0), entries trimmed}.
_SNAPSHOT = """#!lua
local tail = redis.call('GET', KEYS[2])
if not tail then return {0, 0} end
local epoch, last = string.match(tail, '^(%S+) (%d+)$')
local position = tonumber(ARGV[1])
if epoch ~= ARGV[2] or tonumber(last) < position then return {0, 0} end
local held = redis.call('HMGET', KEYS[1], 'position', 'epoch')
if held[2] == epoch and tonumber(held[1]) >= position then return {0, 0} end
redis.call('HSET', KEYS[1], 'position', position, 'epoch', epoch, 'data', ARGV[3])
local floor = position - tonumber(ARGV[4]) + 1
if floor <= 1 then return {1, 0} end
return {1, redis.call('XTRIM', KEYS[3], 'MINID', '0-' .. floor)}
"""


class ReplicaLost(VisitError):
    """This copy followed a log that Redis no longer has: nothing is written until an
    operator decides (the server refuses to start; docs/scaling.md)."""

    def __init__(self, message: str) -> None:
        super().__init__("unavailable", message)


def _unavailable(why: str) -> VisitError:
    return VisitError("unavailable", f"the visits database is unavailable: {why}; try again")


class _Recorder:
    """The connection as a transaction's body sees it: each statement runs at once, and the
    ones that ran (every one but a SELECT) are noted, in order, for the log. A failed statement
    raised and is not noted; a ``ROLLBACK TO`` a savepoint is noted with the savepoint, so the
    replay undoes the same statements."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.statements: list[tuple[str, object]] = []

    def execute(self, sql: str, args=()) -> sqlite3.Cursor:
        cursor = self._db.execute(sql, args)
        if sql.lstrip()[:6].upper() != "SELECT":
            self.statements.append((sql, args))
        return cursor

    def executemany(self, sql: str, rows) -> None:
        """Row by row, each noted once it ran: a row that fails leaves the ones before it
        applied here, and noted, exactly as SQLite's own executemany would leave them."""
        for row in rows:
            self.execute(sql, row)


class RedisVisitStore(VisitStore):
    """``VisitStore`` for a clustered node: the same ``tx``/``rows``/``id_hash``, on this
    machine's copy, in step with every other node's through Redis."""

    def __init__(
        self,
        data_dir: str | Path,
        client: redis.Redis,
        *,
        prefix: str = "parley:visits:",
        file: str = REPLICA_FILE,
    ) -> None:
        super().__init__(data_dir, file=file)
        self._db.executescript(_POSITION)
        self.path = Path(data_dir) / file
        self.redis = client
        self.prefix = prefix
        self._log = prefix + "log"
        self._lock_key = prefix + "lock"
        self._tail = prefix + "tail"
        self._id_key = prefix + "id-key"
        self._snapshot = prefix + "snapshot"
        self._compacting = prefix + "compact-lock"
        self._append = client.register_script(_APPEND)
        self._lock_script = client.register_script(_LOCK)
        self._unlock = client.register_script(_UNLOCK)
        self._store_snapshot = client.register_script(_SNAPSHOT)
        self._depth = 0  # inside a transaction of ours: reads need no catching up
        self._away = False  # Redis did not answer a read: said once in the log
        self._fresh = False  # checked in this turn of the event loop

    @classmethod
    def from_url(cls, data_dir: str | Path, url: str, *, prefix: str = "parley:", **kw):
        return cls(data_dir, sync_client(url), prefix=prefix + "visits:", **kw)

    def close(self) -> None:
        super().close()
        self.redis.close()

    # -- what visits/ calls ------------------------------------------------------------------

    def tx(self) -> contextlib.AbstractContextManager[_Recorder]:
        """One write transaction of the cluster: all of it (here, and in the log for every
        other copy) or nothing; serialised with every writer of every node."""
        return self._write()

    @contextlib.contextmanager
    def _write(self, id_key: str = "") -> Iterator[_Recorder]:
        with self._lock:
            token, tail = self._take_lock()
            published = False
            try:
                self.catch_up(tail)
                self._db.execute("BEGIN IMMEDIATE")
                recorder = _Recorder(self._db)
                self._depth += 1
                try:
                    yield recorder
                    if recorder.statements:
                        self._publish(token, recorder.statements, id_key)
                        published = True  # the append released the lock
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                finally:
                    self._depth -= 1
                self._db.execute("COMMIT")
            finally:
                if not published:
                    with contextlib.suppress(redis.RedisError):
                        self._unlock(keys=[self._lock_key], args=[token])

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read of several statements: caught up once (per turn of the event
        loop, as ``rows``), no cluster lock."""
        with self._lock:
            self._check()
            with super().read() as db:
                self._depth += 1
                try:
                    yield db
                finally:
                    self._depth -= 1

    def copy_from(self, source: VisitStore) -> dict[str, int]:
        """Every row of a one-machine visits database (ids kept) as the log's first entry, with
        that directory's identity-number key (its digests were made under it). Refused
        (``conflict``) when the cluster's log holds anything. Returns the rows per table."""
        copied: dict[str, int] = {}
        with self._write(id_key=source._key.hex()) as db:
            if held := self.position()[0]:
                raise VisitError(
                    "conflict", f"the cluster's visits database holds {held} writes already"
                )
            for table in TABLES:
                columns = [r[1] for r in source.rows(f"PRAGMA table_info({table})")]
                sql = (
                    f"INSERT INTO {table}({', '.join(columns)})"
                    f" VALUES ({', '.join('?' * len(columns))})"
                )
                rows = source.rows(f"SELECT {', '.join(columns)} FROM {table}")
                db.executemany(sql, rows)
                copied[table] = len(rows)
        return copied

    def rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        """A read of this copy after what other nodes wrote is applied: checked once per turn
        of the event loop (a handler's reads, made one after another without an await, see
        one moment of the log and cost one check, not one each). With Redis away, the copy as
        it stands (said once in the log); writes are refused meanwhile."""
        with self._lock:
            self._check()
            return self._db.execute(sql, args).fetchall()

    def _check(self) -> None:
        """Before a read: catch up, unless inside a transaction of ours or already in this
        turn of the event loop (a thread or the command line checks every time)."""
        if self._depth or self._fresh:
            return
        try:
            self.catch_up()
        except VisitError as exc:
            if not self._away:
                log.warning("visits pages read this node's copy: %s", exc.message)
            self._away = True
            return
        self._away = False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._fresh = True
        loop.call_soon(self._stale)

    def _stale(self) -> None:
        self._fresh = False

    def id_hash(self, number: str) -> str:
        """The digest under the cluster's key (Redis's; this node's key file starts it)."""
        try:
            key = self.redis.get(self._id_key)
            if key is None:
                self.redis.set(self._id_key, self._key.hex(), nx=True)
                key = self.redis.get(self._id_key)
            key = bytes.fromhex(key.decode())
        except (redis.RedisError, ValueError, AttributeError) as exc:
            raise _unavailable(f"no identity-number key from Redis ({exc})") from exc
        return hmac.new(key, number.encode(), hashlib.sha256).hexdigest()

    # -- keeping in step ---------------------------------------------------------------------

    def position(self) -> tuple[int, str]:
        """The last log entry this copy applied, and the log's epoch (0, '' before any)."""
        row = self._db.execute("SELECT position, epoch FROM replica WHERE id=1").fetchone()
        return (row[0], row[1]) if row else (0, "")

    def catch_up(self, tail: bytes | None = None) -> int:
        """Apply the log's entries this copy has not; returns how many. One GET when there
        are none (none when the caller read ``tail`` already). Raises ``unavailable`` (Redis
        away) or ``ReplicaLost``."""
        applied = 0
        try:
            if tail is None:
                tail = self.redis.get(self._tail)
            epoch, last = tail.decode().split(" ") if tail else ("", "0")
            last = int(last)
            while True:
                start, mine = self.position()
                if start and (epoch != mine or last < start):
                    raise ReplicaLost(
                        f"this node's {self.path} followed visits log {mine} to entry {start};"
                        f" Redis has {f'log {epoch} to entry {last}' if epoch else 'none'}"
                        " (was Redis emptied or replaced?)"
                    )
                if start >= last:
                    return applied
                entries = self.redis.xrange(
                    self._log, min=f"(0-{start}", max=f"0-{last}", count=APPLY_BATCH
                )
                if not entries or entries[0][0] != f"0-{start + 1}".encode():
                    # trimmed past this copy (or lost): the snapshot, then the log from there
                    if not self._restore(epoch, start):
                        raise ReplicaLost(f"Redis's visits log lacks entries {start + 1}-{last}")
                    applied += self.position()[0] - start
                    continue
                applied += self._apply(entries, epoch)
        except redis.RedisError as exc:
            raise _unavailable(f"Redis does not answer ({exc})") from exc

    def _apply(self, entries: list, epoch: str) -> int:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            position, _ = self.position()  # another process on this copy may have gone on
            done = 0
            for entry_id, fields in entries:
                n = int(entry_id.split(b"-")[1])
                if n <= position:
                    continue
                if n != position + 1:
                    raise ReplicaLost(f"visits log entry {n} follows {position}")
                for sql, args in msgspec.msgpack.decode(fields[b"tx"]):
                    self._db.execute(sql, args)
                position, done = n, done + 1
            self._db.execute(
                "INSERT OR REPLACE INTO replica(id, position, epoch) VALUES (1, ?, ?)",
                (position, epoch),
            )
        except BaseException as exc:
            self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                log.error("this node's visits copy cannot apply the log: %s", exc)
                raise _unavailable("this node's copy cannot apply the cluster's log") from exc
            raise
        self._db.execute("COMMIT")
        return done

    def _restore(self, epoch: str, start: int) -> bool:
        """Replace this copy's rows with the cluster's snapshot, if it is of this log and ahead
        of the copy: one local transaction, so a reader (or another process on this file) sees
        the copy before or after, never between. False when no snapshot fits."""
        position, snap_epoch, data = self.redis.hmget(self._snapshot, "position", "epoch", "data")
        if data is None or snap_epoch.decode() != epoch or int(position) <= start:
            return False
        self._db.execute("ATTACH ':memory:' AS snap")
        try:
            try:
                self._db.deserialize(zlib.decompress(data), name="snap")
                self._db.execute("BEGIN IMMEDIATE")
                if self.position()[0] >= int(position):
                    self._db.execute("ROLLBACK")  # another process on this file went on
                    return True
                for table in [*reversed(TABLES), "replica"]:
                    self._db.execute(f"DELETE FROM main.{table}")
                for table in [*TABLES, "replica"]:
                    columns = ", ".join(
                        r[1] for r in self._db.execute(f"PRAGMA main.table_info({table})")
                    )
                    self._db.execute(
                        f"INSERT INTO main.{table}({columns}) SELECT {columns} FROM snap.{table}"
                    )
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error | zlib.error):
                    log.error("the cluster's visits snapshot cannot be loaded: %s", exc)
                    raise _unavailable("the cluster's visits snapshot cannot be loaded") from exc
                raise
            self._db.execute("COMMIT")
        finally:
            self._db.execute("DETACH snap")
        log.info("visits copy loaded from the cluster's snapshot at entry %s", int(position))
        return True

    def compact(self, every: int = SNAPSHOT_EVERY, keep: int = KEEP) -> tuple[int, int] | None:
        """When the log holds ``every`` entries past the last snapshot: store this copy as it
        stands as the new snapshot, and trim the log to the ``keep`` entries before it. For a
        thread: its own connections to the file, never this store's, so pages and the clock
        go on meanwhile. Returns (snapshot position, entries trimmed), or None (not due, not of
        this log, another node compacting, Redis away)."""
        source = sqlite3.connect(self.path, timeout=30)
        try:
            row = source.execute("SELECT position, epoch FROM replica WHERE id=1").fetchone()
            if row is None:
                return None
            held, held_epoch = self.redis.hmget(self._snapshot, "position", "epoch")
            since = int(held) if held and held_epoch.decode() == row[1] else 0
            if row[0] - since < every:
                return None
            token = secrets.token_hex(12)
            if not self.redis.set(self._compacting, token, nx=True, px=COMPACT_LOCK_MS):
                return None
            try:
                with contextlib.closing(sqlite3.connect(":memory:")) as image:
                    source.backup(image)  # one read transaction: the file at one position
                    position, epoch = image.execute(
                        "SELECT position, epoch FROM replica WHERE id=1"
                    ).fetchone()
                    data = bytearray(image.serialize())
                # the file's header says WAL (bytes 18-19 = 2), which an image deserialized in
                # memory cannot open; 1 = a rollback journal (SQLite's file format)
                data[18:20] = b"\x01\x01"
                data = zlib.compress(data, 6)
                stored, trimmed = self._store_snapshot(
                    keys=[self._snapshot, self._tail, self._log],
                    args=[position, epoch, data, keep],
                )
            finally:
                self._unlock(keys=[self._compacting], args=[token])
        except redis.RedisError as exc:
            log.warning("visits log not compacted, Redis away: %s", exc)
            return None
        finally:
            source.close()
        if not stored:
            return None
        log.info(
            "visits snapshot stored at entry %s (%d bytes); %s log entries trimmed",
            position,
            len(data),
            trimmed,
        )
        return int(position), int(trimmed)

    def _take_lock(self) -> tuple[str, bytes]:
        """The cluster's write lock, and the log's tail as it stands (one round trip)."""
        token = secrets.token_hex(12)
        deadline = time.monotonic() + LOCK_WAIT_S
        pause = 0.001
        try:
            while not (
                got := self._lock_script(keys=[self._lock_key, self._tail], args=[token, LOCK_MS])
            ):
                if time.monotonic() > deadline:
                    raise _unavailable("another node's write did not finish")
                time.sleep(pause)  # a transaction elsewhere: milliseconds
                pause = min(pause * 2, 0.02)
        except redis.RedisError as exc:
            raise _unavailable(f"Redis does not answer ({exc})") from exc
        return token, got[1]

    def _publish(self, token: str, statements: list, id_key: str) -> None:
        """Append the transaction's statements after the entry this copy applied last, and
        note the new position in the same local transaction (committed by the caller)."""
        position, _ = self.position()
        entry = msgspec.msgpack.encode(statements)
        try:
            got = self._append(
                keys=[self._log, self._lock_key, self._tail, self._id_key],
                args=[position, token, entry, secrets.token_hex(8), id_key],
            )
        except redis.RedisError as exc:
            raise _unavailable(f"Redis did not take the write ({exc})") from exc
        if got == -2:
            raise _unavailable("the write lock expired before the write was stored")
        if got == -1:
            raise _unavailable("another node wrote meanwhile")
        n, epoch = int(got[0]), got[1].decode()
        self._db.execute(
            "INSERT OR REPLACE INTO replica(id, position, epoch) VALUES (1, ?, ?)", (n, epoch)
        )


async def compact_forever(store: RedisVisitStore, every_s: float = COMPACT_CHECK_S) -> None:
    """Each node, every few minutes: ``compact`` in a thread (a no-op unless the log is due and
    no other node is at it). Runs until cancelled."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(store.compact)
        except Exception:  # noqa: BLE001 - the next round tries again
            log.exception("visits log compaction failed")
