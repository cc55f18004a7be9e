"""Messages between the signing phone and the server, and the identity attestation the
session layer hands to the ceremony. Binary fields travel as standard base64 strings.

Flow (docs/esign.md has the full wire description):
    server -> phone  EnrolChallenge          (nonce)
    phone  -> server EnrolRequest            (SPKI of a fresh P-256 key + PoP signature)
    server -> phone  Enrolment               (event certificate + chain)
    server -> phone  SignatureRequest        (exact prepared PDF, ByteRange, signed attributes)
    phone  -> server SignatureReply          (raw 64-byte r||s over the signed attributes)
    server -> phone  Receipt
    phone  -> server DeclineRequest          (at any time before signing)
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

import msgspec

from esign.errors import EsignError

POP_PREFIX = b"parley-esign-pop-v1\x00"
B64 = Annotated[str, msgspec.Meta(max_length=8_000_000)]
Ident = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
Token = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{20,64}$")]

IDENTITY_CHECKS = frozenset(
    {"invitation_token", "staff_login", "mediator_video_check", "one_time_code", "real_name_check"}
)


class IdentityAttestation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the session layer vouches for about a participant (it ran the checks)."""

    session_id: Ident
    participant_id: Ident
    role: Literal[
        "party", "mediator", "co_mediator", "counsel", "support", "interpreter", "observer"
    ]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    id_digest: Annotated[str, msgspec.Meta(pattern=r"^(PID-[0-9a-f]{16,64})?$")] = ""
    checks: Annotated[list[str], msgspec.Meta(max_length=10)] = []
    acting_for: Ident | None = None


class EnrolChallenge(msgspec.Struct, frozen=True):
    nonce: B64
    expires_at: str


class EnrolRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["esign.enrol"]
    participant_id: Ident
    public_key_spki: B64
    nonce: B64
    proof_of_possession: B64  # P1363 r||s over POP_PREFIX + nonce


class Enrolment(msgspec.Struct, frozen=True):
    type: Literal["esign.enrolment"]
    certificate: B64
    chain: list[B64]
    not_after: str


class SignatureRequest(msgspec.Struct, frozen=True):
    type: Literal["esign.sign_request"]
    token: str
    case_no: str
    version: int
    field_name: str
    fingerprint: str
    prepared_pdf: B64
    byte_range: list[int]
    signed_attrs: B64
    certificate: B64
    reviewed_base_len: int
    reviewed_base_sha256: str
    expires_at: str


class SignatureReply(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["esign.signature"]
    token: Token
    signature_p1363: Annotated[str, msgspec.Meta(max_length=200)]


class DeclineRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["esign.decline"]
    participant_id: Ident
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class Receipt(msgspec.Struct, frozen=True):
    type: Literal["esign.receipt"]
    case_no: str
    version: int
    field_name: str
    participant_id: str
    pdf_sha256: str
    ledger_head: str
    signed_at: str


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text: str, what: str, max_len: int | None = None) -> bytes:
    """Decode strict base64 or raise EsignError('malformed_<what>')."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EsignError(f"malformed_{what}", f"{what} is not base64") from exc
    if max_len is not None and len(data) > max_len:
        raise EsignError(f"malformed_{what}", f"{what} is too long")
    return data


def decode_message(raw: bytes | str, kind: type[msgspec.Struct]):
    """Decode one JSON message from the phone into `kind`, or raise EsignError."""
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise EsignError("invalid_message", str(exc)) from exc
