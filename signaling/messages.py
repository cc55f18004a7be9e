"""Typed, versioned socket.io messages (client -> server) and the error reply.

Every client event carries ``v`` (protocol version). Unknown fields, wrong types and oversize
values are rejected by msgspec before any handler runs; the client gets an ``ErrorReply`` with a
stable ``code`` and nothing is applied. Server -> client payloads are plain dicts built by the
namespace and documented in docs/protocol.md.

What JSON itself lets through is refused here too: the constants ``NaN`` and ``Infinity`` (not
JSON, but Python's parser reads them and they would become ``null``) and lone UTF-16 surrogates
(valid JSON escapes that are not text).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import msgspec

PROTOCOL_VERSION = 1
MAX_SDP_BYTES = 32 * 1024
MAX_COMMAND_BYTES = 16 * 1024

Version = Annotated[int, msgspec.Meta(ge=1, le=PROTOCOL_VERSION)]
Sdp = Annotated[str, msgspec.Meta(min_length=10, max_length=MAX_SDP_BYTES)]
ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class Message(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    v: Version


class Offer(Message):
    """The phone's SDP offer (its mic + camera sendonly, then N recvonly slot pairs)."""

    sdp: Sdp


class IceCandidate(Message):
    """One ICE candidate the page gathered after its offer left (trickle ICE): the candidate
    line as the browser gives it, the m-line it belongs to, and the ICE username fragment of the
    offer it belongs to (a candidate of an older connection is refused as stale)."""

    candidate: Annotated[str, msgspec.Meta(min_length=10, max_length=512)]
    mid: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]
    ufrag: Annotated[str, msgspec.Meta(min_length=4, max_length=256, pattern=r"^[A-Za-z0-9+/]+$")]


class CommandEnvelope(Message):
    """A domain command for rooms/; ``cmd`` is decoded there (tagged by its ``type``)."""

    cmd: dict[str, Any]
    cid: ClientId | None = None


class MediaPreference(Message):
    """Audio-only mode for a weak link: stop receiving video, keep audio. ``weak_network``: the
    page chose it by itself because its network is weak; the others are told why (its tile says
    "weak network: audio only")."""

    video_paused: bool
    weak_network: bool = False


class InvitationRequest(Message):
    """A host asks for a participant's invitation link (e.g. the duty lawyer just called in)."""

    participant: Annotated[str, msgspec.Meta(pattern=r"^p-[0-9a-f]{8}$")]


class AgreementAction(Message):
    """The mediator's agreement steps: edit the draft (live), freeze it, seal it."""

    action: Literal["draft", "freeze", "seal"]
    case_type: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    language: Literal["zh-CN", "en"] | None = None
    terms: (
        Annotated[list[Annotated[str, msgspec.Meta(max_length=2000)]], msgspec.Meta(max_length=50)]
        | None
    ) = None


class EsignAction(Message):
    """A signer's step; ``request``/``reply`` are the esign protocol messages (docs/esign.md)."""

    action: Literal["challenge", "enrol", "prepare", "sign", "decline"]
    request: dict[str, Any] | None = None
    reply: dict[str, Any] | None = None
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class OtpAction(Message):
    """Host: send a one-time code to a party's e-mail. Party: verify the code received."""

    action: Literal["send", "verify"]
    participant: Annotated[str, msgspec.Meta(pattern=r"^p-[0-9a-f]{8}$")] | None = None
    email: Annotated[str, msgspec.Meta(max_length=254)] | None = None
    code: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")] | None = None


class Leave(Message):
    reason: Annotated[str, msgspec.Meta(max_length=200)] = "left"


class ErrorReply(msgspec.Struct, frozen=True):
    code: str
    message: str
    ok: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"ok": False, "error": {"code": self.code, "message": self.message}}


class BadMessage(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _NotJson:
    """What a JSON constant (``NaN``, ``Infinity``) parses to: a value no message accepts."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class StrictJson:
    """The ``json`` module python-socketio parses packets with (``AsyncServer(json=...)``).

    Parsing never fails on a constant, so the client still gets its acknowledgement: the
    constant becomes a ``_NotJson`` that ``decode`` refuses with ``invalid_message``."""

    dumps = staticmethod(json.dumps)

    @staticmethod
    def loads(text, **kwargs):
        return json.loads(text, parse_constant=_NotJson, **kwargs)


def decode(kind: type[Message], payload: object, *, max_bytes: int = MAX_SDP_BYTES + 1024):
    """Validate a socket.io payload (already JSON-decoded) into ``kind``."""
    if not isinstance(payload, dict):
        raise BadMessage("invalid_message", f"{kind.__name__.lower()} must be an object")
    try:
        raw = msgspec.json.encode(payload)
    except (TypeError, msgspec.EncodeError):
        raise BadMessage("invalid_message", "payload is not JSON (no NaN or Infinity)") from None
    except UnicodeEncodeError:
        raise BadMessage(
            "invalid_message", "text must not contain lone UTF-16 surrogates"
        ) from None
    if len(raw) > max_bytes:
        raise BadMessage("too_large", f"message larger than {max_bytes} bytes")
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise BadMessage("invalid_message", str(exc)) from None
