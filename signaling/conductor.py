"""The conductor joins rooms/ and media/ after every event.

rooms/ decides (events, state, the media plan); media/ forwards; the conductor only carries the
result across: it reconciles forwarding with ``plan(state)`` and pushes each participant the view
of the session it is allowed to see. It holds no policy of its own.

Participant ids are unique within their session only, so everything that spans sessions is keyed
by (session, participant): the live sockets here, and the media engine's peers through
``media_key`` (media knows nothing of sessions; the conductor translates on the way in and out).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.plan import RECORDER, plan
from rooms.state import GONE

log = logging.getLogger("parley.conductor")

Emit = Callable[[str, Any, str], Awaitable[None]]  # (event, data, sid)
Kick = Callable[[str], Awaitable[None]]  # disconnect a socket by sid
Key = tuple[str, str]  # (session id, participant id)


def media_key(session_id: str, participant_id: str) -> str:
    """The media engine's name for a participant: unique across the sessions of this node."""
    return f"{session_id}/{participant_id}"


def split_media_key(key: str) -> Key:
    session_id, _, participant_id = key.partition("/")
    return session_id, participant_id


class MediaEdge(NamedTuple):
    publisher: str
    subscriber: str
    kind: str


class Binding(NamedTuple):
    sid: str
    gen: int  # the invitation generation the socket connected with


class Conductor:
    def __init__(
        self, service, engine, emit: Emit, kick: Kick | None = None, recorder=None
    ) -> None:
        self._service = service
        self._engine = engine
        self._recorder = recorder  # recording.Recorder, or None: nothing is ever recorded
        self._recorded: set[str] = set()  # sessions whose recorder sink is attached
        self._ready_sent: set[str] = set()
        self._emit = emit
        self._kick = kick
        self._plans: dict[str, frozenset[MediaEdge]] = {}
        self._sids: dict[Key, Binding] = {}  # (session, participant) -> its live socket
        self._weak: dict[str, set[str]] = {}  # session -> participants audio-only (weak network)
        self._tasks: set[asyncio.Task] = set()
        service.subscribe(self._on_events)

    # -- connections --------------------------------------------------------------------------
    def bind(self, session_id: str, participant_id: str, sid: str, gen: int) -> str | None:
        """Record the live socket of a participant; returns the socket it replaces, if any."""
        old = self._sids.get((session_id, participant_id))
        self._sids[(session_id, participant_id)] = Binding(sid, gen)
        return old.sid if old is not None and old.sid != sid else None

    def unbind(self, session_id: str, participant_id: str, sid: str) -> bool:
        """Forget a socket; False when a newer socket already replaced it (or it was closed)."""
        if self.sid_of(session_id, participant_id) != sid:
            return False
        del self._sids[(session_id, participant_id)]
        return True

    def sid_of(self, session_id: str, participant_id: str) -> str | None:
        bound = self._sids.get((session_id, participant_id))
        return bound.sid if bound is not None else None

    # -- media, keyed by session --------------------------------------------------------------
    async def accept_offer(self, session_id: str, participant_id: str, sdp: str) -> str:
        return await self._engine.accept_offer(media_key(session_id, participant_id), sdp)

    async def close_peer(self, session_id: str, participant_id: str, reason: str) -> None:
        await self._engine.close_peer(media_key(session_id, participant_id), reason)

    def set_video_paused(
        self, session_id: str, participant_id: str, paused: bool, *, weak_network: bool = False
    ) -> None:
        self._engine.set_video_paused(media_key(session_id, participant_id), paused)
        weak = self._weak.setdefault(session_id, set())
        if (participant_id in weak) == (paused and weak_network):
            return
        if paused and weak_network:
            weak.add(participant_id)
        else:
            weak.discard(participant_id)
        # everyone connected in the session learns who is audio-only because of a weak network
        # (not ledgered: it is nobody's action); a page that (re)connects gets it with its answer
        msg = {"participants": self.weak_network(session_id)}
        for (sess, _pid), bound in list(self._sids.items()):
            if sess == session_id:
                self._send("weak_network", msg, bound.sid)

    def weak_network(self, session_id: str) -> list[str]:
        """Participants of the session whose page went audio-only for a weak network."""
        return sorted(self._weak.get(session_id, ()))

    def slot_map(self, session_id: str, participant_id: str) -> list[dict]:
        return _local(self._engine.slot_map(media_key(session_id, participant_id)))

    # -- event fan-out ------------------------------------------------------------------------
    def _on_events(self, state, events) -> None:
        self._sync_recorder(state)
        self._plans[state.id] = frozenset(
            MediaEdge(media_key(state.id, e.publisher), media_key(state.id, e.subscriber), e.kind)
            for e in plan(state)
        )
        self.reconcile()
        for pid, person in list(state.participants.items()):
            bound = self._sids.get((state.id, pid))
            if bound is None:
                continue
            self._send("state", state.view_for(pid), bound.sid)
            reason = _closing_reason(state, person, bound)
            if reason:  # removed, left, link revoked, or the session is over: close at once
                del self._sids[(state.id, pid)]
                self._spawn(self._close(state.id, pid, bound.sid, reason))

    async def _close(self, session_id: str, pid: str, sid: str, reason: str) -> None:
        # the closing event is on disk first, like every answer; the command's own reply, which
        # waits on the same barrier, then goes out before the socket is cut
        await self._service.durable()
        await self.close_peer(session_id, pid, reason)
        await self._emit("error", {"code": reason, "message": _CLOSING[reason]}, sid)
        if self._kick is not None:
            await self._kick(sid)
        if reason == "token_revoked":  # the participant is still in the session, offline now
            lost = {"type": "disconnect", "participant": pid, "reason": "transport_lost"}
            try:
                self._service.execute(session_id, "system", decode_command(lost))
            except CommandError as exc:
                log.info("disconnect after revocation not applied: %s", exc.code)

    # -- the recorder (docs/recording.md) ------------------------------------------------------
    def _sync_recorder(self, state) -> None:
        """Attach a session's recorder sink before its plan can name it; close it at the end;
        report the recorder ready where the session cannot go live without it (R1)."""
        rec, policy = self._recorder, state.policy
        if rec is None or policy.recording == "forbidden" or policy.privileged:
            return  # R2: a privileged session never gets a sink
        key = media_key(state.id, RECORDER)
        if state.ended:
            if state.id in self._recorded:
                self._recorded.discard(state.id)
                rec.end_session(state.id)
                self._engine.detach_sink(key)
            return
        if state.id not in self._recorded:
            sid = state.id
            sink = rec.session(
                sid,
                epoch=state.created_at,
                space_of=lambda pid: self._service.state(sid).participants[pid].space,
                participant_of=lambda publisher: split_media_key(publisher)[1],
                first_index=lambda pid: max(self._service.state(sid).segments.get(pid, {-1})) + 1,
            )
            self._engine.attach_sink(key, sink)
            self._recorded.add(sid)
        if state.recorder != "ready":
            self._ready_sent.discard(state.id)
        if (
            policy.recording == "required"
            and state.recorder != "ready"
            and state.id not in self._ready_sent
            and rec.healthy
        ):
            self._ready_sent.add(state.id)
            self.recorder_report(state.id, {"type": "report_recorder", "status": "ready"})

    def recorder_report(self, session_id: str, raw: dict) -> None:
        """A recorder report becomes a server-only command, after the current one (never
        inside another command's listeners)."""
        self._spawn(self._apply_report(session_id, raw))

    async def _apply_report(self, session_id: str, raw: dict) -> None:
        try:
            self._service.execute(session_id, "system", decode_command(raw))
        except CommandError as exc:
            log.warning("recorder report %s refused: %s %s", raw["type"], exc.code, exc.message)

    def set_extra_edges(self, owner: str, edges) -> None:
        """Edges rooms computed outside one session's plan, under a name of their own (an
        officer's grid: ``rooms.plan.thumbnails`` of several sessions); empty removes them."""
        if edges:
            self._plans[owner] = frozenset(edges)
        else:
            self._plans.pop(owner, None)
        self.reconcile()

    def reconcile(self) -> None:
        edges: set[MediaEdge] = set()
        for session_plan in self._plans.values():
            edges |= session_plan
        self._engine.apply_plan(edges)

    # -- media callbacks ----------------------------------------------------------------------
    def on_slots(self, key: str, slots: list[dict]) -> None:
        sid = self.sid_of(*split_media_key(key))
        if sid is not None:
            self._send("slots", {"slots": _local(slots)}, sid)

    def on_hint(self, key: str, hint: dict) -> None:
        sid = self.sid_of(*split_media_key(key))
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
        hosts = [sid for p in state.hosts() if (sid := self.sid_of(state.id, p.id))]
        if not hosts:
            return
        quality = {
            pid: q
            for pid in state.participants
            if (q := self._engine.quality(media_key(state.id, pid)))
        }
        for sid in hosts:
            self._send("quality", quality, sid)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


_CLOSING = {
    "ended": "session ended",
    "removed": "session removed",
    "left": "session left",
    "token_revoked": "this invitation link was replaced by a newer one",
}


def _closing_reason(state, person, bound: Binding) -> str | None:
    """Why a bound socket must close now, or None while it may stay."""
    if state.ended:
        return "ended"
    if person.space in GONE:
        return person.space
    if bound.gen < person.invitation_gen:
        return "token_revoked"
    return None


def _local(slots: list[dict]) -> list[dict]:
    """A slot map as the phone knows it: publishers by their participant id in the session."""
    return [
        {**s, "participant": split_media_key(s["participant"])[1] if s["participant"] else None}
        for s in slots
    ]
