"""Who may review a session's recording, and reading one segment back for them.

Pure decisions (``review_grant``, ``hold_grant``) and one blocking reader (``read_segment``). The
web routes (signaling/review.py) ask these first and record every access in the ledger.

* Mediation and consultation: the session's own mediator (the staff account that created it),
  and an ``admin``.
* Visitation: a ``reviewer`` or ``supervisor`` grant at the session's site (visits/access.py
  grants; ``*`` counts), and an ``admin``.
* A legal hold is set or lifted by a ``supervisor`` (an account role, or a supervisor grant at a
  visitation session's site) or an ``admin``.

A visitation session's site: until visits are created from bookings (docs/visitation.md), it is
the part of the session's case number before the first ``/`` (``prison-a/2026-0042``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

from recording.keys import DataKey, MasterKey
from recording.sealed import open_sealed
from visits.access import Grant, roles_at

GrantsOf = Callable[[str], Iterable[Grant]]


def visit_site(state) -> str | None:
    if state.kind != "visitation" or not state.case_number or "/" not in state.case_number:
        return None
    return state.case_number.split("/", 1)[0] or None


def review_grant(account, grants: Iterable[Grant], state) -> str | None:
    """The name of what lets ``account`` review the session's recording, or None."""
    if state.policy.privileged:
        return None  # never recorded (R2); nothing to review
    if "admin" in account.roles:
        return "admin"
    if state.kind == "visitation":
        site = visit_site(state)
        roles = roles_at(grants, site) if site else frozenset()
        for role in ("supervisor", "reviewer"):
            if role in roles:
                return role
        return None
    if state.created_by == f"staff:{account.username}" and "mediator" in account.roles:
        return "mediator"
    return None


def may_see_queue(account, grants: Iterable[Grant]) -> bool:
    """Whether ``account`` has an R3 review queue (``/review``): an admin, or a reviewer or
    supervisor grant at some site. The consoles link to it only then."""
    return "admin" in account.roles or any(g.role in ("reviewer", "supervisor") for g in grants)


def hold_grant(account, grants: Iterable[Grant], state) -> str | None:
    if state.policy.privileged:
        return None
    if "admin" in account.roles:
        return "admin"
    if state.kind == "visitation":
        site = visit_site(state)
        return "supervisor" if site and "supervisor" in roles_at(grants, site) else None
    return "supervisor" if "supervisor" in account.roles else None


class SegmentError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def read_segment(root: Path, master: MasterKey, session: str, record: dict) -> bytes:
    """The WebM of one recorded segment, checked against its ledger record (stored hash, then
    the GCM tag, then the plaintext hash). Blocking: run it off the event loop."""
    directory = root / session
    path = directory / record["file"]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SegmentError("gone", f"{record['file']} is not on disk") from None
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise SegmentError("changed", f"{record['file']} does not match the ledger")
    key = (
        DataKey.for_session(master, directory, session)
        if (directory / "datakey.json").exists()
        else None
    )
    if key is None:
        raise SegmentError("gone", "the session's data key is gone")
    header, plain = open_sealed(key, data)
    if header["session"] != session or hashlib.sha256(plain).hexdigest() != record["plain_sha256"]:
        raise SegmentError("changed", f"{record['file']} does not match the ledger")
    return plain
