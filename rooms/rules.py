"""Rules: decide which events a command produces, or refuse it. Pure: no I/O, no clock.

``decide(state, actor, command, now, new_id)`` checks, in this order: the session is not ended,
the actor belongs to it, the policy lets the actor's role issue the command, the command id was
not used before by this actor, and the state allows it. It returns event drafts; the service
appends them and folds them. A refusal is a ``CommandError`` and nothing else happens.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from rooms import commands as c
from rooms.errors import CommandError
from rooms.events import EventDraft, seal
from rooms.policy import STAFF, SYSTEM
from rooms.state import (
    CAUCUS_PREFIX,
    CONSOLE,
    GONE,
    JOINT,
    LEFT,
    WAITING,
    ParticipantState,
    SessionState,
    caucus_space,
    is_media_space,
)

MAX_CAUCUSES = 8
# identity checks only the server records: a one-time code it compared, the counter's check-in
SERVER_METHODS = frozenset({"one_time_code", "check_in"})
MAX_TIMER = 4 * 3600.0
# The recorder's last records arrive after the session ended (the open segments close then).
# The archive timestamp job renews sealed agreements for years after the session ended.
# Review, legal hold and retention of a recording happen after the session ended, for years.
AFTER_END = frozenset(
    {
        "record_segment",
        "record_gap",
        "renew_agreement",
        "record_access",
        "record_export",
        "review_recording",
        "set_legal_hold",
        "record_deletion",
        "desk_event",  # the summary and the rating come after the consultation ended
    }
)


class _Decision:
    """Collects the drafts of one command; the first draft carries the command id."""

    def __init__(
        self, state: SessionState, actor: str, now: float, cid: str | None, new_id
    ) -> None:
        self.state, self.actor, self.now, self.cid = state, actor, now, cid
        self.new_id: Callable[[], str] = new_id
        self.drafts: list[EventDraft] = []

    def emit(self, type_: str, **data) -> None:
        if self.cid is not None and not self.drafts:
            data["cid"] = self.cid
        self.drafts.append(EventDraft(self.now, self.actor, type_, data))

    def move(self, p: ParticipantState, to: str, reason: str) -> None:
        self.emit("participant.moved", participant=p.id, to=to, **{"from": p.space}, reason=reason)


def role_of(state: SessionState, actor: str) -> str:
    if actor == SYSTEM:
        return SYSTEM
    if actor.startswith("staff:") and len(actor) > len("staff:"):
        return STAFF
    person = state.participants.get(actor)
    if person is None:
        raise CommandError("forbidden", f"{actor[:40]!r} is not a participant of this session")
    if person.space in GONE:
        raise CommandError("forbidden", "you are no longer in this session")
    return person.role


def decide(
    state: SessionState,
    actor: str,
    command: c.Command,
    now: float,
    new_id: Callable[[], str],
) -> list[EventDraft]:
    name = c.command_type(command)
    if state.ended and name not in AFTER_END:
        raise CommandError("ended", "this session has ended")
    role = role_of(state, actor)
    if not state.policy.allows(role, name):
        raise CommandError("forbidden", f"a {role} may not {name.replace('_', ' ')} here")
    if command.cid is not None and (actor, command.cid) in state.cids:
        raise CommandError("duplicate", f"command {command.cid!r} was already applied")
    decision = _Decision(state, actor, now, command.cid, new_id)
    _HANDLERS[type(command)](decision, command)
    _pause_or_resume(decision)
    return decision.drafts


# -- helpers --------------------------------------------------------------------------------------
def _target(d: _Decision, pid: str, *, present: bool = True) -> ParticipantState:
    person = d.state.participants.get(pid)
    if person is None:
        raise CommandError("not_found", f"no participant {pid} in this session")
    if present and person.space in GONE:
        raise CommandError("conflict", f"{person.name} is no longer in this session")
    return person


def _self(d: _Decision) -> ParticipantState:
    return d.state.participants[d.actor]


def _caucus(d: _Decision, name: str):
    caucus = d.state.caucuses.get(name)
    if caucus is None:
        raise CommandError("not_found", f"no caucus {name!r}")
    return caucus


def admission_problem(state: SessionState, p: ParticipantState) -> str | None:
    """Why ``p`` may not leave the waiting room yet (R7 consents, R6 identity), or None."""
    if not p.connected:
        return f"{p.name} is not connected"
    for topic in state.policy.admission_consents.get(p.role, ()):
        if not p.consents.get(topic):
            return f"{p.name} has not consented to {topic.replace('_', ' ')}"
    if p.role in state.policy.admission_identity and not p.identity_checked:
        return f"{p.name}'s identity has not been checked"
    return None


def _hold_if_no_host(d: _Decision, reason: str) -> None:
    """R10: with every host gone, each non-staff participant in a room goes to waiting."""
    state = d.state
    if state.policy.host_grace_seconds is None or state.held:
        return
    moving = [
        p
        for p in state.participants.values()
        if not state.is_staff(p) and (p.space == JOINT or p.space.startswith(CAUCUS_PREFIX))
    ]
    d.emit("session.safety_hold", reason=reason, moved=[p.id for p in moving])
    for p in moving:
        d.move(p, WAITING, "safety_hold")


def _last_host_going(d: _Decision, p: ParticipantState) -> bool:
    if p.role not in d.state.policy.host_roles:
        return False
    return not any(h.connected and h.id != p.id for h in d.state.hosts())


# -- connection (system) --------------------------------------------------------------------------
def _connect(d: _Decision, cmd: c.Connect) -> None:
    if cmd.rejoin:
        _rejoin(d, cmd)
        return
    p = _target(d, cmd.participant)
    if p.connected:
        raise CommandError("conflict", f"{p.name} is already connected")
    space = p.space
    if not p.arrived:
        space = p.target_space or d.state.policy.landing[p.role]
        if space.startswith(CAUCUS_PREFIX) and space[len(CAUCUS_PREFIX) :] not in d.state.caucuses:
            space = d.state.policy.main_space  # the caucus closed before they arrived
    d.emit("participant.connected", participant=p.id, space=space)


def _rejoin(d: _Decision, cmd: c.Connect) -> None:
    """A participant who left opened their link again: back to where their role lands (a party
    waits to be admitted again, a host is back in the session at once). Removal is final."""
    p = _target(d, cmd.participant, present=False)
    if p.space != LEFT:
        raise CommandError("conflict", f"{p.name} has not left the session")
    d.emit("participant.rejoined", participant=p.id, space=d.state.policy.landing[p.role])


def _disconnect(d: _Decision, cmd: c.Disconnect) -> None:
    p = _target(d, cmd.participant)
    if not p.connected:
        raise CommandError("conflict", f"{p.name} is not connected")
    last_host = _last_host_going(d, p)
    d.emit("participant.disconnected", participant=p.id, reason=cmd.reason)
    if cmd.reason == "left" and not d.state.is_staff(p) and p.space != WAITING:
        d.move(p, WAITING, "left_call")  # coming back means being admitted again
    if cmd.reason == "replaced" and not d.state.is_staff(p) and is_media_space(p.space):
        d.move(p, WAITING, "new_device")  # the same link on another phone: admitted again
    if last_host and cmd.reason == "left":
        _hold_if_no_host(d, "host_left")


def _tick(d: _Decision, cmd: c.Tick) -> None:
    state, now = d.state, d.now
    for caucus in list(state.caucuses.values()):
        if caucus.deadline is None:
            continue
        remaining = caucus.deadline - now
        if remaining <= 0:
            d.emit("caucus.expired", caucus=caucus.name)
            for p in state.in_space(caucus_space(caucus.name)):
                d.move(p, JOINT, "timer_expired")
            continue
        due = [w for w in state.policy.caucus_warnings if w >= remaining and w not in caucus.warned]
        if due:
            d.emit("caucus.timer_warning", caucus=caucus.name, remaining=min(due))
    grace = state.policy.host_grace_seconds
    if (
        grace is not None
        and state.host_lost_at is not None
        and not state.held
        and now - state.host_lost_at >= grace
    ):
        _hold_if_no_host(d, "host_connection_lost")
    _clock(d)


def _clock(d: _Decision) -> None:
    """R17: warnings before the end, the end at zero, and the end of a pause (an outage, a
    recorder failure) that outlasts the grace. The clock itself is folded from the events'
    times (rooms/state.py), so the time a terminal was away is never counted."""
    state, now, policy = d.state, d.now, d.state.policy
    remaining = state.remaining(now)
    if remaining is None or not state.clock_started:
        return
    if state.clock_since is not None:
        if remaining <= 0:
            d.emit("session.ended", reason="time_up")
            return
        due = [w for w in policy.time_warnings if w >= remaining and w not in state.time_warned]
        if due:
            d.emit("visit.time_warning", remaining=min(due))
    elif state.outage_since is not None and now - state.outage_since >= policy.outage_grace_seconds:
        d.emit("session.ended", reason="outage", remaining=round(remaining))


# -- admission ------------------------------------------------------------------------------------
def _admit(d: _Decision, cmd: c.Admit) -> None:
    p = _target(d, cmd.participant)
    if p.space != WAITING:
        raise CommandError("conflict", f"{p.name} is not in the waiting room")
    problem = admission_problem(d.state, p)
    if problem:
        raise CommandError("conflict", problem)
    _live_needs_recorder(d.state)
    d.emit("participant.admitted", participant=p.id, space=d.state.policy.main_space)


def _movable(d: _Decision, p: ParticipantState, what: str) -> None:
    if d.state.is_staff(p):
        raise CommandError("forbidden", f"staff members cannot be {what} by others")


def _return_to_waiting(d: _Decision, cmd: c.ReturnToWaiting) -> None:
    p = _target(d, cmd.participant)
    _movable(d, p, "sent to the waiting room")
    if not is_media_space(p.space):
        raise CommandError("conflict", f"{p.name} is not in a room")
    d.move(p, WAITING, "returned_to_waiting")


def _leave(d: _Decision, cmd: c.Leave) -> None:
    if d.actor == SYSTEM:
        if cmd.participant is None:
            raise CommandError("invalid", "`participant` is required - at `$.participant`")
        p = _target(d, cmd.participant)
    else:
        if cmd.participant not in (None, d.actor):
            raise CommandError("forbidden", "you can only leave for yourself")
        p = _self(d)
    last_host = p.connected and _last_host_going(d, p)
    d.emit("participant.left", participant=p.id)
    if last_host:
        _hold_if_no_host(d, "host_left")


# -- caucus ---------------------------------------------------------------------------------------
def _create_caucus(d: _Decision, cmd: c.CreateCaucus) -> None:
    if cmd.caucus in d.state.caucuses:
        raise CommandError("conflict", f"caucus {cmd.caucus!r} already exists")
    if len(d.state.caucuses) >= MAX_CAUCUSES:
        raise CommandError("conflict", f"at most {MAX_CAUCUSES} caucuses at a time")
    deadline = d.now + cmd.seconds if cmd.seconds else None
    d.emit("caucus.created", caucus=cmd.caucus, deadline=deadline)


def _close_caucus(d: _Decision, cmd: c.CloseCaucus) -> None:
    caucus = _caucus(d, cmd.caucus)
    for p in d.state.in_space(caucus_space(caucus.name)):
        d.move(p, JOINT, "caucus_closed")
    d.emit("caucus.closed", caucus=caucus.name)


def _move_to_caucus(d: _Decision, cmd: c.MoveToCaucus) -> None:
    caucus = _caucus(d, cmd.caucus)
    space = caucus_space(caucus.name)
    state = d.state
    if cmd.participants is not None:
        if len(set(cmd.participants)) != len(cmd.participants):
            raise CommandError("invalid", "a participant is named twice - at `$.participants`")
        people = [_target(d, pid) for pid in cmd.participants]
        for p in people:
            _movable(d, p, "moved")
            if p.space == WAITING and (problem := admission_problem(state, p)):
                raise CommandError("conflict", problem)
            if not (p.space == WAITING or is_media_space(p.space)):
                raise CommandError("conflict", f"{p.name} cannot be moved from {p.space}")
    else:
        side = [
            p
            for p in state.participants.values()
            if p.side == cmd.side and p.space not in GONE and not state.is_staff(p)
        ]
        if not side:
            raise CommandError("not_found", f"nobody on side {cmd.side!r}")
        people = [
            p
            for p in side
            if is_media_space(p.space) or (p.space == WAITING and not admission_problem(state, p))
        ]
    people = [p for p in people if p.space != space]
    if not people:
        raise CommandError("conflict", f"nobody to move into caucus {caucus.name!r}")
    for p in people:
        d.move(p, space, "caucus")


def _visit_caucus(d: _Decision, cmd: c.VisitCaucus) -> None:
    caucus = _caucus(d, cmd.caucus)
    me = _self(d)
    if me.space == caucus_space(caucus.name):
        raise CommandError("conflict", "you are already in this caucus")
    d.move(me, caucus_space(caucus.name), "visit")


def _return_to_joint(d: _Decision, cmd: c.ReturnToJoint) -> None:
    me = _self(d)
    if me.space == JOINT:
        raise CommandError("conflict", "you are already in the joint room")
    d.move(me, JOINT, "visit")


def _set_caucus_timer(d: _Decision, cmd: c.SetCaucusTimer) -> None:
    caucus = _caucus(d, cmd.caucus)
    d.emit("caucus.timer_set", caucus=caucus.name, deadline=d.now + cmd.seconds)


def _extend_caucus_timer(d: _Decision, cmd: c.ExtendCaucusTimer) -> None:
    caucus = _caucus(d, cmd.caucus)
    if caucus.deadline is None:
        raise CommandError("conflict", f"caucus {caucus.name!r} has no timer running")
    deadline = max(caucus.deadline, d.now) + cmd.seconds
    if deadline - d.now > MAX_TIMER:
        raise CommandError("conflict", "a caucus timer cannot run longer than 4 hours")
    d.emit("caucus.timer_set", caucus=caucus.name, deadline=deadline)


def _ask_for_mediator(d: _Decision, cmd: c.AskForMediator) -> None:
    me = _self(d)
    if not (me.space == WAITING or me.space.startswith(CAUCUS_PREFIX)):
        raise CommandError("conflict", "ask from the waiting room or a caucus")
    if me.asked_at is not None:
        raise CommandError("conflict", "you have already asked; the mediator has been told")
    d.emit("participant.asked_for_mediator", participant=me.id, space=me.space)


def _call_duty_lawyer(d: _Decision, cmd: c.CallDutyLawyer) -> None:
    state = d.state
    if cmd.space == JOINT:
        space = JOINT
    elif cmd.space in state.caucuses:
        space = caucus_space(cmd.space)
    else:
        raise CommandError("not_found", f"no space {cmd.space[:40]!r} (use 'joint' or a caucus)")
    _add_person(d, cmd.name, "duty_lawyer", space)


def _add_person(d: _Decision, name: str, role: str, space: str) -> None:
    """A person the session's staff brings in (no side), if the session has room."""
    state = d.state
    if (
        sum(p.space not in GONE for p in state.participants.values())
        >= state.policy.max_participants
    ):
        raise CommandError("conflict", "the session is full")
    person = {"id": d.new_id(), "name": name, "role": role, "side": None}
    d.emit("participant.added", participant=person, space=space)


# -- moderation -----------------------------------------------------------------------------------
def _mute(d: _Decision, cmd: c.Mute) -> None:
    p = _target(d, cmd.participant)
    if p.muted:
        raise CommandError("conflict", f"{p.name} is already muted")
    d.emit("participant.muted", participant=p.id)


def _unmute(d: _Decision, cmd: c.Unmute) -> None:
    p = _target(d, cmd.participant)
    if not p.muted:
        raise CommandError("conflict", f"{p.name} is not muted")
    d.emit("participant.unmuted", participant=p.id)


def _remove(d: _Decision, cmd: c.Remove) -> None:
    p = _target(d, cmd.participant)
    if p.id == d.actor:
        raise CommandError("conflict", "use leave to leave the session yourself")
    if p.role in d.state.policy.host_roles and not d.actor.startswith("staff:"):
        raise CommandError("forbidden", "a host can only be removed by an administrator")
    last_host = p.connected and _last_host_going(d, p)
    d.emit("participant.removed", participant=p.id, reason=cmd.reason)
    if last_host:
        _hold_if_no_host(d, "host_removed")


def _end_session(d: _Decision, cmd: c.EndSession) -> None:
    d.emit("session.ended", reason=cmd.reason)


def _reissue_invitation(d: _Decision, cmd: c.ReissueInvitation) -> None:
    p = _target(d, cmd.participant)
    if cmd.name is None:
        d.emit("participant.invitation_reissued", participant=p.id, gen=p.invitation_gen + 1)
        return
    if not d.actor.startswith(STAFF + ":"):  # a host may revoke a link, not rename a person
        raise CommandError("forbidden", "only staff may rename a participant's place")
    d.emit(
        "participant.invitation_reissued", participant=p.id, gen=p.invitation_gen + 1, name=cmd.name
    )


def _mark_identity_checked(d: _Decision, cmd: c.MarkIdentityChecked) -> None:
    # Only the server, having compared a one-time code, records that method; people attest
    # what they saw (video, document, in person).
    if (d.actor == SYSTEM) != (cmd.method in SERVER_METHODS):
        raise CommandError("forbidden", f"{cmd.method} is recorded by the server itself")
    p = _target(d, cmd.participant)
    if p.identity_checked:
        raise CommandError("conflict", f"{p.name}'s identity is already checked")
    extra = {"detail": cmd.detail} if cmd.detail else {}
    d.emit("participant.identity_checked", participant=p.id, method=cmd.method, **extra)


def _record_consent(d: _Decision, cmd: c.RecordConsent) -> None:
    me, state = _self(d), d.state
    if cmd.topic == "recording" and state.policy.recording == "forbidden":
        raise CommandError("conflict", "this session is never recorded")
    if me.consents.get(cmd.topic) == cmd.given:
        raise CommandError("conflict", "this answer is already recorded")
    extra = {}
    if cmd.topic == "recording" and state.recording_ask is not None:
        extra["ask"] = state.recording_ask["id"]  # the answer to this question (R15)
    d.emit("participant.consent", participant=me.id, topic=cmd.topic, given=cmd.given, **extra)
    if (
        cmd.topic == "recording"
        and not cmd.given
        and state.recording
        and me.consents.get("recording") is True
    ):  # a withdrawal during the run: the policy pauses the recording or holds the person
        d.emit("recording.consent_withdrawn", participant=me.id, effect=state.policy.withdrawal)


def _ask_recording(d: _Decision, cmd: c.AskRecording) -> None:
    """The recording question (R8) in the ledger: who asked, when; each answer names it."""
    state = d.state
    if state.policy.recording != "consent_gated":
        raise CommandError("conflict", "this session does not ask for recording consent")
    if cmd.action == "cancel":
        if state.recording_ask is None:
            raise CommandError("conflict", "no recording question is open")
        d.emit("recording.ask_cancelled", ask=state.recording_ask["id"])
        return
    if state.recording:
        raise CommandError("conflict", "recording is already on")
    if not _self(d).consents.get("recording"):
        raise CommandError("conflict", "record your own consent to recording first")
    d.emit("recording.asked", ask=state.recording_asks + 1)


# What can change whether a running consent-gated recording is paused (besides any change while
# it is paused): someone coming into a recorded room, or a consent given or withdrawn.
_PAUSE_EVENTS = frozenset(
    {
        "participant.connected",
        "participant.rejoined",
        "participant.admitted",
        "participant.moved",
        "participant.consent",
        "recording.consent_withdrawn",
    }
)


def _pause_or_resume(d: _Decision) -> None:
    """A running recording that this command pauses or resumes says so in the ledger: the gap
    between ``recording.paused`` (why, who is missing) and ``recording.resumed`` (its length).
    Decided on the state the drafts would make (a copy: rules stay pure)."""
    state = d.state
    if not d.drafts or not state.recording or state.policy.recording != "consent_gated":
        return
    before = state.recording_paused()
    if not before and not any(x.type in _PAUSE_EVENTS for x in d.drafts):
        return
    after = copy.deepcopy(state, {id(state.policy): state.policy})
    try:
        for draft in d.drafts:
            after.apply(seal(after.id, after.seq + 1, after.head, draft))
    except Exception:  # noqa: BLE001 - a fold bug is the service's to report (it rebuilds)
        return
    if not after.recording:
        return  # stopped, failed or ended: that event closes the gap
    paused = after.recording_paused()
    if paused and not before:
        missing = after.recording_missing()
        withdrawn = any(p.id in after.withdrawn for p in missing)
        d.emit(
            "recording.paused",
            reason="consent_withdrawn" if withdrawn else "no_consent",
            participants=[p.id for p in missing],
        )
    elif before and not paused:
        since = state.paused_since
        extra = {"paused_at": since, "seconds": round(d.now - since, 3)} if since else {}
        d.emit("recording.resumed", **extra)


def _warn(d: _Decision, cmd: c.Warn) -> None:
    state = d.state
    if not any(
        p.connected and p.space == state.policy.main_space for p in state.participants.values()
    ):
        raise CommandError("conflict", "nobody is in the visit to warn")
    d.emit("visit.warned", reason=cmd.reason, note=cmd.note)


def _add_observer(d: _Decision, cmd: c.AddObserver) -> None:
    """R2 twice over: a privileged policy does not permit this command and has no observer
    role; should either ever change, the session still refuses here."""
    state = d.state
    if state.policy.privileged or cmd.role not in state.policy.observer_roles:
        raise CommandError("forbidden", "nobody may observe this session")
    _add_person(d, cmd.name, cmd.role, CONSOLE)


def _desk_event(d: _Decision, cmd: c.DeskEvent) -> None:
    """The desk's step, recorded as it happened (the desk decided it; rooms only chains it)."""
    d.emit(
        f"desk.{cmd.step}",
        ticket=cmd.ticket,
        **{k: v for k, v in cmd.detail.items() if k not in ("ticket", "cid")},
    )


def _set_time_limit(d: _Decision, cmd: c.SetTimeLimit) -> None:
    state = d.state
    if state.time_limit is None:
        raise CommandError("conflict", "this session has no clock")
    if cmd.seconds <= state.time_limit - state.remaining(d.now):
        raise CommandError("conflict", "the visit has already used that much time")
    if cmd.seconds > (state.policy.time_limit_seconds or 0):
        raise CommandError(
            "invalid", f"at most {state.policy.time_limit_seconds} seconds - at `$.seconds`"
        )
    d.emit("visit.time_limit", seconds=cmd.seconds)


def _live_needs_recorder(state: SessionState) -> None:
    """R1: a session whose recording is required does not go live before the recorder reported
    ready and the recording runs."""
    if state.policy.recording != "required":
        return
    if state.recorder != "ready":
        raise CommandError("conflict", "the recorder has not reported ready")
    if not state.recording:
        raise CommandError("conflict", "recording is not on")


def _start_recording(d: _Decision, cmd: c.StartRecording) -> None:
    state = d.state
    if state.policy.recording == "forbidden":
        raise CommandError("conflict", "this session is never recorded")
    if state.recording:
        raise CommandError("conflict", "recording is already on")
    if state.policy.recording == "required" and state.recorder != "ready":
        raise CommandError("conflict", "the recorder has not reported ready")
    if state.policy.recording == "consent_gated":
        me = state.participants.get(d.actor)
        if me is not None and not me.consents.get("recording"):
            raise CommandError("conflict", "record your own consent to recording first")
        missing = [p.name for p in state.recording_missing()]
        if missing:
            raise CommandError("conflict", "no recording consent from: " + ", ".join(missing))
    d.emit("recording.started")


def _stop_recording(d: _Decision, cmd: c.StopRecording) -> None:
    if d.state.policy.recording == "required":
        raise CommandError("conflict", "recording is required for this session")
    if not d.state.recording:
        raise CommandError("conflict", "recording is not on")
    d.emit("recording.stopped")


def _report_recorder(d: _Decision, cmd: c.ReportRecorder) -> None:
    state = d.state
    if cmd.status == "ready":
        if state.recorder == "ready":
            raise CommandError("conflict", "the recorder already reported ready")
        d.emit("recording.ready")
        return
    if state.recorder == "failed" and not state.recording:
        raise CommandError("conflict", "the recorder failure is already recorded")
    d.emit("recording.failed", reason=cmd.reason or "unknown")
    if state.policy.recording == "required":  # R1: no recorder, no visit: hold it
        for p in state.participants.values():
            if p.space in state.policy.recorded_spaces and not state.is_staff(p):
                d.move(p, WAITING, "recorder_failed")


def _record_segment(d: _Decision, cmd: c.RecordSegment) -> None:
    state = d.state
    p = _target(d, cmd.participant, present=False)
    if cmd.space not in state.policy.recorded_spaces:
        raise CommandError("conflict", f"{cmd.space[:40]!r} is never recorded")
    if cmd.index in state.segments.get(p.id, ()):
        raise CommandError("conflict", f"segment {cmd.index} of {p.name} is already recorded")
    if cmd.media_end < cmd.media_start or cmd.wall_end < cmd.wall_start:
        raise CommandError("invalid", "a segment cannot end before it starts")
    d.emit("recording.segment", **_fields(cmd))


def _record_gap(d: _Decision, cmd: c.RecordGap) -> None:
    if cmd.participant is not None:
        _target(d, cmd.participant, present=False)
    if cmd.wall_end < cmd.wall_start:
        raise CommandError("invalid", "a gap cannot end before it starts")
    d.emit("recording.gap", **_fields(cmd))


def _record_access(d: _Decision, cmd: c.RecordAccess) -> None:
    if not d.state.segments:
        raise CommandError("not_found", "this session has no recording")
    if not cmd.reason.strip():
        raise CommandError("invalid", "state the reason - at `$.reason`")
    d.emit("recording.accessed", **_fields(cmd))


def _record_export(d: _Decision, cmd: c.RecordExport) -> None:
    if not d.state.segments:
        raise CommandError("not_found", "this session has no recording")
    d.emit("recording.exported", **_fields(cmd))


def _review_recording(d: _Decision, cmd: c.ReviewRecording) -> None:
    if not d.state.segments:
        raise CommandError("not_found", "this visit has no recording to review")
    if not cmd.note.strip():
        raise CommandError("invalid", "write a note - at `$.note`")
    d.emit("recording.reviewed", **_fields(cmd))


def _set_legal_hold(d: _Decision, cmd: c.SetLegalHold) -> None:
    if not cmd.reason.strip():
        raise CommandError("invalid", "state the reason - at `$.reason`")
    if cmd.hold == (d.state.legal_hold is not None):
        raise CommandError("conflict", "the legal hold is already " + ("on" if cmd.hold else "off"))
    d.emit("recording.held" if cmd.hold else "recording.released", reason=cmd.reason)


def _record_deletion(d: _Decision, cmd: c.RecordDeletion) -> None:
    if d.state.legal_hold is not None:
        raise CommandError("conflict", "the recording is under legal hold")
    d.emit("recording.deleted", **_fields(cmd))


def _fields(cmd: c.Command) -> dict:
    """A recorder report's fields as its event's data (the tag and command id aside)."""
    return {k: v for k, v in c.encode_command(cmd).items() if k not in ("type", "cid")}


def _share_document(d: _Decision, cmd: c.ShareDocument) -> None:
    me = _self(d)
    if not is_media_space(me.space):
        raise CommandError("conflict", "documents can be shared once you are in a room")
    if any(cmd.document == doc["document"] for docs in d.state.documents.values() for doc in docs):
        raise CommandError("conflict", f"document {cmd.document} was already shared")
    d.emit(
        "document.shared",
        participant=me.id,
        space=me.space,
        document=cmd.document,
        name=cmd.name,
        mime=cmd.mime,
        size=cmd.size,
        sha256=cmd.sha256,
    )


def _draft_agreement(d: _Decision, cmd: c.DraftAgreement) -> None:
    if d.state.agreement.get("status") == "sealed":
        raise CommandError("conflict", "the agreement is sealed; it can no longer change")
    d.emit(
        "agreement.drafted",
        draft=d.state.agreement.get("draft", 0) + 1,
        case_type=cmd.case_type,
        language=cmd.language,
        terms=list(cmd.terms),
    )


def _esign_events(d: _Decision, records, allowed: set[str]) -> None:
    for record in records:
        if record.type not in allowed:
            raise CommandError("invalid", f"{record.type} does not belong to this step")
        d.emit(record.type, **record.data)


def _freeze_agreement(d: _Decision, cmd: c.FreezeAgreement) -> None:
    agreement = d.state.agreement
    if not agreement.get("draft"):
        raise CommandError("conflict", "there is no draft to freeze")
    if agreement.get("status") == "sealed":
        raise CommandError("conflict", "the agreement is already sealed")
    for pid in cmd.signers:
        _target(d, pid, present=False)
    first = "agreement.superseded" if agreement.get("version") else "agreement.frozen"
    if cmd.events[0].type != first:
        raise CommandError("conflict", f"this freeze must start with {first}")
    d.emit("agreement.signers", signers=list(cmd.signers))
    _esign_events(
        d, cmd.events, {"agreement.superseded", "agreement.frozen", "agreement.certified"}
    )


def _sign_agreement(d: _Decision, cmd: c.SignAgreement) -> None:
    if d.state.agreement.get("status") not in ("signing", "complete"):
        raise CommandError("conflict", "nothing is being signed now")
    if d.actor == SYSTEM:  # the server notes abandoned steps (a phone gone, a request expired)
        _esign_events(d, cmd.events, {"signature.aborted"})
        return
    if d.actor not in d.state.agreement.get("signers", ()):
        raise CommandError("forbidden", "you are not a signer of this agreement")
    for record in cmd.events:
        if record.data.get("participant_id") != d.actor:
            raise CommandError("forbidden", "a signer records only their own steps")
    _esign_events(
        d,
        cmd.events,
        {
            "cert.issued",
            "signature.prepared",
            "signature.embedded",
            "signature.aborted",
            "signature.declined",
        },
    )


def _seal_agreement(d: _Decision, cmd: c.SealAgreement) -> None:
    if d.state.agreement.get("status") != "complete":
        raise CommandError("conflict", "every signer must sign before the seal")
    _esign_events(d, cmd.events, {"agreement.sealed"})


def _renew_agreement(d: _Decision, cmd: c.RenewAgreement) -> None:
    if d.state.agreement.get("status") != "sealed":
        raise CommandError("conflict", "only a sealed agreement gets archive timestamps")
    for record in cmd.events:
        if record.data.get("previous_pdf_sha256") != d.state.agreement.get("pdf_sha256"):
            raise CommandError("conflict", "the renewal is not based on the recorded revision")
    _esign_events(d, cmd.events, {"agreement.renewed"})


def _chat(d: _Decision, cmd: c.Chat) -> None:
    me = _self(d)
    if not is_media_space(me.space):
        raise CommandError("conflict", "chat is available once you are in a room")
    if not cmd.text.strip():
        raise CommandError("invalid", "empty message - at `$.text`")
    d.emit("chat.message", participant=me.id, space=me.space, text=cmd.text)


_HANDLERS = {
    c.Connect: _connect,
    c.Disconnect: _disconnect,
    c.Tick: _tick,
    c.Admit: _admit,
    c.ReturnToWaiting: _return_to_waiting,
    c.Leave: _leave,
    c.CreateCaucus: _create_caucus,
    c.CloseCaucus: _close_caucus,
    c.MoveToCaucus: _move_to_caucus,
    c.VisitCaucus: _visit_caucus,
    c.ReturnToJoint: _return_to_joint,
    c.SetCaucusTimer: _set_caucus_timer,
    c.ExtendCaucusTimer: _extend_caucus_timer,
    c.AskForMediator: _ask_for_mediator,
    c.CallDutyLawyer: _call_duty_lawyer,
    c.Mute: _mute,
    c.Unmute: _unmute,
    c.Remove: _remove,
    c.EndSession: _end_session,
    c.ReissueInvitation: _reissue_invitation,
    c.MarkIdentityChecked: _mark_identity_checked,
    c.RecordConsent: _record_consent,
    c.AskRecording: _ask_recording,
    c.StartRecording: _start_recording,
    c.StopRecording: _stop_recording,
    c.Warn: _warn,
    c.AddObserver: _add_observer,
    c.SetTimeLimit: _set_time_limit,
    c.DeskEvent: _desk_event,
    c.ReportRecorder: _report_recorder,
    c.RecordSegment: _record_segment,
    c.RecordGap: _record_gap,
    c.RecordAccess: _record_access,
    c.RecordExport: _record_export,
    c.ReviewRecording: _review_recording,
    c.SetLegalHold: _set_legal_hold,
    c.RecordDeletion: _record_deletion,
    c.Chat: _chat,
    c.ShareDocument: _share_document,
    c.DraftAgreement: _draft_agreement,
    c.FreezeAgreement: _freeze_agreement,
    c.SignAgreement: _sign_agreement,
    c.SealAgreement: _seal_agreement,
    c.RenewAgreement: _renew_agreement,
}
assert set(_HANDLERS) == set(c.COMMAND_TYPES.values()), "every command needs a rule"
