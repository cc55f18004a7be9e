"""Canonical agreement data: the machine-readable text every signature covers.

The agreement is a msgspec struct. Its canonical form is RFC 8785 (JCS) JSON and its
SHA-256 over those bytes is the *fingerprint* printed on every page, embedded in the PDF
and read aloud on video. Only strings, integers, booleans, null, lists and objects are
allowed (no floats), so the JCS number rules reduce to plain integers.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from esign.errors import EsignError

SCHEMA = "parley-mediation-agreement/v1"
DEFAULT_ZONE = "Asia/Shanghai"

# Electronic Signature Law Art. 3: documents on personal relations (marriage, adoption,
# inheritance) cannot be signed electronically with the usual legal effect.
EXCLUDED_CASE_TYPES = frozenset({"marriage", "divorce", "adoption", "inheritance"})
ALLOWED_CASE_TYPES = frozenset(
    {
        "civil",
        "commercial",
        "consumer",
        "debt",
        "labour",
        "neighbourhood",
        "property_damage",
        "tenancy",
        "traffic",
        "other",
    }
)
SIDES = ("applicant", "respondent")

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Ident = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
Hex64 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
Term = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
CaseText = Annotated[str, msgspec.Meta(pattern=r"^\S(.{0,62}\S)?$")]
Zone = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$")]


class Party(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A disputing party; `participant_id` ties the signer to a session participant."""

    side: Literal["applicant", "respondent"]
    name: Name
    participant_id: Ident
    id_digest: Annotated[str, msgspec.Meta(pattern=r"^PID-[0-9a-f]{16,64}$")]


class Mediator(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Name
    participant_id: Ident
    staff_id: Ident


class RecordingRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    file: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,128}$")]
    sha256: Hex64


class Supersedes(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: Annotated[int, msgspec.Meta(ge=1)]
    fingerprint: Hex64


class Agreement(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One version of a mediation agreement, as frozen for signing."""

    case_no: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,39}$")]
    case_type: Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{1,32}$")]
    session_id: Ident
    version: Annotated[int, msgspec.Meta(ge=1, le=10_000)]
    date: Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    language: Literal["zh-CN", "en"]
    organisation: Name
    parties: Annotated[list[Party], msgspec.Meta(min_length=2, max_length=8)]
    mediator: Mediator
    terms: Annotated[list[Term], msgspec.Meta(min_length=1, max_length=50)]
    recordings_so_far: Annotated[list[RecordingRef], msgspec.Meta(max_length=1000)] = []
    ledger_head_at_freeze: Annotated[str, msgspec.Meta(pattern=r"^([0-9a-f]{64})?$")] = ""
    supersedes: Supersedes | None = None
    schema: Literal["parley-mediation-agreement/v1"] = SCHEMA
    # Optional, absent from the canonical data when unset (older agreements keep their
    # fingerprint): the case number exactly as the court or office writes it, e.g.
    # "(2026)京0105民调88号" (`case_no` stays the ASCII key used in file names and
    # certificates), and the IANA zone in which the document prints local times.
    case_number: CaseText | msgspec.UnsetType = msgspec.UNSET
    timezone: Zone | msgspec.UnsetType = msgspec.UNSET


def parse_agreement(data: bytes | dict) -> Agreement:
    """Decode and check agreement data from JSON bytes or a dict; raise EsignError."""
    try:
        if isinstance(data, bytes | bytearray):
            agreement = msgspec.json.decode(data, type=Agreement)
        else:
            agreement = msgspec.convert(data, type=Agreement)
    except msgspec.ValidationError as exc:
        raise EsignError("invalid_agreement", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise EsignError("invalid_agreement", f"not JSON: {exc}") from exc
    check_policy(agreement)
    return agreement


def check_policy(agreement: Agreement) -> None:
    """Refuse agreements that may not be signed electronically or are ill-formed."""
    if agreement.case_type in EXCLUDED_CASE_TYPES:
        raise EsignError(
            "case_type_excluded",
            f"case type {agreement.case_type!r} concerns personal relations; the Electronic "
            "Signature Law excludes it: sign on paper in person",
        )
    if agreement.case_type not in ALLOWED_CASE_TYPES:
        raise EsignError("invalid_agreement", f"unknown case type {agreement.case_type!r}")
    sides = {p.side for p in agreement.parties}
    if sides != set(SIDES):
        raise EsignError("invalid_agreement", "an agreement needs an applicant and a respondent")
    ids = [p.participant_id for p in agreement.parties] + [agreement.mediator.participant_id]
    if len(set(ids)) != len(ids):
        raise EsignError("invalid_agreement", "each signer must be a distinct participant")
    if re.search(r"[\x00-\x08\x0b-\x1f\x7f]", "".join(agreement.terms)):
        raise EsignError("invalid_agreement", "terms contain control characters")
    local_zone(agreement)


def local_zone(agreement: Agreement) -> ZoneInfo:
    """The zone the document prints local times in (Asia/Shanghai unless the data says)."""
    name = agreement.timezone if isinstance(agreement.timezone, str) else DEFAULT_ZONE
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise EsignError("invalid_agreement", f"unknown time zone {name!r}") from exc


def signing_order(agreement: Agreement) -> list[tuple[str, str]]:
    """(participant_id, field name) in turn order: applicants, respondents, mediator."""
    order: list[tuple[str, str]] = []
    for side in SIDES:
        members = [p for p in agreement.parties if p.side == side]
        for n, party in enumerate(members, start=1):
            order.append((party.participant_id, f"{side.capitalize()}{n}"))
    order.append((agreement.mediator.participant_id, "Mediator"))
    return order


def signer_role(agreement: Agreement, participant_id: str) -> str | None:
    """'applicant' / 'respondent' / 'mediator' for a signer of this agreement, else None."""
    if agreement.mediator.participant_id == participant_id:
        return "mediator"
    for party in agreement.parties:
        if party.participant_id == participant_id:
            return party.side
    return None


# --- RFC 8785 JSON canonicalisation -------------------------------------------------------

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
_SHORT_ESCAPES["\t"] = "\\t"


def _jcs_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be")


def _jcs(value: object) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if abs(value) > 2**53 - 1:
            raise EsignError("invalid_agreement", "integer outside the I-JSON range")
        return str(value)
    if isinstance(value, str):
        return _jcs_string(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_jcs(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: _utf16_key(kv[0]))
        return "{" + ",".join(_jcs_string(k) + ":" + _jcs(v) for k, v in items) + "}"
    raise EsignError("invalid_agreement", f"cannot canonicalise {type(value).__name__}")


def canonical_json(value: object) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of a JSON value (floats are refused)."""
    if isinstance(value, msgspec.Struct):
        value = msgspec.to_builtins(value)
    try:
        return _jcs(value).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EsignError("invalid_agreement", "text is not valid Unicode") from exc


def fingerprint(agreement: Agreement) -> str:
    """SHA-256 hex of the canonical agreement data."""
    return hashlib.sha256(canonical_json(agreement)).hexdigest()
