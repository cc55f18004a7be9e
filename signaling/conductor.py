"""The conductor joins rooms/ and media/ after every event.

rooms/ decides (events, state, the media plan); media/ forwards; the conductor only carries the
result across: it reconciles forwarding with ``plan(state)`` and pushes each participant the view
of the session it is allowed to see. It holds no policy of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.plan import Edge, plan
from rooms.state import GONE

log = logging.getLogger("parley.conductor")

Emit = Callable[[str, Any, str], Awaitable[None]]  # (event, data, sid)
Kick = Callable[[str], Awaitable[None]]  # disconnect a socket by sid


class Conductor:
    def __init__(self, service, engine, emit: Emit, kick: Kick | None = None) -> None:
        self._service = service
        self._engine = engine
        self._emit = emit
        self._kick = kick
        self._plans: dict[str, frozenset[Edge]] = {}
        self._sids: dict[str, str] = {}  # participant id -> socket id of its live connection
        self._tasks: set[asyncio.Task] = set()
        service.subscribe(self._on_events)

    # -- connections --------------------------------------------------------------------------
    def bind(self, participant_id: str, sid: str) -> str | None:
        """Record the live socket of a participant; returns the socket it replaces, if any."""
        old = self._sids.get(participant_id)
        self._sids[participant_id] = sid
        return old if old != sid else None

    def unbind(self, participant_id: str, sid: str) -> bool:
        """Forget a socket; False when a newer socket already replaced it."""
        if self._sids.get(participant_id) != sid:
            return False
        del self._sids[participant_id]
        return True

    def sid_of(self, participant_id: str) -> str | None:
        return self._sids.get(participant_id)

    # -- event fan-out ------------------------------------------------------------------------
    def _on_events(self, state, events) -> None:
        self._plans[state.id] = plan(state)
        self.reconcile()
        for pid, person in list(state.participants.items()):
            sid = self._sids.get(pid)
            if sid is None:
                continue
            self._send("state", state.view_for(pid), sid)
            reason = "ended" if state.ended else person.space if person.space in GONE else None
            if reason:  # removed, left, or the session is over: close their connections
                self._sids.pop(pid, None)
                self._spawn(self._close(pid, sid, reason))

    async def _close(self, pid: str, sid: str, reason: str) -> None:
        await self._engine.close_peer(pid, reason)
        await self._emit("error", {"code": reason, "message": f"session {reason}"}, sid)
        if self._kick is not None:
            await self._kick(sid)

    def reconcile(self) -> None:
        edges: set[Edge] = set()
        for session_plan in self._plans.values():
            edges |= session_plan
        self._engine.apply_plan(edges)

    # -- media callbacks ----------------------------------------------------------------------
    def on_slots(self, participant_id: str, slots: list[dict]) -> None:
        sid = self._sids.get(participant_id)
        if sid is not None:
            self._send("slots", {"slots": slots}, sid)

    def on_hint(self, participant_id: str, hint: dict) -> None:
        sid = self._sids.get(participant_id)
        if sid is not None:
            self._send("hint", hint, sid)

    def _send(self, event: str, data: Any, sid: str) -> None:
        self._spawn(self._emit(event, data, sid))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("emit failed: %r", task.exception())

    async def run_clock(self, interval: float = 1.0) -> None:
        """The system clock: a ``tick`` per live session drives caucus timers and the safety
        hold (rooms decides what is due; a tick with nothing due appends nothing)."""
        tick = decode_command({"type": "tick"})
        beat = 0
        while True:
            await asyncio.sleep(interval)
            beat += 1
            for state in self._service.sessions():
                if state.ended:
                    continue
                if beat % 2 == 0:
                    self._send_quality(state)
                try:
                    self._service.execute(state.id, "system", tick)
                except CommandError as exc:
                    log.debug("tick refused for %s: %s", state.id, exc.code)
                except Exception:  # noqa: BLE001 - the clock must keep running
                    log.exception("tick failed for %s", state.id)

    def _send_quality(self, state) -> None:
        """Every two seconds, each connected host gets everyone's link quality (not ledgered:
        it changes all the time and is nobody's action)."""
        hosts = [p for p in state.hosts() if p.id in self._sids]
        if not hosts:
            return
        quality = {pid: q for pid in state.participants if (q := self._engine.quality(pid))}
        for host in hosts:
            self._send("quality", quality, self._sids[host.id])

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
