"""The node registry and session leases, on Redis (redis-py asyncio).

Each node **heartbeats** its load (sessions, participants, forwarded streams, CPU) into
``<prefix>node:<id>`` with a TTL (``SET PX``) and keeps its id in ``<prefix>nodes``: a node
that stops heartbeating disappears from the live list when its key expires, while its id stays
in the set so that its sessions can be found and taken over (then the id is dropped).

A **session lease** is ``<prefix>lease:<session>`` = the owning node's id, set with
``SET NX PX`` (only if nobody holds it) and renewed by its holder (a Lua compare-and-expire: a
node renews only what it still holds). Exactly one node holds a session's lease at a time; a
node that stops renewing loses it after the TTL and another may take it. Each node also lists
the sessions it holds in ``<prefix>owned:<id>`` (no TTL), which is how a surviving node finds
a dead node's sessions once their leases have expired.

A new session placed on a node (``reserve``) is counted in ``<prefix>pending:<id>`` (a sorted
set: session -> Redis time of the placement) until that node's heartbeat counts it itself: the
heartbeat removes the sessions it holds, in the same transaction as the load it writes, and an
entry older than one TTL no longer counts (a session given to a node that died before taking it).
Every placer on every node reads and adds to it under ``WATCH``, so a burst of creations
anywhere spreads (docs/scaling.md, "Placement").

The lease says who should serve a session's media; it is not what keeps the ledger linear. A
node that lost its lease without noticing (a long pause) can still try to append: the ledger's
``expected_seq`` check refuses it once the new owner has appended (cluster/ledger.py), and the
node drops the session when its renewal comes back lost (``on_lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import msgspec
import redis.asyncio as aioredis

log = logging.getLogger("parley.cluster")

# KEYS: lease, my owned set. ARGV: node id, ttl ms, session id. 1 = held by me now.
_ACQUIRE = """#!lua
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('SADD', KEYS[2], ARGV[3])
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('SADD', KEYS[2], ARGV[3])
  return 1
end
return 0
"""

# KEYS: the leases. ARGV: node id, ttl ms. Returns 1/0 per lease: still mine (and extended).
_RENEW = """#!lua
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

# KEYS: lease, my owned set. ARGV: node id, session id, hand over (1: stay listed as mine so
# that another node adopts it, 0: forget it). Deletes the lease only if it is mine.
_RELEASE = """#!lua
if ARGV[3] ~= '1' then redis.call('SREM', KEYS[2], ARGV[2]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: lease, my owned set, the dead node's owned set. ARGV: my id, ttl ms, session id.
# Take a session a dead node held: only once its lease is gone (expired) or already mine.
_ADOPT = """#!lua
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) or redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('SMOVE', KEYS[3], KEYS[2], ARGV[3])
  redis.call('SADD', KEYS[2], ARGV[3])
  return 1
end
return 0
"""

# KEYS: lease, the receiving node's owned set. ARGV: its id, ttl ms, session id. Give a session
# nobody holds to another node (a new session placed there): it finds it on its list.
_GIVE = """#!lua
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('SADD', KEYS[2], ARGV[3])
  return 1
end
return 0
"""

# KEYS: the role's key. ARGV: node id, ttl ms. 1 = this node holds the role now (extended).
_HOLD = """#!lua
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

Count = Annotated[int, msgspec.Meta(ge=0, le=10**9)]
RESERVE_TRIES = 20  # placements racing on one pending set: each try loses to one that won


class NodeLoad(msgspec.Struct, frozen=True):
    """What a node reports about itself with each heartbeat."""

    sessions: Count = 0
    participants: Count = 0
    streams: Count = 0  # forwarded media streams: the cost that grows with room size
    cpu: Annotated[float, msgspec.Meta(ge=0, le=4096)] = 0.0  # of one core, since the last beat


class NodeInfo(msgspec.Struct, frozen=True):
    """A node as the registry lists it."""

    id: str
    url: str  # its public base URL (where a participant is redirected to)
    load: NodeLoad
    draining: bool = False
    seen: float = 0.0  # the node's wall clock at its last heartbeat


@dataclass
class LeaseSettings:
    """How long a heartbeat and a lease live without renewal, and how often they are renewed.
    Takeover of a dead node's sessions takes about ``ttl_ms`` plus one ``interval``."""

    ttl_ms: int = 2000
    interval: float = 0.5

    def __post_init__(self) -> None:
        if self.ttl_ms < 50 or not 0 < self.interval * 1000 < self.ttl_ms / 2:
            raise ValueError("lease ttl_ms >= 50 and 0 < interval < ttl/2")


class Registry:
    """One node's view of the registry: its own heartbeat and leases, everyone's load."""

    def __init__(
        self,
        client: aioredis.Redis,
        node_id: str,
        url: str,
        *,
        prefix: str = "parley:",
        settings: LeaseSettings | None = None,
    ) -> None:
        if not node_id or len(node_id) > 64 or any(c in node_id for c in " \n:"):
            raise ValueError("node id: 1-64 characters, no spaces or colons")
        self.redis = client
        self.node_id = node_id
        self.url = url
        self.prefix = prefix
        self.settings = settings or LeaseSettings()
        self.draining = False
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._adopt = client.register_script(_ADOPT)
        self._give = client.register_script(_GIVE)
        self._hold = client.register_script(_HOLD)

    @classmethod
    def from_url(cls, url: str, node_id: str, public_url: str, **kw) -> Registry:
        return cls(aioredis.Redis.from_url(url), node_id, public_url, **kw)

    # -- keys -----------------------------------------------------------------------------------
    def _node_key(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    def _lease_key(self, session_id: str) -> str:
        return f"{self.prefix}lease:{session_id}"

    def _owned_key(self, node_id: str) -> str:
        return f"{self.prefix}owned:{node_id}"

    def _pending_key(self, node_id: str) -> str:
        return f"{self.prefix}pending:{node_id}"

    @property
    def _nodes_key(self) -> str:
        return f"{self.prefix}nodes"

    # -- heartbeat ------------------------------------------------------------------------------
    async def heartbeat(self, load: NodeLoad, held: list[str] | None = None) -> None:
        """Write this node's load; ``held``: the sessions it holds (and counts in ``load``),
        no longer pending here for the placers."""
        info = NodeInfo(self.node_id, self.url, load, self.draining, time.time())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(
                self._node_key(self.node_id), msgspec.json.encode(info), px=self.settings.ttl_ms
            )
            pipe.sadd(self._nodes_key, self.node_id)
            if held:
                pipe.zrem(self._pending_key(self.node_id), *held)
            await pipe.execute()

    async def nodes(self) -> tuple[list[NodeInfo], list[str]]:
        """The live nodes (heartbeat not expired) and the ids of the dead ones."""
        ids = sorted(m.decode() for m in await self.redis.smembers(self._nodes_key))
        if not ids:
            return [], []
        return _split(ids, await self.redis.mget([self._node_key(i) for i in ids]))

    async def reserve(
        self,
        session_id: str,
        choose: Callable[[list[NodeInfo], dict[str, int]], NodeInfo | None],
    ) -> NodeInfo | None:
        """Pick the node for a new session with ``choose(live nodes, pending)`` and count it as
        pending there, atomically against every other placer: the pending sets are read under
        ``WATCH``, and a placement made meanwhile anywhere (or a heartbeat) makes this one look
        again. None when ``choose`` finds no node."""
        window = self.settings.ttl_ms
        chosen = None
        for _ in range(RESERVE_TRIES):
            ids = sorted(m.decode() for m in await self.redis.smembers(self._nodes_key))
            if not ids:
                return None
            keys = [self._pending_key(i) for i in ids]
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(*keys)
                    live, _ = _split(ids, await pipe.mget([self._node_key(i) for i in ids]))
                    seconds, micros = await pipe.time()
                    now = seconds * 1000 + micros // 1000
                    pending = {}
                    for node_id, key in zip(ids, keys, strict=True):
                        if count := await pipe.zcount(key, now - window, "+inf"):
                            pending[node_id] = count
                    chosen = choose(live, pending)
                    if chosen is None:
                        return None
                    key = self._pending_key(chosen.id)
                    pipe.multi()
                    pipe.zremrangebyscore(key, "-inf", now - window)  # aged: not taken
                    pipe.zadd(key, {session_id: now})
                    pipe.pexpire(key, 2 * window)
                    await pipe.execute()
                    return chosen
                except aioredis.WatchError:
                    continue  # another placement or a heartbeat came between: look again
        log.warning("placement counted nowhere after %s tries", RESERVE_TRIES)
        return chosen

    async def pending(self, node_id: str) -> int:
        """How many sessions placed on ``node_id`` its heartbeat does not count yet."""
        seconds, micros = await self.redis.time()
        now = seconds * 1000 + micros // 1000
        return await self.redis.zcount(
            self._pending_key(node_id), now - self.settings.ttl_ms, "+inf"
        )

    async def forget(self, node_id: str) -> bool:
        """Drop a dead node's id once it holds no sessions (its owned set is empty)."""
        if await self.redis.exists(self._node_key(node_id)):
            return False
        if await self.redis.scard(self._owned_key(node_id)):
            return False
        await self.redis.srem(self._nodes_key, node_id)
        return True

    # -- leases ---------------------------------------------------------------------------------
    async def acquire(self, session_id: str) -> bool:
        """Hold ``session_id`` if nobody else does (or extend it if this node does)."""
        got = await self._acquire(
            keys=[self._lease_key(session_id), self._owned_key(self.node_id)],
            args=[self.node_id, self.settings.ttl_ms, session_id],
        )
        return bool(got)

    async def renew(self, session_ids: list[str]) -> list[str]:
        """Extend every lease still held; return the sessions whose lease was lost."""
        if not session_ids:
            return []
        held = await self._renew(
            keys=[self._lease_key(s) for s in session_ids],
            args=[self.node_id, self.settings.ttl_ms],
        )
        return [s for s, ok in zip(session_ids, held, strict=True) if not ok]

    async def release(self, session_id: str, *, hand_over: bool = False) -> bool:
        """Give a lease back. ``hand_over``: the session stays on this node's list, so that
        a live node adopts it as from a dead one (a draining node moving its sessions)."""
        done = await self._release(
            keys=[self._lease_key(session_id), self._owned_key(self.node_id)],
            args=[self.node_id, session_id, "1" if hand_over else "0"],
        )
        return bool(done)

    async def hold(self, role: str) -> bool:
        """Take or keep a job of which the cluster runs one (the live-visits clock): True
        while this node holds it. Called more often than the TTL, it stays; a holder that
        stops calling (dead, stalled) loses it to the next caller after one TTL."""
        return bool(
            await self._hold(
                keys=[f"{self.prefix}role:{role}"], args=[self.node_id, self.settings.ttl_ms]
            )
        )

    async def disown(self, session_id: str) -> None:
        """Take a session off this node's list (another node holds its lease now)."""
        await self.redis.srem(self._owned_key(self.node_id), session_id)

    async def owner(self, session_id: str) -> str | None:
        value = await self.redis.get(self._lease_key(session_id))
        return value.decode() if value is not None else None

    async def node(self, node_id: str) -> NodeInfo | None:
        """One node's last heartbeat; None when it expired (or does not decode)."""
        info = _decode_info(await self.redis.get(self._node_key(node_id)))
        return info if info is not None and info.id == node_id else None

    async def fresh(self, node_id: str) -> bool:
        """The node heartbeat within the last two beats (Redis's clock: the key's TTL left)."""
        left = await self.redis.pttl(self._node_key(node_id))
        return left > self.settings.ttl_ms - 2 * self.settings.interval * 1000 - 50

    async def listed(self, session_id: str) -> bool:
        """Some registered node (alive, dead or draining) lists the session as its own."""
        ids = list(await self.redis.smembers(self._nodes_key))
        if not ids:
            return False
        async with self.redis.pipeline(transaction=False) as pipe:
            for node_id in ids:
                pipe.sismember(self._owned_key(node_id.decode()), session_id)
            return any(await pipe.execute())

    async def owned(self, node_id: str | None = None) -> list[str]:
        members = await self.redis.smembers(self._owned_key(node_id or self.node_id))
        return sorted(m.decode() for m in members)

    async def adopt(self, dead_node: str, session_id: str) -> bool:
        """Take ``session_id`` from ``dead_node``'s list once its lease has expired."""
        got = await self._adopt(
            keys=[
                self._lease_key(session_id),
                self._owned_key(self.node_id),
                self._owned_key(dead_node),
            ],
            args=[self.node_id, self.settings.ttl_ms, session_id],
        )
        return bool(got)

    async def give(self, session_id: str, node_id: str) -> bool:
        """Lease a session nobody holds to ``node_id`` and list it there (it adopts the
        session from the ledger at its next round); False when someone holds it already."""
        got = await self._give(
            keys=[self._lease_key(session_id), self._owned_key(node_id)],
            args=[node_id, self.settings.ttl_ms, session_id],
        )
        return bool(got)

    async def close(self) -> None:
        await self.redis.aclose()


def _split(ids: list[str], raw: list[bytes | None]) -> tuple[list[NodeInfo], list[str]]:
    """The nodes whose heartbeat decodes (live) and the ids of the others (dead)."""
    live, dead = [], []
    for node_id, value in zip(ids, raw, strict=True):
        info = _decode_info(value)
        if info is None or info.id != node_id:
            dead.append(node_id)
        else:
            live.append(info)
    return live, dead


def _decode_info(value: bytes | None) -> NodeInfo | None:
    if value is None:
        return None
    try:
        return msgspec.json.decode(value, type=NodeInfo)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # a damaged entry counts as a dead node, never as a crash


class CpuMeter:
    """This process's CPU use as a fraction of one core, smoothed over about ``seconds``
    (an exponential average of the use between two calls): placement wants the sustained load,
    not the half second in which a staff login hashed its password."""

    def __init__(self, seconds: float = 5.0, clock=time.monotonic, cpu=time.process_time) -> None:
        self._clock, self._process_time, self._tau = clock, cpu, seconds
        self._wall, self._cpu = clock(), cpu()
        self._average = 0.0

    def __call__(self) -> float:
        wall, cpu = self._clock(), self._process_time()
        elapsed = max(wall - self._wall, 1e-6)
        used = min(max((cpu - self._cpu) / elapsed, 0.0), float(os.cpu_count() or 1))
        self._wall, self._cpu = wall, cpu
        self._average += (1.0 - math.exp(-elapsed / self._tau)) * (used - self._average)
        return round(self._average, 3)


class NodeAgent:
    """Keeps one node registered: heartbeats its load and renews its leases every
    ``interval``; a lease found lost is handed to ``on_lost`` (stop serving that session).
    ``drain`` marks the node draining (placement skips it) and releases its leases."""

    def __init__(
        self,
        registry: Registry,
        load: Callable[[], NodeLoad],
        *,
        on_lost: Callable[[str], None] = lambda session_id: None,
    ) -> None:
        self.registry = registry
        self.load = load
        self.on_lost = on_lost
        self.held: set[str] = set()
        self._task: asyncio.Task | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        await self.registry.heartbeat(self.load(), sorted(self.held))
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def acquire(self, session_id: str) -> bool:
        if await self.registry.acquire(session_id):
            self.held.add(session_id)
            return True
        return False

    async def release(self, session_id: str) -> None:
        self.held.discard(session_id)
        await self.registry.release(session_id)

    async def beat(self) -> None:
        """One heartbeat and one renewal round (what the loop does every ``interval``)."""
        await self.registry.heartbeat(self.load(), sorted(self.held))
        for session_id in await self.registry.renew(sorted(self.held)):
            if await self.registry.acquire(session_id):
                # it expired (Redis was away longer than the TTL) and nobody took it: still ours
                log.info("session lease expired and taken again", extra={"session": session_id})
                continue
            self.held.discard(session_id)
            log.warning("session lease lost", extra={"session": session_id})
            try:
                self.on_lost(session_id)
            except Exception:  # noqa: BLE001 - one session's handler must not stop the renewals
                log.exception("on_lost failed", extra={"session": session_id})

    async def _run(self) -> None:
        while not await stopped(self._stop, self.registry.settings.interval):
            try:
                await self.beat()
            except (aioredis.RedisError, OSError) as exc:
                # Redis unreachable: keep trying; leases run out on their own if this lasts
                log.warning("heartbeat failed: %s", exc)

    async def mark_draining(self) -> None:
        """No new sessions here: the heartbeat says draining from now on (one is sent at once),
        so placement, takeover and the pages' fallback lists skip this node."""
        self.registry.draining = True
        await self.registry.heartbeat(self.load())

    async def drain(self) -> list[str]:
        """No new sessions here (the heartbeat says draining); hand every lease over (the
        sessions stay listed under this node until a live node adopts them). Returns them."""
        await self.mark_draining()
        return await self.hand_over()

    async def hand_over(self) -> list[str]:
        """Give every lease held back, the sessions staying listed under this node so that a
        live node adopts them at its next round (no TTL to wait for). Returns them."""
        handed = sorted(self.held)
        for session_id in handed:
            self.held.discard(session_id)
            await self.registry.release(session_id, hand_over=True)
        return handed

    async def stop(self) -> None:
        """Stop after the current beat: a task cancelled in the middle of a redis-py command
        can leave the connection pool waiting forever (redis/redis-py#2665 and kin)."""
        if self._task is not None:
            self._stop.set()
            await finish(self._task)
            self._task = None


async def stopped(stop: asyncio.Event, interval: float) -> bool:
    """Wait ``interval``; True as soon as ``stop`` is set."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), interval)
    return stop.is_set()


async def finish(task: asyncio.Task, grace: float = 10.0) -> None:
    """Let ``task`` end by itself; cancel it only if it has not within ``grace``."""
    done, _ = await asyncio.wait({task}, timeout=grace)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    elif not task.cancelled() and task.exception() is not None:
        log.warning("cluster task failed: %r", task.exception())
