"""Commands: typed, size-limited intents, decoded from untrusted JSON in one place.

Every command is a msgspec struct tagged by ``type``; unknown fields, wrong types, oversize
strings and lists are refused by ``decode_command`` with ``CommandError("invalid")`` naming the
field. Schema only: who may issue a command, and whether the session's state allows it, is
decided in ``rooms.rules``. ``cid`` is the client's command id, used to refuse replays.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from rooms.errors import CommandError

PARTICIPANT_ID = r"^p-[0-9a-f]{8}$"
CAUCUS_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"

ParticipantId = Annotated[str, msgspec.Meta(pattern=PARTICIPANT_ID)]
CaucusName = Annotated[str, msgspec.Meta(pattern=CAUCUS_NAME)]
CommandId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Side = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
Reason = Annotated[str, msgspec.Meta(max_length=200)]
ChatText = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
TimerSeconds = Annotated[int, msgspec.Meta(ge=10, le=4 * 3600)]
MAX_MOVE = 16


class _Command(
    msgspec.Struct, tag_field="type", forbid_unknown_fields=True, frozen=True, kw_only=True
):
    cid: CommandId | None = None


# -- issued by the system on a participant's behalf ---------------------------------------------
class Connect(_Command, tag="connect"):
    """The participant's media is up. With ``rejoin``: a participant who had left opened their
    link again (no media yet); they come back to their landing space (parties: the waiting
    room; hosts: the main room)."""

    participant: ParticipantId
    rejoin: bool = False


class Disconnect(_Command, tag="disconnect"):
    participant: ParticipantId
    # "replaced": the same link was taken over on another device (parties wait to be readmitted)
    reason: Literal["left", "transport_lost", "replaced"]


class Tick(_Command, tag="tick"):
    """The system clock: caucus timers, warnings, the safety hold after the grace period."""


# -- admission and spaces -----------------------------------------------------------------------
class Admit(_Command, tag="admit"):
    participant: ParticipantId


class ReturnToWaiting(_Command, tag="return_to_waiting"):
    participant: ParticipantId


class Leave(_Command, tag="leave"):
    """Leave; a participant may omit ``participant`` (it means themselves). Their link brings
    them back later (``connect`` with ``rejoin``); only ``remove`` is for good."""

    participant: ParticipantId | None = None


class CreateCaucus(_Command, tag="create_caucus"):
    caucus: CaucusName
    seconds: TimerSeconds | None = None


class CloseCaucus(_Command, tag="close_caucus"):
    """Bring everybody in the caucus back to the joint room and close it."""

    caucus: CaucusName


class MoveToCaucus(_Command, tag="move_to_caucus"):
    """Move named participants, or a whole side (with its counsel and support), to a caucus."""

    caucus: CaucusName
    participants: Annotated[list[ParticipantId], msgspec.Meta(max_length=MAX_MOVE)] | None = None
    side: Side | None = None


class VisitCaucus(_Command, tag="visit_caucus"):
    """The actor (a host) goes into a caucus; they stand in one space at a time."""

    caucus: CaucusName


class ReturnToJoint(_Command, tag="return_to_joint"):
    """The actor (a host) goes back to the joint room."""


class SetCaucusTimer(_Command, tag="set_caucus_timer"):
    caucus: CaucusName
    seconds: TimerSeconds


class ExtendCaucusTimer(_Command, tag="extend_caucus_timer"):
    caucus: CaucusName
    seconds: TimerSeconds


class AskForMediator(_Command, tag="ask_for_mediator"):
    """A party in a caucus or the waiting room asks the mediator to come."""


class CallDutyLawyer(_Command, tag="call_duty_lawyer"):
    """Add a duty lawyer who lands, on first connect, in ``space`` ("joint" or a caucus name)."""

    name: Name
    space: Annotated[str, msgspec.Meta(max_length=40)] = "joint"


# -- moderation -------------------------------------------------------------------------------
class Mute(_Command, tag="mute"):
    participant: ParticipantId


class Unmute(_Command, tag="unmute"):
    participant: ParticipantId


class Remove(_Command, tag="remove"):
    participant: ParticipantId
    reason: Reason = ""


class EndSession(_Command, tag="end_session"):
    reason: Reason = ""


class ReissueInvitation(_Command, tag="reissue_invitation"):
    """Revoke a participant's invitation link; links issued before this event stop working.
    ``name`` (a staff actor only) renames the place: the desk hands a lawyer's place to a
    colleague, whose name the citizen then sees (docs/desk.md)."""

    participant: ParticipantId
    name: Name | None = None


class MarkIdentityChecked(_Command, tag="mark_identity_checked"):
    """``one_time_code`` and ``check_in`` (the visitors were checked at the bureau counter,
    R6; ``detail`` names who, how and by whom) are recorded only by the server."""

    participant: ParticipantId
    method: Literal["video", "document", "in_person", "one_time_code", "check_in"] = "video"
    detail: Reason = ""


class RecordConsent(_Command, tag="record_consent"):
    """The actor's own consent (or refusal) on one topic."""

    topic: Literal["online_mediation", "session_rules", "recording"]
    given: bool


class AskRecording(_Command, tag="ask_recording"):
    """Whoever may start the recording asks everyone present for their consent (``ask``, the
    actor's own consent first), or withdraws the open question (``cancel``). Server-only: the
    page sends socket.io ``recording`` (signaling checks that a recorder runs, then tells every
    page). Each answer is a ``record_consent``, which names the open question."""

    action: Literal["ask", "cancel"]


class StartRecording(_Command, tag="start_recording"):
    pass


class StopRecording(_Command, tag="stop_recording"):
    pass


# -- the live visit (R4, R17) ---------------------------------------------------------------------
WarningReason = Literal["language", "behaviour", "third_person", "device", "other"]


class Warn(_Command, tag="warn"):
    """An officer's warning, shown on both terminals with its reason (R4)."""

    reason: WarningReason
    note: Reason = ""


class AddObserver(_Command, tag="add_observer"):
    """A staff member listens in from the console: a hidden participant that never publishes
    and is never shown to the parties; impossible in a privileged session (R2)."""

    name: Name
    role: Literal["officer", "supervisor"]


class SetTimeLimit(_Command, tag="set_time_limit"):
    """The visit's length from its booking (R5, R17); never below the time already used."""

    seconds: Annotated[int, msgspec.Meta(ge=60, le=4 * 3600)]


# -- the duty-lawyer desk (server-only: docs/desk.md) ---------------------------------------------
DeskStep = Literal[
    "queued",
    "offered",
    "accepted",
    "transferred",
    "summary",
    "rating",
    "released",
    "withdrawn",
    "interpreter_invited",  # the lawyer sent the link of the interpreter the citizen asked for
]
DeskValue = Annotated[str, msgspec.Meta(max_length=200)] | int | float | bool | None


class DeskEvent(_Command, tag="desk_event"):
    """A step of the desk's ticket for this session (queued, offered, accepted, transferred,
    summary, rating; for a mediator's call also released or withdrawn) in the session's own
    ledger; the desk's database keeps the queue itself (docs/desk.md)."""

    step: DeskStep
    ticket: Annotated[int, msgspec.Meta(ge=1, le=2**53)]
    detail: Annotated[
        dict[Annotated[str, msgspec.Meta(max_length=32)], DeskValue], msgspec.Meta(max_length=12)
    ] = {}


# -- the recorder (server-only: the recorder reports, rooms checks and records) -------------------
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
MediaKind = Literal["audio", "video"]
Kinds = Annotated[list[MediaKind], msgspec.Meta(min_length=1, max_length=2)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]


class ReportRecorder(_Command, tag="report_recorder"):
    """The recorder is ready to write this session, or failed (R1: no recorder, no visit)."""

    status: Literal["ready", "failed"]
    reason: Reason = ""


class RecordSegment(_Command, tag="record_segment"):
    """One closed, encrypted, fsync'd segment file of one participant (docs/recording.md)."""

    participant: ParticipantId
    space: Annotated[str, msgspec.Meta(max_length=40)]
    kinds: Kinds
    index: Annotated[int, msgspec.Meta(ge=0)]
    file: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,120}$")]
    key_id: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{16}$")]
    media_start: Seconds
    media_end: Seconds
    wall_start: Seconds
    wall_end: Seconds
    video_frames: Annotated[int, msgspec.Meta(ge=0)]
    audio_frames: Annotated[int, msgspec.Meta(ge=0)]
    bytes: Annotated[int, msgspec.Meta(ge=1)]
    sha256: Sha256  # of the stored (encrypted) file
    plain_sha256: Sha256  # of the WebM inside


class RecordGap(_Command, tag="record_gap"):
    """Media the recording does not hold, and why (queue overflow, restart, failure)."""

    reason: Literal["queue_full", "node_restart", "recorder_failed", "write_failed"]
    wall_start: Seconds
    wall_end: Seconds
    participant: ParticipantId | None = None
    kinds: Kinds | None = None
    frames: Annotated[int, msgspec.Meta(ge=0)] = 0


# -- recordings after the fact (server-only: recording/review.py checks the staff account first) --
SegmentFile = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,120}$")]
SegmentFiles = Annotated[list[SegmentFile], msgspec.Meta(min_length=1, max_length=5000)]
StatedReason = Annotated[str, msgspec.Meta(min_length=3, max_length=200)]


class RecordAccess(_Command, tag="record_access"):
    """A staff member played or downloaded segments, for a stated reason (R15)."""

    action: Literal["play", "download", "export"]  # export: the composite file (record_export)
    files: SegmentFiles
    reason: StatedReason
    grant: Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{1,32}$")]  # what allowed it


class RecordExport(_Command, tag="record_export"):
    """A composite export (grid + mixed audio) was made from these segments and sealed like them;
    the actor is the staff user who asked for it (recording/export.py)."""

    file: SegmentFile
    sources: SegmentFiles
    key_id: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{16}$")]
    bytes: Annotated[int, msgspec.Meta(ge=1)]
    sha256: Sha256  # of the stored (encrypted) file
    plain_sha256: Sha256  # of the WebM inside
    width: Annotated[int, msgspec.Meta(ge=16, le=4096)]
    height: Annotated[int, msgspec.Meta(ge=16, le=4096)]
    seconds: Seconds
    reason: StatedReason
    grant: Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{1,32}$")]


class ReviewRecording(_Command, tag="review_recording"):
    """A reviewer watched a visit's recording and wrote a note (R3, recording/review_queue.py)."""

    outcome: Literal["no_concern", "flagged"]
    note: Annotated[str, msgspec.Meta(min_length=3, max_length=2000)]
    grant: Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{1,32}$")]


class SetLegalHold(_Command, tag="set_legal_hold"):
    """Put the session's recording under legal hold (no purge), or lift it (R16)."""

    hold: bool
    reason: StatedReason


class RecordDeletion(_Command, tag="record_deletion"):
    """The retention job deleted these segment files (R16)."""

    files: SegmentFiles
    reason: Literal["retention"]
    retention_days: Annotated[int, msgspec.Meta(ge=0, le=100 * 366)]


class Chat(_Command, tag="chat"):
    """A chat message, visible only inside the actor's current space."""

    text: ChatText


class ShareDocument(_Command, tag="share_document"):
    """A file the actor uploaded (stored by the server first), shown only in the actor's space.

    The upload route checks the type by content and stores the bytes; this command records who
    shared what, where, with its SHA-256, so the ledger proves which document was on the table."""

    document: Annotated[str, msgspec.Meta(pattern=r"^d-[0-9a-f]{16}$")]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
    mime: Literal["application/pdf", "image/png", "image/jpeg"]
    size: Annotated[int, msgspec.Meta(ge=1, le=20 * 1024 * 1024)]
    sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


# -- the mediation agreement ----------------------------------------------------------------------
class DraftAgreement(_Command, tag="draft_agreement"):
    """The mediator's live draft; parties watch it. After a freeze, an edit makes version N+1."""

    case_type: Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{1,32}$")]
    language: Literal["zh-CN", "en"]
    terms: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]],
        msgspec.Meta(min_length=1, max_length=50),
    ]


ESIGN_EVENT_TYPES = (
    "agreement.frozen",
    "agreement.certified",
    "agreement.superseded",
    "agreement.sealed",
    "agreement.renewed",
    "cert.issued",
    "signature.prepared",
    "signature.embedded",
    "signature.aborted",
    "signature.declined",
)


class EsignRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal[ESIGN_EVENT_TYPES]  # type: ignore[valid-type]
    data: Annotated[dict[str, Any], msgspec.Meta(max_length=20)]


EsignRecords = Annotated[list[EsignRecord], msgspec.Meta(min_length=1, max_length=8)]


class FreezeAgreement(_Command, tag="freeze_agreement"):
    """Record a frozen, certified version (the server rendered and certified it first)."""

    signers: Annotated[list[ParticipantId], msgspec.Meta(min_length=1, max_length=9)]
    events: EsignRecords


class SignAgreement(_Command, tag="sign_agreement"):
    """Record the actor's signing step: certificate issued, prepared, embedded, declined..."""

    events: EsignRecords


class SealAgreement(_Command, tag="seal_agreement"):
    events: EsignRecords


class RenewAgreement(_Command, tag="renew_agreement"):
    """Record an archive timestamp the server's renewal job added to the sealed agreement."""

    events: EsignRecords


# Commands the server issues after doing the work itself; a client may never send them.
SERVER_ONLY = frozenset(
    {
        "connect",
        "disconnect",
        "tick",
        "share_document",
        "freeze_agreement",
        "sign_agreement",
        "seal_agreement",
        "renew_agreement",
        "ask_recording",
        "report_recorder",
        "record_segment",
        "record_gap",
        "record_access",
        "record_export",
        "review_recording",
        "set_legal_hold",
        "record_deletion",
        "add_observer",
        "set_time_limit",
        "desk_event",
    }
)


Command = (
    Connect
    | Disconnect
    | Tick
    | Admit
    | ReturnToWaiting
    | Leave
    | CreateCaucus
    | CloseCaucus
    | MoveToCaucus
    | VisitCaucus
    | ReturnToJoint
    | SetCaucusTimer
    | ExtendCaucusTimer
    | AskForMediator
    | CallDutyLawyer
    | Mute
    | Unmute
    | Remove
    | EndSession
    | ReissueInvitation
    | MarkIdentityChecked
    | RecordConsent
    | AskRecording
    | StartRecording
    | StopRecording
    | Warn
    | AddObserver
    | SetTimeLimit
    | DeskEvent
    | ReportRecorder
    | RecordSegment
    | RecordGap
    | RecordAccess
    | RecordExport
    | ReviewRecording
    | SetLegalHold
    | RecordDeletion
    | Chat
    | ShareDocument
    | DraftAgreement
    | FreezeAgreement
    | SignAgreement
    | SealAgreement
    | RenewAgreement
)

COMMAND_TYPES: dict[str, type[_Command]] = {
    cls.__struct_config__.tag: cls
    for cls in Command.__args__  # type: ignore[attr-defined]
}


def command_type(command: _Command) -> str:
    return type(command).__struct_config__.tag


def decode_command(raw: Any) -> Command:
    """Validate untrusted input into a command, or raise ``CommandError("invalid")``."""
    if not isinstance(raw, dict):
        raise CommandError("invalid", "a command must be a JSON object")
    try:
        command = msgspec.convert(raw, Command)
    except msgspec.ValidationError as exc:
        raise CommandError("invalid", str(exc)) from None
    if isinstance(command, MoveToCaucus) and (command.participants is None) == (
        command.side is None
    ):
        raise CommandError("invalid", "give exactly one of `participants` or `side` - at `$`")
    if isinstance(command, MoveToCaucus) and command.participants == []:
        raise CommandError("invalid", "`participants` must not be empty - at `$.participants`")
    return command


def encode_command(command: _Command) -> dict[str, Any]:
    return msgspec.to_builtins(command)
