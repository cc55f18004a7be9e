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

import logging
import threading

import msgspec
import redis

from rooms.errors import CommandError
from rooms.events import GENESIS, Event, EventDraft, seal

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
_RETRIES = 1000  # appends without ``expected_seq`` retry on a moved tail at most this often


class RedisLedgerStore:
    """The ledger on Redis Streams; safe to share between threads (redis-py's pool)."""

    def __init__(self, client: redis.Redis, *, prefix: str = "parley:") -> None:
        self._redis = client
        self.prefix = prefix
        self._index = f"{prefix}ledger-sessions"
        self._append = client.register_script(_APPEND)
        # seq and hash of each session's last event as this store last saw it: saves reading
        # the tail before each append; the script refuses a stale one and says the real tail
        self._tails: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        self.fsync_always = self._check_durability()

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "parley:") -> RedisLedgerStore:
        return cls(redis.Redis.from_url(url, health_check_interval=30), prefix=prefix)

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
        return [m.decode() for m in self._redis.zrange(self._index, 0, -1)]

    async def durable(self) -> None:
        """Nothing to wait for: Redis answered each append after its fsync (``fsync_always``)."""

    def wait_durable(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        self._redis.close()

    # -- internals ------------------------------------------------------------------------------
    def _read_tail(self, session_id: str) -> tuple[int, str]:
        last = self._redis.xrevrange(self._key(session_id), max="+", min="-", count=1)
        if not last:
            return (0, GENESIS)
        entry_id, fields = last[0]
        return (_seq_of(entry_id), fields[b"hash"].decode())


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
    raw = fields.get(b"data", b"{}")
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        data = {"__undecodable__": raw.decode(errors="replace")}
    if not isinstance(data, dict):
        data = {"__not_an_object__": data}

    def text(name: bytes) -> str:
        return fields.get(name, b"").decode(errors="replace")

    try:
        ts = float(text(b"ts"))
    except ValueError:
        ts = float("nan")  # an edited entry: verify_chain reports the hash mismatch
    return Event(
        session_id,
        _seq_of(entry_id),
        ts,
        text(b"actor"),
        text(b"type"),
        data,
        text(b"prev"),
        text(b"hash"),
    )
