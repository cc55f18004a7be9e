"""SessionState: a pure fold of a session's events.

Nothing here decides anything; ``apply`` only records what an event says happened. A node that
restarts (or takes a session over) calls ``SessionState.from_events`` and gets the same state,
participants in the same spaces. Event types this fold does not know (recording segments,
agreement versions, ...) still advance ``seq`` and ``head``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rooms.errors import CommandError
from rooms.events import GENESIS, Event
from rooms.policy import Policy, policy_for

WAITING, JOINT, VISIT, CONSOLE, LEFT, REMOVED = (
    "waiting",
    "joint",
    "visit",
    "console",
    "left",
    "removed",
)
CAUCUS_PREFIX = "caucus:"
GONE = frozenset({LEFT, REMOVED})
CHAT_KEPT = 100  # per space in memory; the ledger keeps every message
AGREEMENT_SIDES = {"A": "applicant", "B": "respondent"}  # session side -> agreement side


def caucus_space(name: str) -> str:
    return CAUCUS_PREFIX + name


def is_media_space(space: str) -> bool:
    """Spaces where people see and hear each other."""
    return space in (JOINT, VISIT) or space.startswith(CAUCUS_PREFIX)


@dataclass
class ParticipantState:
    id: str
    name: str
    role: str
    side: str | None
    space: str = WAITING
    connected: bool = False
    arrived: bool = False  # connected at least once; later connects keep the space
    muted: bool = False
    identity_checked: bool = False
    identity_method: str | None = None
    consents: dict[str, bool] = field(default_factory=dict)
    target_space: str | None = None  # where a called-in participant lands on first connect
    asked_at: float | None = None  # "ask for the mediator" pending since
    invitation_gen: int = 0

    def public(self) -> dict[str, Any]:
        """What another participant in the same space may know."""
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "side": self.side,
            "connected": self.connected,
            "muted": self.muted,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.public(),
            "space": self.space,
            "arrived": self.arrived,
            "identity_checked": self.identity_checked,
            "identity_method": self.identity_method,
            "consents": dict(self.consents),
            "target_space": self.target_space,
            "asked_at": self.asked_at,
            "invitation_gen": self.invitation_gen,
        }


@dataclass
class CaucusState:
    name: str
    deadline: float | None = None
    warned: set[int] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "deadline": self.deadline, "warned": sorted(self.warned)}


@dataclass
class SessionState:
    id: str
    kind: str = ""
    title: str = ""
    case_number: str | None = None
    policy: Policy | None = None  # type: ignore[assignment]
    participants: dict[str, ParticipantState] = field(default_factory=dict)
    caucuses: dict[str, CaucusState] = field(default_factory=dict)
    recording: bool = False
    recorder: str = "none"  # "ready" | "failed": what the recorder last reported (R1)
    recorder_reason: str = ""
    segments: dict[str, set[int]] = field(default_factory=dict)  # participant -> indexes kept
    recording_by: str = ""  # the actor of the last recording.started
    # the open recording question {"id", "by" (actor), "at"} (R8), and how many were asked
    recording_ask: dict[str, Any] | None = None
    recording_asks: int = 0
    withdrawn: dict[str, float] = field(default_factory=dict)  # consent withdrawn in this run
    paused_since: float | None = None  # the last recording.paused not yet resumed or ended
    legal_hold: dict | None = None  # {"since", "by", "reason"} while a legal hold is on (R16)
    ended: bool = False
    ended_reason: str | None = None
    created_at: float = 0.0
    created_by: str = ""
    host_lost_at: float | None = None  # every host gone since (safety hold pending)
    held: bool = False  # safety hold applied and no host back yet
    chat: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    documents: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # space -> shared
    agreement: dict[str, Any] = field(default_factory=dict)  # draft, version, signers, status
    cids: set[tuple[str, str]] = field(default_factory=set)
    # R17, the session clock (policy.clock_roles): folded from the events' own times, so an
    # outage (a terminal's connection lost, the visit held) is never counted
    time_limit: float | None = None
    clock_used: float = 0.0  # seconds consumed before clock_since
    clock_since: float | None = None  # running since (None: not running)
    clock_started: bool = False
    outage_since: float | None = None  # paused after it had started (an outage, a hold)
    time_warned: set[int] = field(default_factory=set)
    warnings: list[dict[str, Any]] = field(default_factory=list)  # officers' warnings (R4)
    last_ts: float = 0.0
    seq: int = 0
    head: str = GENESIS

    # -- folding ----------------------------------------------------------------------------
    @classmethod
    def from_events(cls, events: list[Event]) -> SessionState:
        if not events:
            raise ValueError("a session needs at least its creation event")
        state = cls(id=events[0].session)
        for event in events:
            state.apply(event)
        return state

    def apply(self, event: Event) -> None:
        if event.session != self.id or event.seq != self.seq + 1 or event.prev != self.head:
            raise ValueError(f"event {event.session}#{event.seq} does not follow seq {self.seq}")
        if event.seq == 1 and event.type != "session.created":
            raise ValueError("the first event must be session.created")
        handler = getattr(self, "_on_" + event.type.replace(".", "_"), None)
        if handler is not None:
            handler(event, event.data)
        cid = event.data.get("cid")
        if isinstance(cid, str):
            self.cids.add((event.actor, cid))
        self._run_clock(event.ts)
        self.seq, self.head, self.last_ts = event.seq, event.hash, event.ts

    # -- the session clock (R17) -------------------------------------------------------------
    def clock_live(self) -> bool:
        """Someone of every clock role is connected in the main space (the visit is on)."""
        roles = self.policy.clock_roles if self.policy else frozenset()
        if not roles or self.ended:
            return False
        main = self.policy.main_space
        here = {p.role for p in self.participants.values() if p.connected and p.space == main}
        return roles <= here

    def _run_clock(self, ts: float) -> None:
        live = self.clock_live()
        if self.clock_since is not None and not live:
            self.clock_used += max(0.0, ts - self.clock_since)
            self.clock_since = None
            self.outage_since = None if self.ended else ts
        elif self.clock_since is None and live:
            self.clock_since, self.clock_started, self.outage_since = ts, True, None

    def remaining(self, now: float) -> float | None:
        """Seconds of the visit left at ``now`` (None: this session has no clock)."""
        if self.time_limit is None or not self.policy.clock_roles:
            return None
        running = now - self.clock_since if self.clock_since is not None else 0.0
        return self.time_limit - self.clock_used - max(0.0, running)

    def clock_view(self) -> dict[str, Any] | None:
        left = self.remaining(self.last_ts)
        if left is None:
            return None
        return {
            "limit": self.time_limit,
            "remaining": round(max(0.0, left), 1),  # as of the last event; pages count down
            "running": self.clock_since is not None,
            "started": self.clock_started,
            "outage_since": self.outage_since,
            "warned": sorted(self.time_warned, reverse=True),
        }

    def _on_visit_time_limit(self, e: Event, d: dict) -> None:
        self.time_limit = float(d["seconds"])

    def _on_visit_time_warning(self, e: Event, d: dict) -> None:
        self.time_warned |= {w for w in self.policy.time_warnings if w >= d["remaining"]}

    def _on_visit_warned(self, e: Event, d: dict) -> None:
        self.warnings.append(
            {"seq": e.seq, "ts": e.ts, "by": e.actor, "reason": d["reason"], "note": d["note"]}
        )

    def _on_session_created(self, e: Event, d: dict) -> None:
        self.kind, self.title, self.case_number = d["kind"], d["title"], d.get("case_number")
        self.policy = policy_for(self.kind)
        self.created_at, self.created_by = e.ts, e.actor
        limit = self.policy.time_limit_seconds
        self.time_limit = float(limit) if limit and self.policy.clock_roles else None
        for p in d["participants"]:
            self._add(p)

    def _add(self, p: dict) -> None:
        self.participants[p["id"]] = ParticipantState(p["id"], p["name"], p["role"], p.get("side"))

    def _on_participant_added(self, e: Event, d: dict) -> None:
        self._add(d["participant"])
        self.participants[d["participant"]["id"]].target_space = d.get("space")

    def _on_participant_connected(self, e: Event, d: dict) -> None:
        p = self.participants[d["participant"]]
        p.connected, p.arrived, p.space = True, True, d["space"]
        if p.role in self.policy.host_roles:
            self.host_lost_at, self.held = None, False

    def _on_participant_rejoined(self, e: Event, d: dict) -> None:
        p = self.participants[d["participant"]]
        p.space, p.connected, p.asked_at = d["space"], False, None

    def _on_participant_disconnected(self, e: Event, d: dict) -> None:
        self.participants[d["participant"]].connected = False
        self._check_hosts(e.ts)

    def _on_participant_admitted(self, e: Event, d: dict) -> None:
        self._move(d["participant"], d["space"])

    def _on_participant_moved(self, e: Event, d: dict) -> None:
        self._move(d["participant"], d["to"])

    def _move(self, pid: str, space: str) -> None:
        p = self.participants[pid]
        p.space, p.asked_at = space, None
        if p.role in self.policy.host_roles:
            for other in self.participants.values():
                if other.space == space:
                    other.asked_at = None

    def _on_participant_left(self, e: Event, d: dict) -> None:
        p = self.participants[d["participant"]]
        p.space, p.connected, p.asked_at = LEFT, False, None
        self._check_hosts(e.ts)

    def _on_participant_removed(self, e: Event, d: dict) -> None:
        p = self.participants[d["participant"]]
        p.space, p.connected, p.asked_at = REMOVED, False, None
        self._check_hosts(e.ts)

    def _check_hosts(self, ts: float) -> None:
        if self.host_lost_at is None and self.had_host() and not self.connected_hosts():
            self.host_lost_at = ts

    def _on_participant_muted(self, e: Event, d: dict) -> None:
        self.participants[d["participant"]].muted = True

    def _on_participant_unmuted(self, e: Event, d: dict) -> None:
        self.participants[d["participant"]].muted = False

    def _on_participant_invitation_reissued(self, e: Event, d: dict) -> None:
        p = self.participants[d["participant"]]
        p.invitation_gen = d["gen"]
        if "name" in d:  # the place handed to someone else (the desk's transfer)
            p.name = d["name"]

    def _on_participant_identity_checked(self, e: Event, d: dict) -> None:
        p = self.participants[d["participant"]]
        p.identity_checked, p.identity_method = True, d["method"]

    def _on_participant_consent(self, e: Event, d: dict) -> None:
        self.participants[d["participant"]].consents[d["topic"]] = d["given"]
        if d["topic"] == "recording" and d["given"]:
            self.withdrawn.pop(d["participant"], None)

    def _on_participant_asked_for_mediator(self, e: Event, d: dict) -> None:
        self.participants[d["participant"]].asked_at = e.ts

    def _on_caucus_created(self, e: Event, d: dict) -> None:
        self.caucuses[d["caucus"]] = CaucusState(d["caucus"], d.get("deadline"))

    def _on_caucus_timer_set(self, e: Event, d: dict) -> None:
        caucus = self.caucuses[d["caucus"]]
        caucus.deadline, caucus.warned = d["deadline"], set()

    def _on_caucus_timer_warning(self, e: Event, d: dict) -> None:
        caucus = self.caucuses[d["caucus"]]
        caucus.warned |= {w for w in self.policy.caucus_warnings if w >= d["remaining"]}

    def _on_caucus_closed(self, e: Event, d: dict) -> None:
        self.caucuses.pop(d["caucus"], None)

    _on_caucus_expired = _on_caucus_closed

    def _on_document_shared(self, e: Event, d: dict) -> None:
        self.documents.setdefault(d["space"], []).append(
            {k: d[k] for k in ("document", "name", "mime", "size", "sha256")}
            | {"seq": e.seq, "ts": e.ts, "from": d["participant"]}
        )

    def document_for(self, viewer_id: str, document_id: str) -> dict[str, Any] | None:
        """The document if the viewer stands in the space where it was shared (R9), else None."""
        me = self.participants.get(viewer_id)
        if me is None or not is_media_space(me.space):
            return None
        return next(
            (doc for doc in self.documents.get(me.space, []) if doc["document"] == document_id),
            None,
        )

    # -- the agreement (esign/ makes the PDF; the ledger keeps what happened) --------------
    def _on_agreement_drafted(self, e: Event, d: dict) -> None:
        a = self.agreement
        a.update(
            draft=d["draft"],
            case_type=d["case_type"],
            language=d["language"],
            terms=list(d["terms"]),
        )
        a.setdefault("status", "drafting")

    def _on_agreement_signers(self, e: Event, d: dict) -> None:
        self.agreement["signers"] = list(d["signers"])

    def _on_agreement_frozen(self, e: Event, d: dict) -> None:
        self.agreement.update(
            version=d["version"],
            fingerprint=d["fingerprint"],
            signed=[],
            status="signing",
            declined_by=None,
            frozen_draft=self.agreement.get("draft"),
        )

    def _on_agreement_certified(self, e: Event, d: dict) -> None:
        self.agreement["pdf_sha256"] = d["pdf_sha256"]

    def _on_signature_embedded(self, e: Event, d: dict) -> None:
        a = self.agreement
        a["signed"] = [*a.get("signed", []), d["participant_id"]]
        a["pdf_sha256"] = d["pdf_sha256"]
        if set(a.get("signers", [])) <= set(a["signed"]):
            a["status"] = "complete"

    def _on_signature_declined(self, e: Event, d: dict) -> None:
        self.agreement.update(status="declined", declined_by=d["participant_id"])

    def _on_agreement_sealed(self, e: Event, d: dict) -> None:
        self.agreement.update(status="sealed", pdf_sha256=d["pdf_sha256"])

    def _on_agreement_renewed(self, e: Event, d: dict) -> None:
        self.agreement["pdf_sha256"] = d["pdf_sha256"]

    def agreement_view(self) -> dict[str, Any]:
        a = dict(self.agreement)
        signed = a.get("signed", [])
        a["next"] = (
            next((p for p in a.get("signers", []) if p not in signed), None)
            if a.get("status") == "signing"
            else None
        )
        a["edited_after_freeze"] = bool(a.get("frozen_draft")) and a.get("draft") != a.get(
            "frozen_draft"
        )
        return a

    def agreement_signers(self) -> tuple[list[tuple[ParticipantState, str]], ParticipantState]:
        """Who signs the agreement: each party still in the session with its side (``A`` is
        the applicant, ``B`` the respondent), and the mediator. A party without one of these
        sides is refused (``invalid``): an agreement must not guess who claims from whom."""
        parties = []
        for p in self.participants.values():
            if p.role != "party" or p.space in GONE:
                continue
            side = AGREEMENT_SIDES.get(p.side or "")
            if side is None:
                raise CommandError(
                    "invalid", f"party {p.name!r} has no side A or B; the agreement needs one"
                )
            parties.append((p, side))
        mediator = next((p for p in self.participants.values() if p.role == "mediator"), None)
        if mediator is None or not parties:
            raise CommandError("invalid", "an agreement needs a mediator and at least one party")
        return parties, mediator

    def is_host(self, participant_id: str) -> bool:
        """Whether this participant holds a host role of the session (e.g. the mediator)."""
        p = self.participants.get(participant_id)
        return p is not None and p.role in self.policy.host_roles

    def _on_chat_message(self, e: Event, d: dict) -> None:
        kept = self.chat.setdefault(d["space"], [])
        kept.append({"seq": e.seq, "ts": e.ts, "from": d["participant"], "text": d["text"]})
        del kept[:-CHAT_KEPT]

    def _on_recording_started(self, e: Event, d: dict) -> None:
        self.recording = True
        self.recording_by = e.actor  # shown with the REC indicator on every page
        self._end_run()

    def _on_recording_stopped(self, e: Event, d: dict) -> None:
        self.recording = False
        self._end_run()

    def _end_run(self) -> None:
        """A start, stop, failure or end closes the question and forgets the run's pause."""
        self.recording_ask, self.paused_since = None, None
        self.withdrawn.clear()

    def _on_recording_asked(self, e: Event, d: dict) -> None:
        self.recording_ask = {"id": d["ask"], "by": e.actor, "at": e.ts}
        self.recording_asks = max(self.recording_asks, d["ask"])

    def _on_recording_ask_cancelled(self, e: Event, d: dict) -> None:
        self.recording_ask = None

    def _on_recording_consent_withdrawn(self, e: Event, d: dict) -> None:
        self.withdrawn[d["participant"]] = e.ts

    def _on_recording_paused(self, e: Event, d: dict) -> None:
        self.paused_since = e.ts

    def _on_recording_resumed(self, e: Event, d: dict) -> None:
        self.paused_since = None

    def recording_question(self) -> dict[str, Any] | None:
        """The open question as pages show it: {"id", "by": the asker's name, "at"}."""
        ask = self.recording_ask
        if ask is None:
            return None
        p = self.participants.get(ask["by"])
        return {"id": ask["id"], "by": p.name if p else ask["by"], "at": ask["at"]}

    def _on_recording_ready(self, e: Event, d: dict) -> None:
        self.recorder, self.recorder_reason = "ready", ""

    def _on_recording_failed(self, e: Event, d: dict) -> None:
        # the run ends with the failure: starting again is a new, logged decision
        self.recorder, self.recorder_reason, self.recording = "failed", d.get("reason", ""), False
        self._end_run()

    def _on_recording_segment(self, e: Event, d: dict) -> None:
        self.segments.setdefault(d["participant"], set()).add(d["index"])

    def _recording_by_name(self) -> str | None:
        """Who started the running recording, by name (None while off)."""
        if not self.recording:
            return None
        p = self.participants.get(self.recording_by)
        return p.name if p else self.recording_by.removeprefix("staff:")

    def _on_recording_held(self, e: Event, d: dict) -> None:
        self.legal_hold = {"since": e.ts, "by": e.actor, "reason": d.get("reason", "")}

    def _on_recording_released(self, e: Event, d: dict) -> None:
        self.legal_hold = None

    def recording_missing(self) -> list[ParticipantState]:
        """Who stands in a recorded room without having consented to recording (R8)."""
        policy = self.policy
        if policy.recording != "consent_gated":
            return []
        return [
            p
            for p in self.participants.values()
            if p.connected
            and p.space in policy.recorded_spaces
            and p.role not in policy.observer_roles
            and not p.consents.get("recording")
        ]

    def recording_paused(self) -> bool:
        """Recording is on but paused: the policy pauses it, rather than hold the person, while
        someone in a recorded room has not consented (``late_joiner``), or while someone who
        withdrew their consent during this run is there (``withdrawal``)."""
        if not self.recording:
            return False
        missing = self.recording_missing()
        if not missing:
            return False
        if self.policy.late_joiner == "pause":
            return True
        return self.policy.withdrawal == "pause" and any(p.id in self.withdrawn for p in missing)

    def _on_session_safety_hold(self, e: Event, d: dict) -> None:
        self.held = True

    def _on_session_ended(self, e: Event, d: dict) -> None:
        self.ended, self.ended_reason, self.recording = True, d.get("reason") or "", False
        self._end_run()
        for p in self.participants.values():
            p.connected = False

    # -- questions --------------------------------------------------------------------------
    def hosts(self) -> list[ParticipantState]:
        return [p for p in self.participants.values() if p.role in self.policy.host_roles]

    def waiting_count(self) -> int:
        """People connected and waiting to be admitted (the console's list shows it)."""
        return sum(1 for p in self.participants.values() if p.space == "waiting" and p.connected)

    def had_host(self) -> bool:
        return any(p.arrived for p in self.hosts())

    def connected_hosts(self) -> list[ParticipantState]:
        return [p for p in self.hosts() if p.connected]

    def in_space(self, space: str) -> list[ParticipantState]:
        return [p for p in self.participants.values() if p.space == space]

    def is_staff(self, p: ParticipantState) -> bool:
        return p.role in self.policy.staff_roles

    # -- descriptions -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "case_number": self.case_number,
            "seq": self.seq,
            "head": self.head,
            "ended": self.ended,
            "ended_reason": self.ended_reason,
            "recording": self.recording,
            "recorder": self.recorder,
            "clock": self.clock_view(),
            "warnings": list(self.warnings),
            "held": self.held,
            "host_lost_at": self.host_lost_at,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "participants": [p.to_dict() for p in self.participants.values()],
            "caucuses": [c.to_dict() for c in self.caucuses.values()],
        }

    def view_for(self, viewer_id: str) -> dict[str, Any]:
        """What one participant may see: staff see everyone's state; others see only their space.

        Chat is always limited to the viewer's own space, staff included (R9).
        """
        me = self.participants.get(viewer_id)
        if me is None:
            raise KeyError(viewer_id)
        staff = self.is_staff(me)
        view: dict[str, Any] = {
            "session": {
                "id": self.id,
                "kind": self.kind,
                "title": self.title,
                "case_number": self.case_number,
                "seq": self.seq,
                "ended": self.ended,
                # the safety hold (R10) is told to everyone it moved: "the mediator stepped out"
                "held": self.held,
                "recording": self.recording,
                "recording_paused": self.recording_paused(),
                "recording_by": self._recording_by_name(),
                "recording_rule": self.policy.recording,
                "main_space": self.policy.main_space,
                "time_limit_seconds": self.policy.time_limit_seconds,
                "ended_reason": self.ended_reason if self.ended else None,
                "clock": self.clock_view(),
                # officers' warnings, shown on both terminals (R4); who warned: staff only
                "warnings": [
                    {"seq": w["seq"], "ts": w["ts"], "reason": w["reason"]}
                    | ({"by": w["by"], "note": w["note"]} if staff else {})
                    for w in self.warnings
                ],
            },
            "you": me.to_dict(),
            "space": me.space,
            "chat": list(self.chat.get(me.space, [])) if is_media_space(me.space) else [],
            "documents": list(self.documents.get(me.space, [])) if is_media_space(me.space) else [],
            "agreement": self.agreement_view(),
        }
        if staff:
            view["participants"] = [p.to_dict() for p in self.participants.values()]
            view["caucuses"] = [c.to_dict() for c in self.caucuses.values()]
            view["held"] = self.held
            view["recording_missing"] = [p.id for p in self.recording_missing()]
            # who withdrew their consent during this run, and when (the mediator sees it)
            view["recording_withdrawn"] = [
                {"participant": pid, "at": ts} for pid, ts in self.withdrawn.items()
            ]
            view["recorder"] = self.recorder
        else:
            same = is_media_space(me.space)
            view["participants"] = [
                p.public()
                for p in self.participants.values()
                if p.id == me.id or (same and p.space == me.space)
            ]
            name = me.space[len(CAUCUS_PREFIX) :] if me.space.startswith(CAUCUS_PREFIX) else None
            view["caucuses"] = [self.caucuses[name].to_dict()] if name in self.caucuses else []
        return view
