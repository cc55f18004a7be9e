"""The directory's vocabulary and its validation, pure: sites, terminals, inmates, visitors.

Every value that enters the directory (a form, a CSV line, the command line) passes through one of
the ``check_*`` functions here, so a web route and the importer refuse the same things with the
same words. Refusals are ``VisitError(code, message)``; nothing here touches storage.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from desk.codes import normalise_phone
from desk.errors import DeskError

SITE_KINDS = ("prison", "rehab", "bureau")  # rehab: a drug rehabilitation centre
FACILITY_KINDS = frozenset({"prison", "rehab"})
TERMINAL_KINDS = ("visitor_room", "inmate_room")  # at a bureau / at a facility
INMATE_STATUSES = ("visitable", "restricted", "released", "transferred")
GRADES = ("strict", "normal", "lenient")  # custody grades; each has a quota (visits/booking.py)
RELATIONSHIPS = (
    "spouse",
    "parent",
    "child",
    "sibling",
    "grandparent",
    "grandchild",
    "guardian",
    "lawyer",  # on the list for privileged visits only (R2)
    "other",
)
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
ID_NUMBER = re.compile(r"^[0-9A-Za-z]{6,32}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}$")  # as signaling/otp.py


class VisitError(Exception):
    """A refusal with a stable code (``invalid``, ``forbidden``, ``not_found``, ``conflict``,
    ``quota``, ``too_late``, ``needs_supervisor``) and a message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Site:
    id: str
    kind: str
    name: str

    @property
    def facility(self) -> bool:
        return self.kind in FACILITY_KINDS


@dataclass(frozen=True)
class Terminal:
    id: str
    site: str
    kind: str
    name: str
    hours: str  # weekly opening hours, visits/hours.py
    active: bool = True


@dataclass(frozen=True)
class Inmate:
    id: int
    facility: str
    number: str  # the facility's own inmate number, unique per facility
    name: str
    grade: str
    status: str


@dataclass(frozen=True)
class Visitor:
    id: int
    inmate: int
    name: str
    relationship: str
    id_last4: str
    evidence: str  # reference to the kinship document (file number), never the document
    approved_by: str
    reason: str
    expires: str  # YYYY-MM-DD, last day the approval holds
    contact: str = ""  # where notices go (e-mail), may be empty


def text(value: object, field: str, limit: int, *, optional: bool = False) -> str:
    """A trimmed, printable string of at most ``limit`` characters."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return ""
        raise VisitError("invalid", f"{field}: required")
    if not isinstance(value, str) or len(value) > limit:
        raise VisitError("invalid", f"{field}: at most {limit} characters")
    value = value.strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise VisitError("invalid", f"{field}: control characters are not allowed")
    return value


def choice(value: object, field: str, allowed) -> str:
    if not isinstance(value, str) or value.strip() not in allowed:
        raise VisitError("invalid", f"{field}: one of {', '.join(allowed)}")
    return value.strip()


def slug(value: object, field: str) -> str:
    if not isinstance(value, str) or not SLUG.match(value.strip()):
        raise VisitError("invalid", f"{field}: 1-40 of a-z 0-9 -, starting with a letter or digit")
    return value.strip()


def date(value: object, field: str) -> str:
    """An ISO date ``YYYY-MM-DD`` that exists."""
    try:
        if not isinstance(value, str) or len(value.strip()) != 10:
            raise ValueError
        return dt.date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise VisitError("invalid", f"{field}: a date YYYY-MM-DD") from None


def id_number(value: object) -> str:
    """An identity document number, normalised (upper case, no spaces); kept only hashed."""
    raw = value.replace(" ", "").upper() if isinstance(value, str) else ""
    if not ID_NUMBER.match(raw):
        raise VisitError("invalid", "id_number: 6-32 letters or digits")
    return raw


def contact(value: object) -> str:
    """Where notices and the family page's one-time codes go: an e-mail address (kept as typed)
    or a mobile number (normalised as the desk does, desk/codes.py, so the family page finds the
    record whichever way the relative types it)."""
    raw = text(value, "contact", 200, optional=True)
    if not raw or EMAIL.match(raw):
        return raw
    try:
        return normalise_phone(raw)
    except DeskError:
        raise VisitError("invalid", "contact: an e-mail address or a mobile number") from None


def login_contact(value: object) -> str:
    """The contact a relative types on the family page, in the form records keep it (e-mail
    addresses compared without regard to case)."""
    found = contact(value)
    if not found:
        raise VisitError("invalid", "contact: an e-mail address or a mobile number")
    return found.lower() if "@" in found else found
