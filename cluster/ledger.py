"""``RedisLedgerStore``: the ledger on Redis Streams, for several nodes sharing one Redis.

One stream per session (``<prefix>ledger:<session>``), one entry per event, the entry id
``<seq>-0`` so the stream's own order is the chain's. The hash chain is the same as in
``SqliteLedgerStore`` (``rooms.events.seal``): seq, prev and hash are computed here, in
Python, because Redis's Lua has no SHA-256. The write is one Lua script that checks the
stream's tail (seq *and* hash) against what the events were chained onto and only then adds
them, so of two writers chaining onto the same tail exactly one gets in; the other is told the
real tail (``CommandError("conflict")`` when it had an ``expected_seq``, a retry on the new
tail when it had none). The script is declared with a ``#!lua`` shebang so Redis checks memory
before it runs: a batch is never half written because ``maxmemory`` was hit between two
``XADD`` s.

Durability comes from Redis: with ``appendonly yes`` and ``appendfsync always`` Redis writes and
fsyncs the append-only file before it sends any reply, for all the clients of one event-loop
turn at once (its own group commit), so ``append`` returning means the events are on disk.
The store checks that setting when it connects and logs a warning otherwise
(``fsync_always``).

Needs a single Redis primary (or a Sentinel-managed one), not Redis Cluster: the script touches
the session's stream and the session index, which Redis Cluster would put in different slots.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import msgspec
import redis

from rooms.errors import CommandError
from rooms.events import GENESIS, Event, EventDraft, seal
from rooms.ledger import row_event

log = logging.getLogger("parley.cluster.ledger")

# KEYS: the session's stream, the session index (sorted set, score = first event's ts).
# ARGV: expected tail seq, expected tail hash, session id, first ts, n, then 6 fields per event.
_APPEND = """#!lua
local tail = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local seq, prev = 0, 'GENESIS'
if #tail > 0 then
  seq = tonumber(string.match(tail[1][1], '^(%d+)-'))
  prev = ''
  local fields = tail[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'hash' then prev = fields[i + 1] end
  end
end
if seq ~= tonumber(ARGV[1]) or prev ~= ARGV[2] then
  return {'conflict', string.format('%d', seq), prev}
end
local n = tonumber(ARGV[5])
local at = 6
for i = 1, n do
  redis.call('XADD', KEYS[1], string.format('%d-0', seq + i),
    'ts', ARGV[at], 'actor', ARGV[at + 1], 'type', ARGV[at + 2],
    'data', ARGV[at + 3], 'prev', ARGV[at + 4], 'hash', ARGV[at + 5])
  at = at + 6
end
if seq == 0 then
  redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[3])
end
return {'ok', string.format('%d', seq + n), ''}
""".replace("'GENESIS'", repr(GENESIS))

_PAGE = 1000  # entries per XRANGE round trip when reading a long session
_READ_WAIT = 10.0  # seconds a read waits for this store's queued appends to be stored
_CLOSE_GRACE = 10.0  # seconds ``close`` keeps trying to store queued appends
_RETRIES = 1000  # appends without ``expected_seq`` retry on a moved tail at most this often


class _Pending(NamedTuple):
    ticket: int
    session_id: str
    args: list
    last_seq: int
    last_hash: str


class RedisLedgerStore:
    """The ledger on Redis Streams; safe to share between threads (redis-py's pool).

    ``sync="full"`` (default): ``append`` returns once Redis has stored (and fsync'd) the
    events; a second writer's conflict is raised by ``append`` itself.

    ``sync="group"`` (the server's mode, like ``SqliteLedgerStore``'s): ``append`` chains the
    events onto this store's view of the tail, queues them and returns; a writer thread sends
    everything queued in one pipelined round trip, and ``await durable()`` returns once every
    append made before it is stored — so the event loop never waits on Redis's fsync, only the
    answers do. An append Redis refuses then (another node appended: a split brain) raises
    from every barrier that covers it until ``forgive(session)``, and ``on_conflict(session)``
    is called from the writer thread: the session's state here is no longer the ledger's and
    must be dropped. ``expected_seq`` is checked at once, against this store's view or, when
    that view differs from the caller's, against the tail read again from Redis.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "parley:",
        sync: str = "full",
        on_conflict: Callable[[str], None] | None = None,
    ) -> None:
        if sync not in ("full", "group"):
            raise ValueError("sync is 'full' or 'group'")
        self._redis = client
        self.prefix = prefix
        self.sync = sync
        self.on_conflict = on_conflict
        self._index = f"{prefix}ledger-sessions"
        self._append = client.register_script(_APPEND)
        # seq and hash of each session's last event as this store last saw it: saves reading
        # the tail before each append; the script refuses a stale one and says the real tail
        self._tails: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        self.fsync_always = self._check_durability()
        # group mode: tickets count queued appends; the writer stores them in order
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._issued = 0
        self._stored = 0
        self._failed: dict[str, int] = {}  # session -> first ticket Redis refused
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._closing = False
        self.round_trips = 0  # pipelines sent by the writer (fewer than appends under load)
        self._writer: threading.Thread | None = None
        if sync == "group":
            self._writer = threading.Thread(
                target=self._write_loop, name="ledger-redis", daemon=True
            )
            self._writer.start()

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "parley:", **kw) -> RedisLedgerStore:
        return cls(redis.Redis.from_url(url, health_check_interval=30), prefix=prefix, **kw)

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}ledger:{session_id}"

    def _check_durability(self) -> bool:
        """Is every write fsync'd before Redis answers? Warn when not (or when unknown)."""
        try:
            conf = self._redis.config_get("append*")
        except redis.ResponseError:  # CONFIG renamed or disabled (managed Redis)
            log.warning("cannot read Redis's appendfsync: make sure it is 'always'")
            return False
        ok = conf.get("appendonly") == "yes" and conf.get("appendfsync") == "always"
        if not ok:
            log.warning(
                "Redis is not set to appendonly yes + appendfsync always: an acknowledged "
                "event may be lost if Redis's machine fails (docs/operations.md)",
                extra={
                    "appendonly": conf.get("appendonly"),
                    "appendfsync": conf.get("appendfsync"),
                },
            )
        return ok

    # -- the LedgerStore interface --------------------------------------------------------------
    def append(
        self, session_id: str, events: list[EventDraft], *, expected_seq: int | None = None
    ) -> list[Event]:
        if not events:
            return []
        if self._writer is not None:
            return self._append_queued(session_id, events, expected_seq)
        for _ in range(_RETRIES):
            with self._lock:
                tail = self._tails.get(session_id)
            if tail is None or (expected_seq is not None and tail[0] != expected_seq):
                tail = self._read_tail(session_id)
            if expected_seq is not None and tail[0] != expected_seq:
                raise _moved_on(session_id, tail[0], expected_seq)
            sealed, args = _chain(session_id, tail, events)
            status, seq, head = self._append(keys=[self._key(session_id), self._index], args=args)
            if status == b"ok":
                with self._lock:
                    self._tails[session_id] = (sealed[-1].seq, sealed[-1].hash)
                return sealed
            actual = (int(seq), head.decode())
            with self._lock:
                self._tails[session_id] = actual
            if expected_seq is not None and actual[0] != expected_seq:
                raise _moved_on(session_id, actual[0], expected_seq)
            # no expectation (or our cached hash was stale): chain onto the real tail again
        raise CommandError("conflict", f"session {session_id} is written too busily to append")

    def read(self, session_id: str, after_seq: int = 0) -> list[Event]:
        self._wait_stored()  # group mode: what this store appended is in Redis first
        key = self._key(session_id)
        start = f"{max(int(after_seq), 0) + 1}-0"
        out: list[Event] = []
        while True:
            page = self._redis.xrange(key, min=start, max="+", count=_PAGE)
            out.extend(_entry_event(session_id, entry_id, fields) for entry_id, fields in page)
            if len(page) < _PAGE:
                break
            start = f"({page[-1][0].decode()}"
        if out and after_seq <= 0:
            with self._lock:
                self._tails[session_id] = (out[-1].seq, out[-1].hash)
        return out

    def session_ids(self) -> list[str]:
        # score = the first event's ts, ties by name: the same order as SqliteLedgerStore's
        self._wait_stored()
        return [m.decode() for m in self._redis.zrange(self._index, 0, -1)]

    async def durable(self) -> None:
        """Return once every append made before this call is stored (at once in ``full``:
        Redis answered each append after its fsync). Raises ``CommandError("conflict")``
        when one of them was refused."""
        if self._writer is None:
            return
        loop = asyncio.get_running_loop()
        with self._cond:
            ticket = self._issued
            if self._stored >= ticket:
                self._raise_failed(ticket)
                return
            fut = loop.create_future()
            self._waiters.append((ticket, loop, fut))
        await fut

    def wait_durable(self, timeout: float | None = None) -> bool:
        """``durable`` for threads: block until every earlier append is stored."""
        if self._writer is None:
            return True
        with self._cond:
            ticket = self._issued
            done = self._cond.wait_for(lambda: self._stored >= ticket, timeout)
            if done:
                self._raise_failed(ticket)
            return done

    def _wait_stored(self, timeout: float = _READ_WAIT) -> None:
        """Before a read: wait until what this store queued is in Redis (a read must see it).
        Raises ``redis.ConnectionError`` when that takes longer than ``timeout`` (Redis is
        unreachable), as the read itself would."""
        if self._writer is None:
            return
        with self._cond:
            ticket = self._issued
            if not self._cond.wait_for(lambda: self._stored >= ticket, timeout):
                raise redis.ConnectionError("queued appends not stored yet: Redis unreachable")

    def forgive(self, session_id: str) -> None:
        """The refused session was dropped: barriers no longer fail because of it."""
        with self._cond:
            self._failed.pop(session_id, None)

    def close(self) -> None:
        """Close; in ``group`` mode the queued appends are stored first."""
        if self._writer is not None:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._writer.join()
            self._writer = None
        self._redis.close()

    # -- group mode -----------------------------------------------------------------------------
    def _append_queued(
        self, session_id: str, events: list[EventDraft], expected_seq: int | None
    ) -> list[Event]:
        with self._lock:
            tail = self._tails.get(session_id)
        # none known, or not the caller's: read the real tail (as the direct path does; a
        # session another node appended to since this one last wrote it, as after its end)
        if tail is None or (expected_seq is not None and tail[0] != expected_seq):
            self._wait_stored()
            tail = self._read_tail(session_id)
        if expected_seq is not None and tail[0] != expected_seq:
            raise _moved_on(session_id, tail[0], expected_seq)
        sealed, args = _chain(session_id, tail, events)  # TypeError before anything is queued
        with self._cond:
            self._issued += 1
            self._queue.append(
                _Pending(self._issued, session_id, args, sealed[-1].seq, sealed[-1].hash)
            )
            with self._lock:
                self._tails[session_id] = (sealed[-1].seq, sealed[-1].hash)
            self._cond.notify_all()
        return sealed

    def _raise_failed(self, ticket: int) -> None:
        failed = [s for s, first in self._failed.items() if first <= ticket]
        if failed:
            raise CommandError(
                "conflict", f"the ledger refused appends to {', '.join(sorted(failed))[:200]}"
            )

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue and self._closing:
                    return
                batch, self._queue = self._queue, []
            refused = self._store_batch(batch)
            with self._cond:
                for pending in refused:
                    self._failed.setdefault(pending.session_id, pending.ticket)
                    with self._lock:
                        self._tails.pop(pending.session_id, None)
                self._stored = batch[-1].ticket
                self.round_trips += 1
                self._cond.notify_all()
                due = [w for w in self._waiters if w[0] <= self._stored]
                self._waiters = [w for w in self._waiters if w[0] > self._stored]
                outcome = {}
                for ticket, _, _ in due:
                    try:
                        self._raise_failed(ticket)
                        outcome[ticket] = None
                    except CommandError as exc:
                        outcome[ticket] = exc
            for ticket, loop, fut in due:
                loop.call_soon_threadsafe(_settle, fut, outcome[ticket])
            for session_id in sorted({p.session_id for p in refused}):
                log.error("the ledger refused queued appends", extra={"session": session_id})
                if self.on_conflict is not None:
                    try:
                        self.on_conflict(session_id)
                    except Exception:  # noqa: BLE001 - the writer must keep running
                        log.exception("on_conflict failed")

    def _store_batch(self, batch: list[_Pending]) -> list[_Pending]:
        """Send ``batch`` in one pipeline, in order; retry while Redis cannot be reached.
        Returns the appends Redis refused (a refused one whose events are there already,
        because an earlier try got through before the connection broke, counts as stored)."""
        delay, started = 0.05, time.monotonic()
        while True:
            if self._closing and time.monotonic() - started > _CLOSE_GRACE:
                log.error("closing with Redis unreachable: %d appends not stored", len(batch))
                return batch  # never acknowledged: their barriers fail
            try:
                pipe = self._redis.pipeline(transaction=False)
                for p in batch:
                    self._append(
                        keys=[self._key(p.session_id), self._index], args=p.args, client=pipe
                    )
                replies = pipe.execute(raise_on_error=False)
                refused = []
                for p, reply in zip(batch, replies, strict=True):
                    if isinstance(reply, Exception):  # out of memory, a script error
                        log.error("Redis refused an append: %s", reply)
                        ok = False
                    else:
                        ok = reply[0] == b"ok"
                    if not ok and not self._already_there(p):
                        refused.append(p)
                return refused
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("Redis unreachable, appends wait: %s", exc)
            except Exception:  # noqa: BLE001 - the writer must not die with appends queued
                log.exception("storing queued appends failed; retrying")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _already_there(self, p: _Pending) -> bool:
        entry = self._redis.xrange(self._key(p.session_id), f"{p.last_seq}-0", f"{p.last_seq}-0")
        return bool(entry) and entry[0][1].get(b"hash", b"").decode() == p.last_hash

    # -- internals ------------------------------------------------------------------------------
    def _read_tail(self, session_id: str) -> tuple[int, str]:
        last = self._redis.xrevrange(self._key(session_id), max="+", min="-", count=1)
        if not last:
            return (0, GENESIS)
        entry_id, fields = last[0]
        return (_seq_of(entry_id), fields[b"hash"].decode())


def _settle(fut: asyncio.Future, error: Exception | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)


def _moved_on(session_id: str, seq: int, expected: int) -> CommandError:
    return CommandError("conflict", f"session {session_id} moved on (seq {seq}, not {expected})")


def _chain(
    session_id: str, tail: tuple[int, str], drafts: list[EventDraft]
) -> tuple[list[Event], list]:
    """Seal ``drafts`` onto ``tail`` and the script's arguments for them. Encoding fails
    (TypeError) before anything is sent, for data JSON cannot carry."""
    seq, prev = tail
    sealed: list[Event] = []
    fields: list = []
    for draft in drafts:
        seq += 1
        event = seal(session_id, seq, prev, draft)
        fields += [
            repr(event.ts),
            event.actor,
            event.type,
            msgspec.json.encode(event.data),
            event.prev,
            event.hash,
        ]
        sealed.append(event)
        prev = event.hash
    head = [tail[0], tail[1], session_id, repr(sealed[0].ts), len(sealed)]
    return sealed, head + fields


def _seq_of(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


def _entry_event(session_id: str, entry_id: bytes, fields: dict[bytes, bytes]) -> Event:
    def text(name: bytes, default: bytes = b"") -> str:
        return fields.get(name, default).decode(errors="replace")

    try:
        ts = float(text(b"ts"))
    except ValueError:
        ts = float("nan")  # an edited entry: verify_chain reports the hash mismatch
    # the data column is decoded as SqliteLedgerStore's is (undecodable / non-object markers)
    return row_event(
        (
            session_id,
            _seq_of(entry_id),
            ts,
            text(b"actor"),
            text(b"type"),
            text(b"data", b"{}"),
            text(b"prev"),
            text(b"hash"),
        )
    )
