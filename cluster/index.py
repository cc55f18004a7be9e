"""The session index: what the staff console lists, for every session of the cluster, in Redis
(docs/scaling.md, "Placement" and "The console across nodes").

A node holds only the sessions it serves, but a mediator's console lists all of theirs whatever
node serves them. So the node that serves a session writes a short summary of it (title, case,
who created it, when, ended or not, how many wait in the waiting room, the agreement's status,
which node serves it) on creation, on adoption and whenever that summary changes; every node's
console reads the summaries. Nothing crosses nodes as a message (docs/decisions.md, 18: views
that span sessions poll stored state).

Keys: ``<prefix>index:<session>`` = the summary (JSON); ``<prefix>index-by:<created_by>`` and
``<prefix>index-all`` = sorted sets of session ids by creation time (a staff member's sessions;
every session, for an administrator). The summaries are kept after a session ends, as the
ledger keeps the session: an ended case stays in its mediator's list.

Writes are cheap: the service's listener computes the summary (one pass over the participants)
and marks the session dirty only when it differs from the last one written; one writer task
sends what is dirty, the latest summary of each, in one pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import msgspec
import redis.asyncio as aioredis

log = logging.getLogger("parley.cluster")

# a session id as the service makes them (``s-`` and hex), or anything of that shape: never
# an arbitrary string as a Redis key
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Summary(msgspec.Struct, frozen=True):
    """One session as the console's list shows it."""

    id: str
    kind: str
    title: str
    case_number: str | None
    created_by: str
    created_at: float
    ended: bool
    waiting: int  # connected participants in the waiting room
    agreement: str | None  # the agreement's status (rooms' agreement), None without one
    node: str  # the node that served it when this was written


def summary(state, node: str) -> Summary:
    return Summary(
        id=state.id,
        kind=state.kind,
        title=state.title,
        case_number=state.case_number,
        created_by=state.created_by,
        created_at=float(state.created_at or 0.0),
        ended=bool(state.ended),
        waiting=state.waiting_count(),
        agreement=(state.agreement or {}).get("status"),
        node=node,
    )


class SessionIndex:
    """One node's side of the index: writes the summaries of the sessions it serves, reads
    everyone's."""

    def __init__(self, client: aioredis.Redis, node_id: str, *, prefix: str = "parley:") -> None:
        self.redis = client
        self.node_id = node_id
        self.prefix = prefix
        self._written: dict[str, bytes] = {}  # session -> the summary last written from here
        self._dirty: dict[str, Summary] = {}  # session -> the summary to write
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None
        self._writing = False
        self._stop = False

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}index:{session_id}"

    def _by(self, created_by: str) -> str:
        return f"{self.prefix}index-by:{created_by}"

    @property
    def _all(self) -> str:
        return f"{self.prefix}index-all"

    # -- writing (the node serving the session) -------------------------------------------------
    def note(self, state) -> None:
        """The session changed here: write its summary if it differs from the last one."""
        s = summary(state, self.node_id)
        if self._written.get(state.id) == msgspec.json.encode(s):
            self._dirty.pop(state.id, None)
            return
        self._dirty[state.id] = s
        self._idle.clear()
        self._wake.set()

    def forget(self, session_id: str) -> None:
        """No longer served here (dropped: another node writes it from now on)."""
        self._written.pop(session_id, None)
        self._dirty.pop(session_id, None)
        self._settle()

    def _settle(self) -> None:
        if not self._dirty and not self._writing:
            self._idle.set()

    async def flush(self) -> None:
        """Wait until every summary noted so far is written (or its write failed)."""
        await self._idle.wait()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Write what is still dirty, then stop."""
        self._stop = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            if not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._dirty = self._dirty, {}
            if batch:
                self._writing = True
                try:
                    await self._write(list(batch.values()))
                except (aioredis.RedisError, OSError) as exc:
                    log.warning("session index not written (Redis unreachable): %s", exc)
                    for sid, s in batch.items():  # try again with the next change or round
                        self._dirty.setdefault(sid, s)
                    if self._stop:
                        self._dirty.clear()
                        self._writing = False
                        self._settle()
                        return
                    await asyncio.sleep(0.5)
                    self._wake.set()
                    continue
                finally:
                    self._writing = False
            self._settle()
            if self._stop and not self._dirty:
                return

    async def _write(self, batch: list[Summary]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            encoded = []
            for s in batch:
                data = msgspec.json.encode(s)
                encoded.append((s.id, data))
                pipe.set(self._key(s.id), data)
                pipe.zadd(self._by(s.created_by), {s.id: s.created_at})
                pipe.zadd(self._all, {s.id: s.created_at})
            await pipe.execute()
        for sid, data in encoded:
            self._written[sid] = data

    # -- reading (any node's console) -----------------------------------------------------------
    async def get(self, session_id: str) -> Summary | None:
        if not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id):
            return None
        return _decode(await self.redis.get(self._key(session_id)))

    async def sessions(self, created_by: str | None) -> list[Summary]:
        """The sessions ``created_by`` made (every session for None), newest first."""
        key = self._all if created_by is None else self._by(created_by)
        ids = await self.redis.zrevrange(key, 0, -1)
        if not ids:
            return []
        raw = await self.redis.mget([self._key(i.decode()) for i in ids])
        return [s for s in map(_decode, raw) if s is not None]


def _decode(value: bytes | None) -> Summary | None:
    if value is None:
        return None
    try:
        return msgspec.json.decode(value, type=Summary)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # a damaged entry is left out of the list, never a crash
