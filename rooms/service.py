"""SessionService: the one door through which every session changes.

``create_session`` and ``execute`` decide events (``rooms.rules``), append them to the ledger
(atomic, durable), fold them into the in-memory ``SessionState`` and then tell the listeners
(signaling's conductor broadcasts views and reconciles media). A refused command raises
``CommandError`` before anything is written. One lock serialises changes, so the ledger order is
the order in which commands were accepted.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rooms.commands import Command
from rooms.errors import CommandError
from rooms.events import Event, EventDraft
from rooms.ledger import LedgerStore
from rooms.policy import POLICIES, SYSTEM
from rooms.rules import decide
from rooms.state import SessionState

log = logging.getLogger("parley.rooms")

MIRRORS = 512  # sessions served elsewhere whose mirror ``peek`` keeps (the least recently read go)
Listener = Callable[[SessionState, list[Event]], None]
_STAFF_ACTOR = re.compile(r"^staff:[A-Za-z0-9_.@-]{1,64}$")


@dataclass
class ParticipantSpec:
    name: str
    role: str
    side: str | None = None


# tries of a command on an ended session that other nodes append to as well (``execute_ended``)
_AFTER_END_TRIES = 5


def new_participant_id() -> str:
    return "p-" + secrets.token_hex(4)


def new_session_id() -> str:
    return "s-" + secrets.token_hex(8)


def _text(value, field: str, limit: int, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise CommandError("invalid", f"`{field}` must be a non-empty string of at most {limit}")
    return value


class SessionService:
    def __init__(self, store: LedgerStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._states: dict[str, SessionState] = {}
        # read-only copies of sessions another node serves (``peek``), newest read last
        self._mirrors: dict[str, SessionState] = {}
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()

    # -- reading ------------------------------------------------------------------------------
    def state(self, session_id: str) -> SessionState:
        state = self._states.get(session_id) if isinstance(session_id, str) else None
        if state is None:
            raise CommandError("not_found", f"no session {str(session_id)[:40]!r}")
        return state

    def peek(self, session_id: str) -> SessionState:
        """The session's state for reading, wherever it is served: the live state when it is
        held here, else a read-only mirror folded from the ledger (a cluster's views of a
        session another node serves: docs/scaling.md, "Commands and views across nodes"). The
        mirror is never served, listed by ``sessions`` nor appended to; each call reads only
        the events after the ones it already folded. Never change what it returns."""
        state = self._states.get(session_id) if isinstance(session_id, str) else None
        if state is not None:
            return state
        if not isinstance(session_id, str) or not 0 < len(session_id) <= 64:
            raise CommandError("not_found", f"no session {str(session_id)[:40]!r}")
        mirror = self._mirrors.pop(session_id, None)
        try:
            if mirror is None:
                events = self._store.read(session_id)
                if not events:
                    raise CommandError("not_found", f"no session {session_id[:40]!r}")
                mirror = SessionState.from_events(events)
            else:
                for event in self._store.read(session_id, mirror.seq):
                    mirror.apply(event)
        except ValueError:  # the ledger is not what the mirror folded: read it whole again
            mirror = SessionState.from_events(self._store.read(session_id))
        self._mirrors[session_id] = mirror
        while len(self._mirrors) > MIRRORS:
            self._mirrors.pop(next(iter(self._mirrors)))  # the one read longest ago
        return mirror

    def sessions(self) -> list[SessionState]:
        return list(self._states.values())

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # -- changing -----------------------------------------------------------------------------
    def create_session(
        self,
        kind: str,
        *,
        actor: str,
        title: str,
        case_number: str | None,
        participants: list[ParticipantSpec],
    ) -> SessionState:
        if actor != SYSTEM and not _STAFF_ACTOR.match(actor or ""):
            raise CommandError("forbidden", "sessions are created by staff or the system")
        policy = POLICIES.get(kind)
        if policy is None:
            raise CommandError("invalid", f"`kind` must be one of {sorted(POLICIES)}")
        _text(title, "title", 200)
        _text(case_number, "case_number", 64, optional=True)
        if not isinstance(participants, list) or not participants:
            raise CommandError("invalid", "`participants` must be a non-empty list")
        if len(participants) > policy.max_participants:
            raise CommandError(
                "invalid", f"a {kind} session has at most {policy.max_participants} participants"
            )
        people = []
        for i, spec in enumerate(participants):
            if not isinstance(spec, ParticipantSpec):
                raise CommandError("invalid", f"`participants[{i}]` must be a ParticipantSpec")
            _text(spec.name, f"participants[{i}].name", 80)
            if spec.role not in policy.roles:
                raise CommandError(
                    "invalid",
                    f"`participants[{i}].role` {str(spec.role)[:20]!r} is not a role "
                    f"of a {kind} session ({', '.join(sorted(policy.roles))})",
                )
            _text(spec.side, f"participants[{i}].side", 16, optional=True)
            people.append({"id": "", "name": spec.name, "role": spec.role, "side": spec.side})
        for role, limit in policy.role_limits.items():
            if sum(p["role"] == role for p in people) > limit:
                raise CommandError("invalid", f"at most {limit} {role} in a {kind} session")
        if policy.host_roles and not any(p["role"] in policy.host_roles for p in people):
            raise CommandError(
                "invalid", f"a {kind} session needs one of: {', '.join(sorted(policy.host_roles))}"
            )
        ids: set[str] = set()
        for person in people:
            while (pid := new_participant_id()) in ids:
                continue
            ids.add(pid)
            person["id"] = pid
        data = {"kind": kind, "title": title, "case_number": case_number, "participants": people}
        with self._lock:
            session_id = new_session_id()
            draft = EventDraft(float(self._clock()), actor, "session.created", data)
            events = self._store.append(session_id, [draft], expected_seq=0)
            state = SessionState.from_events(events)
            self._states[session_id] = state
            self._notify(state, events)
        return state

    def execute(
        self,
        session_id: str,
        actor: str,
        command: Command,
        *,
        promote: Callable[[], None] | None = None,
    ) -> list[Event]:
        """Decide, append, fold, notify. ``promote`` runs under the lock right after the
        append and before the fold: it makes an artefact the events name (the agreement PDF)
        current, so no other command (an end or a removal) can come between the decision and
        the artefact. It must not block for long. If it fails, the events stand (the ledger
        decided) and the error is raised after the fold; the artefact's owner resolves it."""
        if not isinstance(actor, str) or not actor or len(actor) > 80:
            raise CommandError("forbidden", "every command needs a known actor")
        failed: Exception | None = None
        with self._lock:
            state = self.state(session_id)
            for attempt in range(_AFTER_END_TRIES):
                drafts = decide(state, actor, command, float(self._clock()), self._fresh_id(state))
                if not drafts:
                    return []
                try:
                    events = self._store.append(session_id, drafts, expected_seq=state.seq)
                    break
                except CommandError as exc:
                    # an ended session also takes steps from nodes that do not hold it
                    # (``execute_ended``): fold what they appended, decide again
                    if exc.code != "conflict" or not state.ended or attempt + 1 == _AFTER_END_TRIES:
                        raise
                    for event in self._store.read(session_id, state.seq):
                        state.apply(event)
            if promote is not None:
                try:
                    promote()
                except Exception as exc:  # noqa: BLE001 - recorded events are folded anyway
                    log.exception("promotion after %s failed", session_id)
                    failed = exc
            try:
                for event in events:
                    state.apply(event)
            except Exception:
                log.exception("fold failed; rebuilding %s from the ledger", session_id)
                self._states[session_id] = SessionState.from_events(self._store.read(session_id))
                raise
            self._notify(state, events)
        if failed is not None:
            raise failed
        return events

    def execute_ended(self, session_id: str, actor: str, command: Command) -> list[Event]:
        """A command on an ended session this node does not hold (after the end, on a cluster
        node that never served it or no longer does: the desk's summary and the citizen's
        rating, a review): decided by the same rules on the state folded from the ledger and
        appended only onto the tail that state was folded from; another writer meanwhile, read
        again and decide again. Nothing is notified: no view is live on an ended session. A
        session that has not ended is commanded where it is served (``conflict`` here)."""
        if not isinstance(actor, str) or not actor or len(actor) > 80:
            raise CommandError("forbidden", "every command needs a known actor")
        with self._lock:
            if isinstance(session_id, str) and session_id in self._states:
                return self.execute(session_id, actor, command)
            for _ in range(_AFTER_END_TRIES):
                state = self.peek(session_id)  # not_found when the ledger has no such session
                if not state.ended:
                    raise CommandError("conflict", "the session is live: command it where served")
                now = float(self._clock())
                drafts = decide(state, actor, command, now, self._fresh_id(state))
                if not drafts:
                    return []
                try:
                    return self._store.append(session_id, drafts, expected_seq=state.seq)
                except CommandError as exc:
                    if exc.code != "conflict":
                        raise
            raise CommandError("conflict", f"session {session_id[:40]!r} keeps moving")

    async def durable(self) -> None:
        """Return once every event appended so far is on disk (the store may sync in groups,
        off the event loop: answers await this before they acknowledge anything)."""
        durable = getattr(self._store, "durable", None)
        if durable is not None:
            await durable()

    def check(self, session_id: str, actor: str, command: Command) -> None:
        """Would ``command`` be accepted now? The decision without the append: for steps that
        must do slow work (cryptography) before their events exist. Raises CommandError."""
        with self._lock:
            state = self.state(session_id)
            decide(state, actor, command, float(self._clock()), self._fresh_id(state))

    def events(self, session_id: str) -> list[Event]:
        """The session's whole ledger (for evidence bundles, audits and statements), wherever it
        is served (``not_found`` when the ledger has no such session)."""
        if not (isinstance(session_id, str) and session_id in self._states):
            self.peek(session_id)
        return self._store.read(session_id)

    def recover(self, *, mark_disconnected: bool = True) -> int:
        """Rebuild every session from the store (after a restart or a takeover).

        Participants keep their spaces. Nobody's media survived the restart, so with
        ``mark_disconnected`` each participant the ledger shows connected gets a
        ``participant.disconnected`` event (reason ``node_restart``); a lost host starts the
        safety-hold grace period exactly as a dropped connection would.
        """
        with self._lock:
            for session_id in self._store.session_ids():
                self.adopt(session_id, mark_disconnected=mark_disconnected)
            return len(self._states)

    def adopt(self, session_id: str, *, mark_disconnected: bool = True) -> SessionState:
        """Rebuild one session from the store, as ``recover`` does for all: after a restart, or
        when this node takes over a session another node served (cluster/node.py). If another
        writer appends meanwhile (``conflict``), the session is read again and marked again."""
        with self._lock:
            for _ in range(10):
                events = self._store.read(session_id)
                if not events:
                    raise CommandError("not_found", f"no session {session_id[:40]!r} in the ledger")
                state = SessionState.from_events(events)
                live = [p for p in state.participants.values() if p.connected]
                if mark_disconnected and live and not state.ended:
                    now = float(self._clock())
                    drafts = [
                        EventDraft(
                            now,
                            SYSTEM,
                            "participant.disconnected",
                            {"participant": p.id, "reason": "node_restart"},
                        )
                        for p in live
                    ]
                    try:
                        events = self._store.append(session_id, drafts, expected_seq=state.seq)
                    except CommandError as exc:
                        if exc.code != "conflict":
                            raise
                        continue  # the old node wrote once more: read what it wrote
                    for event in events:
                        state.apply(event)
                self._states[session_id] = state
                return state
            raise CommandError("conflict", f"session {session_id[:40]!r} keeps moving")

    def drop(self, session_id: str) -> bool:
        """Forget a session's state here (another node serves it now); the ledger keeps it."""
        with self._lock:
            return self._states.pop(session_id, None) is not None

    # -- internals ----------------------------------------------------------------------------
    @staticmethod
    def _fresh_id(state: SessionState) -> Callable[[], str]:
        def fresh() -> str:
            while (pid := new_participant_id()) in state.participants:
                continue
            return pid

        return fresh

    def _notify(self, state: SessionState, events: list[Event]) -> None:
        for listener in list(self._listeners):
            try:
                listener(state, events)
            except Exception:  # noqa: BLE001 - a listener's bug must not undo an applied command
                log.exception("session listener failed")
