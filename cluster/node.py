"""One node of a cluster: its session service tied to the registry (docs/scaling.md).

* A session created here is leased to this node at once (``session.created``); its lease is
  given back when it ends (``session.ended``) or when the node drains. A session the staff
  console creates (``create``) goes, with ``place_new``, to the node ``place`` picks, counted as
  pending there in Redis until that node's heartbeat counts it (a burst spreads).
* The sessions served here are summarised in the session index (cluster/index.py), which every
  node's console lists; a console page for a session served elsewhere is sent there
  (``locate``).
* At start, the sessions this node id held before a restart are taken back if their leases
  are free again (or still ours), and rebuilt from the ledger.
* Twice every ``interval`` the node looks for dead nodes (heartbeat expired) and takes over their
  sessions once their leases have expired: each session goes to the node ``place`` picks among
  the live ones (every node computes the same answer from the same list, so they do not race
  for it); a session nobody has taken for one more TTL goes to whoever asks first. A taken
  session is rebuilt from the ledger (``SessionService.adopt``: participants who were connected
  are marked disconnected, reason ``node_restart``, and keep their spaces); the pages then
  connect again and are placed back where they were.
* A lease found lost (a pause longer than the TTL) drops the session here and hands it to
  ``on_lost``, which closes its sockets and media: another node serves it now. So does an
  append the ledger refused (the Redis store's group mode reports it): the state here is not
  the ledger's; if the lease is still ours the session is rebuilt from the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec
import redis.asyncio as aioredis

from cluster.index import SESSION_ID, SessionIndex
from cluster.placement import place
from cluster.registry import CpuMeter, NodeAgent, NodeLoad, Registry, finish, stopped
from cluster.relay import CommandRelay
from cluster.routing import HERE, MOVING, REDIRECT, Route, Router, web_url
from recording.manifest import record_downtime
from rooms.errors import CommandError

log = logging.getLogger("parley.cluster")

DRAIN_POLL = 0.1  # seconds between two looks at the sessions still open while draining
# after a hand-over, how long a draining node keeps answering (``redirect``): a page whose
# socket its node closed connects again after 0.5 s, and asks again every 0.5 s while told
# ``session_moving`` (web/static/app.js); 2 s leaves a loaded machine a margin for both
REDIRECT_LINGER = 2.0


class ClusterNode:
    def __init__(
        self,
        service,
        registry: Registry,
        *,
        load: Callable[[], NodeLoad],
        on_lost: Callable[[str, list[str]], Awaitable[None] | None] = lambda s, people: None,
        store=None,
        place_new: bool = False,
    ) -> None:
        self.service = service
        # a session the console creates (``create``) goes to the node ``place`` picks
        # (docs/scaling.md, "Placement"); other sessions created here stay here
        self.place_new = place_new
        self._placing = False  # ``create`` is running: its session.created is claimed there
        self.placed: list[tuple[str, str]] = []  # (session, node) created here, given away
        self.store = store  # a RedisLedgerStore in group mode reports refused appends here
        self.registry = registry
        # a session ``create`` has made and not placed yet is counted nowhere by this node: it
        # is pending where it goes, then counted by the node that holds it (one count each)
        self._unplaced: set[str] = set()

        def own_load() -> NodeLoad:
            counted = load()
            if not self._unplaced:
                return counted
            return msgspec.structs.replace(
                counted, sessions=max(counted.sessions - len(self._unplaced), 0)
            )

        self.agent = NodeAgent(registry, own_load, on_lost=self._lost)
        self.router = Router(registry)  # where a page goes for a session not served here
        # what every node's console lists (cluster/index.py)
        self.index = SessionIndex(registry.redis, registry.node_id, prefix=registry.prefix)
        # commands to a session another node serves, and this node's queue (cluster/relay.py)
        self.relay = CommandRelay(service, registry, index=self.index)
        self._on_lost = on_lost
        self._orphans: dict[str, float] = {}  # session of a dead node -> when first seen
        self._tasks: set[asyncio.Task] = set()
        self._watch: asyncio.Task | None = None
        self._stop = asyncio.Event()
        self.taken: list[tuple[str, float]] = []  # (session, monotonic time) taken over here
        service.subscribe(self._on_events)

    @property
    def node_id(self) -> str:
        return self.registry.node_id

    async def start(self) -> None:
        if self.store is not None and hasattr(self.store, "on_conflict"):
            loop = asyncio.get_running_loop()
            self.store.on_conflict = lambda s: loop.call_soon_threadsafe(self._refused, s)
        self.index.start()
        await self.agent.start()
        self.router.live, _ = await self.registry.nodes()
        for session_id in await self.registry.owned():
            if await self.agent.acquire(session_id):
                self._serve(session_id)
            else:  # someone else serves it now
                await self.registry.disown(session_id)
        self._watch = asyncio.get_running_loop().create_task(self._run())
        self.relay.start()

    async def stop(self) -> None:
        """Stop heartbeating and watching (leases then expire on their own, as on a crash;
        ``drain`` first to hand them over at once)."""
        self._stop.set()  # never cancelled mid-command (see NodeAgent.stop)
        for task in [self._watch, *self._tasks]:
            if task is not None:
                await finish(task)
        self._watch = None
        await self.relay.stop()
        await self.agent.stop()
        await self.index.stop()

    async def drain(self) -> list[str]:
        """Take no new sessions and move the ones here now: each is dropped here (its media and
        sockets closed by ``on_lost``), everything appended here is stored, then its lease is
        handed over; live nodes adopt them at their next round."""
        await self.agent.mark_draining()
        for session_id in sorted(self.agent.held):
            self._lost(session_id)  # no more appends from here: the next owner's chain is one
        await self.service.durable()
        return await self.agent.hand_over()

    def live(self) -> list[str]:
        """The sessions this node still serves or holds: not ended, or leased here."""
        open_here = {s.id for s in self.service.sessions() if not s.ended}
        return sorted(open_here | self.agent.held)

    async def retire(
        self, seconds: float, hurry: asyncio.Event, *, linger: float = REDIRECT_LINGER
    ) -> list[str]:
        """SIGTERM on a clustered node (docs/scaling.md, "Drain"): draining at once (placement,
        takeover and the pages' fallback lists skip this node), its live sessions served until
        they end, for at most ``seconds`` or until ``hurry`` is set (a second signal); then
        every remaining session is handed over: dropped here, stored, its lease given back; once
        another node has adopted it (at most a TTL and a beat) its pages' media and sockets are
        closed, and the node keeps answering (``redirect``) for ``linger`` seconds so that the
        pages reach the new owner through it. Returns the sessions handed over. With Redis
        unreachable it gives up and returns [] (the node then stops as on a crash: its leases
        expire and live nodes take the sessions over after the TTL)."""
        try:
            return await self._retire(seconds, hurry, linger)
        except (aioredis.RedisError, OSError) as exc:
            log.error("drain given up, Redis unreachable (%s): stopping as on a crash", exc)
            return []

    async def _retire(self, seconds: float, hurry: asyncio.Event, linger: float) -> list[str]:
        await self.agent.mark_draining()
        started = time.monotonic()
        log.info(
            "draining: %s sessions, deadline %s s",
            len(self.live()),
            seconds,
            extra={"node": self.node_id, "deadline_s": seconds, "sessions": len(self.live())},
        )
        end = started + max(seconds, 0.0)
        while self.live() and not hurry.is_set() and (left := end - time.monotonic()) > 0:
            await stopped(hurry, min(DRAIN_POLL, left))
        remaining = self.live()
        if not remaining:
            waited = round(time.monotonic() - started, 3)
            log.info(
                "drained: every session ended after %s s",
                waited,
                extra={"node": self.node_id, "waited_s": waited},
            )
            return []
        live, _ = await self.registry.nodes()
        takers = [n.id for n in live if not n.draining and n.id != self.node_id]
        why = "second signal" if hurry.is_set() else "deadline"
        if takers:
            log.info(
                "handing sessions over (%s): %s",
                why,
                len(remaining),
                extra={"node": self.node_id, "sessions": remaining, "why": why, "to": takers},
            )
        else:
            log.warning(
                "no other live node takes sessions (%s): handing %s over to whichever node "
                "starts next (this node again, restarted with the same id, takes them back)",
                why,
                len(remaining),
                extra={"node": self.node_id, "sessions": remaining, "why": why},
            )
        # dropped here first (no more appends from this node), everything stored, the leases
        # handed over; the pages' media keeps flowing through this node until another node has
        # adopted the session, and only then are their sockets closed: they connect again and
        # are told ``redirect`` at once instead of ``session_moving`` and a retry
        people = {}
        for session_id in sorted(self.agent.held):
            with contextlib.suppress(CommandError):
                people[session_id] = list(self.service.state(session_id).participants)
            self.service.drop(session_id)
            self.index.forget(session_id)
        await self.service.durable()
        handed = await self.agent.hand_over()
        if takers:
            await self._adopted(handed, started)
        for session_id in handed:
            result = self._on_lost(session_id, people.get(session_id, []))
            if asyncio.iscoroutine(result):
                await result
        if takers:
            await asyncio.sleep(linger)  # pages asking again (every 0.5 s) get their redirect
        return handed

    async def _adopted(self, handed: list[str], started: float) -> None:
        """Wait until another node holds every lease handed over (at most a TTL and a beat)."""
        settings = self.registry.settings
        bound = time.monotonic() + settings.ttl_ms / 1000 + settings.interval
        waiting = set(handed)
        while waiting and time.monotonic() < bound:
            for session_id in sorted(waiting):
                owner = await self.registry.owner(session_id)
                if owner is not None and owner != self.node_id:
                    waiting.discard(session_id)
            if waiting:
                await asyncio.sleep(settings.interval / 4)
        if waiting:
            log.warning("sessions not adopted yet", extra={"sessions": sorted(waiting)})
        else:
            after = round(time.monotonic() - started, 3)
            log.info(
                "sessions adopted %s s after the drain began",
                after,
                extra={"sessions": handed, "after_s": after},
            )

    # -- sessions created and ended here --------------------------------------------------------
    def _on_events(self, state, events) -> None:
        types = {e.type for e in events}
        self.index.note(state)
        if "session.created" in types and not self._placing:
            self._spawn(self._claim_new(state.id))
        if "session.ended" in types:
            self._spawn(self.agent.release(state.id))

    async def create(self, make: Callable[[], object]):
        """Create a session with ``make`` (the service's ``create_session``, synchronous) and,
        with ``place_new``, give it to the node ``place`` picks. Returns the state ``make``
        returned once the session is leased where it goes and listed in the index: the
        console's next page finds it there. Only the console creates through here: a visit's
        or a desk's session stays on the node that made it, whose pages read it in memory."""
        self._placing = True  # ``make`` notifies synchronously: its session.created is ours
        try:
            state = make()
        finally:
            self._placing = False
        self._unplaced.add(state.id)
        try:
            await self._claim_new(state.id, place=self.place_new)
        finally:
            self._unplaced.discard(state.id)
        await self.index.flush()
        return state

    async def _claim_new(self, session_id: str, *, place: bool = False) -> None:
        try:
            if place and await self._place_new(session_id):
                return
        except (aioredis.RedisError, OSError) as exc:  # not placed: it stays here
            log.warning(
                "new session not placed (%s): kept here", exc, extra={"session": session_id}
            )
        got = await self.agent.acquire(session_id)
        self._unplaced.discard(session_id)  # held here: this node's heartbeat counts it now
        if not got:
            log.error("new session already leased elsewhere", extra={"session": session_id})

    async def _place_new(self, session_id: str) -> bool:
        """Give a session created here to the least-loaded live node when that is not this one:
        the choice is counted as pending there in Redis (``Registry.reserve``: every node's
        placer sees it, until that node's heartbeat counts the session itself), its whole start
        is stored first (the other node rebuilds it from the ledger) and listed in the index,
        then its lease goes to that node, which finds it on its list (``receive``), and it is
        dropped here. True when given away."""
        chosen = await self.registry.reserve(session_id, place)
        if chosen is None or chosen.id == self.node_id:
            return False
        await self.service.durable()
        await self.index.flush()
        if not await self.registry.give(session_id, chosen.id):
            return False
        self.service.drop(session_id)
        self._unplaced.discard(session_id)
        self.index.forget(session_id)
        self.placed.append((session_id, chosen.id))
        log.info("new session placed", extra={"session": session_id, "node": chosen.id})
        return True

    async def receive(self) -> list[str]:
        """Adopt the sessions listed under this node that it does not serve: given to it by
        another node (a new session placed here). Sessions in memory here are never rebuilt."""
        if self.registry.draining:
            return []
        got: list[str] = []
        for session_id in await self.registry.owned():
            if session_id in self.agent.held or self._serving(session_id):
                continue
            if await self.agent.acquire(session_id):
                if not self._serving(session_id) and self._serve(session_id):
                    got.append(session_id)
            else:  # someone else holds it now
                await self.registry.disown(session_id)
        return got

    def _serving(self, session_id: str) -> bool:
        try:
            self.service.state(session_id)
        except CommandError:
            return False
        return True

    async def locate(self, session_id: str) -> Route | None:
        """Where a staff page for a session not in memory here goes (signaling/console.py):
        ``HERE`` when this node holds its lease (given to it a moment ago: adopted now), the
        owner's ``redirect`` or ``session_moving`` as for a participant's page (``Router``),
        and for a session nobody holds (ended) the node the index says served it, while that
        node is alive: it still has the ended case in memory. None: no node has it."""
        if not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id):
            return None
        if self._serving(session_id):
            return Route(HERE)
        if await self.registry.owner(session_id) == self.node_id:
            await self.receive()  # the round would adopt it within half a beat: now instead
            return Route(HERE) if self._serving(session_id) else Route(MOVING)
        route = await self.router.route(session_id)
        if route is not None:
            return route
        entry = await self.index.get(session_id)
        if entry is None or entry.node == self.node_id:
            return None
        info = await self.registry.node(entry.node)
        if info is None or not web_url(info.url):
            return None
        return Route(REDIRECT, info.url.rstrip("/"))

    def _spawn(self, coro) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:  # no loop (a CLI creating a session): nothing to lease
            coro.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- takeover -------------------------------------------------------------------------------
    async def _run(self) -> None:
        # twice per heartbeat: a dead node's sessions are taken at most half a beat after its
        # leases expire (two small Redis reads a round while nobody is dead)
        away = False  # Redis unreachable: said once per outage, not every round
        while not await stopped(self._stop, self.registry.settings.interval / 2):
            try:
                await self.take_over()
                await self.receive()
            except (aioredis.RedisError, OSError) as exc:
                if not away:
                    log.warning("takeover rounds paused, Redis unreachable: %s", exc)
                away = True
                continue
            except Exception:  # noqa: BLE001 - the watch must keep running
                log.exception("takeover round failed")
                continue
            if away:
                log.info("takeover rounds resumed, Redis reachable again")
                away = False

    async def take_over(self) -> list[str]:
        """One round: take the sessions of dead nodes that fall to this node; return them."""
        live, dead = await self.registry.nodes()
        self.router.live = live  # the pages' fallback list (welcome ``nodes``)
        # never this node itself: after Redis was away longer than the TTL (restarted from its
        # AOF) its own heartbeat has expired until its next beat, and "adopting" its own
        # sessions would rebuild them from the ledger (everyone marked disconnected, sockets
        # left open) though it never stopped serving them; the agent's beat takes their
        # expired leases again (NodeAgent.beat)
        dead = [d for d in dead if d != self.node_id]
        if self.registry.draining:
            return []  # a draining node takes nothing over: it is leaving
        # a draining node's handed-over sessions are adopted like a dead node's
        dead += [n.id for n in live if n.draining and n.id != self.node_id]
        if not dead:
            self._orphans.clear()
            return []
        now = time.monotonic()
        grace = self.registry.settings.ttl_ms / 1000
        pending: dict[str, int] = {}
        taken: list[str] = []
        for dead_id in dead:
            sessions = await self.registry.owned(dead_id)
            for session_id in sessions:
                first = self._orphans.setdefault(session_id, now)
                chosen = place(live, pending)
                if chosen is not None:
                    pending[chosen.id] = pending.get(chosen.id, 0) + 1
                mine = chosen is None or chosen.id == self.node_id or now - first > grace
                if not mine or not await self.registry.adopt(dead_id, session_id):
                    continue
                self._orphans.pop(session_id, None)
                self.agent.held.add(session_id)
                if self._serve(session_id):
                    taken.append(session_id)
                    self.taken.append((session_id, time.monotonic()))
            if not sessions:
                await self.registry.forget(dead_id)  # only once dead, not while draining
        return taken

    def _serve(self, session_id: str) -> bool:
        """Rebuild a session this node now holds; an ended one is given back at once."""
        try:
            state = self.service.adopt(session_id)
        except CommandError as exc:
            log.error("cannot rebuild %s: %s", session_id, exc, extra={"session": session_id})
            self._spawn(self.agent.release(session_id))
            return False
        log.info("session taken over", extra={"session": session_id, "seq": state.seq})
        self.index.note(state)  # served here now: the console's list says so
        if state.ended:
            self._spawn(self.agent.release(session_id))
        else:
            self._record_gap(session_id)
        return True

    def _record_gap(self, session_id: str) -> None:
        """A recorded session taken over: the recording holds nothing from the last segment the
        old node closed until now (its media died with it, or was closed at the hand-over), so
        the ledger says so, as after a restart; the recording resumes here when the
        participants' media arrive (the plan still says so)."""
        try:
            gap = record_downtime(self.service, session_id, time.time())
        except CommandError as exc:
            log.warning(
                "takeover gap not recorded", extra={"session": session_id, "code": exc.code}
            )
            return
        if gap is not None:
            log.info(
                "recording gap recorded", extra={"session": session_id, "since": gap["wall_start"]}
            )

    def _refused(self, session_id: str) -> None:
        """The ledger refused appends this node made (another node wrote to the session): the
        state here is not the ledger's. Drop it and close its sockets; if this node still holds
        the lease, rebuild the session from the ledger (its pages connect again)."""
        log.error("ledger refused this node's appends", extra={"session": session_id})
        self._lost(session_id)
        self.store.forgive(session_id)
        if session_id in self.agent.held:
            self._serve(session_id)

    def _lost(self, session_id: str) -> None:
        try:
            people = list(self.service.state(session_id).participants)
        except CommandError:
            people = []
        self.service.drop(session_id)
        self.index.forget(session_id)
        result = self._on_lost(session_id, people)
        if asyncio.iscoroutine(result):
            self._spawn(result)


def server_load(service, engine) -> Callable[[], NodeLoad]:
    """What a server node reports: live sessions, connected peers, forwarded streams (not
    paused), its CPU since the last heartbeat."""
    cpu = CpuMeter()

    def load() -> NodeLoad:
        stats = engine.stats()
        return NodeLoad(
            sessions=sum(not s.ended for s in service.sessions()),
            participants=int(stats.get("peers_connected", 0)),
            streams=max(
                int(stats.get("subscriptions", 0) - stats.get("subscriptions_paused", 0)), 0
            ),
            cpu=cpu(),
        )

    return load


def close_sessions_sockets(conductor, kick: Callable[[str], Awaitable[None]]):
    """``on_lost`` for a server node: close each participant's media here and their socket, so
    their pages connect again (and reach the node that serves the session now)."""

    async def close(session_id: str, people: list[str]) -> None:
        for pid in people:
            sid = conductor.sid_of(session_id, pid)
            await conductor.close_peer(session_id, pid, "moved")
            if sid is not None and conductor.unbind(session_id, pid, sid):
                await kick(sid)

    return close


def node_id_for(configured: str | None, port: int) -> str:
    """The configured node id, else ``<hostname>-<port>`` (a random suffix for port 0)."""
    if configured:
        return configured
    import secrets
    import socket

    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())[:40]
    return f"{host}-{port}" if port else f"{host}-{secrets.token_hex(3)}"
