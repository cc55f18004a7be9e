"""The directory: sites, terminals and their credentials, maintenance, inmates, approved visitors,
help-education organisations and workers, staff grants.

Each ``insert_*`` takes the connection of an open transaction and a row of strings (a form, a CSV
line, command-line arguments), validates it (visits/model.py) and inserts it, or raises
``VisitError``; the importer runs many of them in one transaction (visits/importer.py), a web form
one. ``Directory`` wraps them for single changes and reads.

A terminal is a machine: it authenticates with its own token, of which only the SHA-256 digest is
stored; issuing a new one replaces the old, revoking leaves none.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import sqlite3

from visits import hours
from visits.access import ALL_SITES, Grant, check_grant
from visits.model import (
    GRADES,
    INMATE_STATUSES,
    RELATIONSHIPS,
    SITE_KINDS,
    TERMINAL_KINDS,
    Inmate,
    Site,
    Terminal,
    VisitError,
    Visitor,
    choice,
    contact,
    date,
    id_number,
    slug,
    text,
)
from visits.store import VisitStore

TOKEN_PREFIX = "pvt_"


def _site_kind(db: sqlite3.Connection, site: str) -> str | None:
    row = db.execute("SELECT kind FROM sites WHERE id=?", (site,)).fetchone()
    return row[0] if row else None


def insert_site(db, store, row: dict) -> str:
    site = slug(row.get("id"), "id")
    kind = choice(row.get("kind"), "kind", SITE_KINDS)
    name = text(row.get("name"), "name", 100)
    if _site_kind(db, site):
        raise VisitError("conflict", f"site {site} exists")
    db.execute("INSERT INTO sites VALUES (?,?,?)", (site, kind, name))
    return site


def insert_terminal(db, store, row: dict) -> str:
    tid = slug(row.get("id"), "id")
    site = slug(row.get("site"), "site")
    kind = choice(row.get("kind"), "kind", TERMINAL_KINDS)
    name = text(row.get("name"), "name", 100)
    schedule = text(row.get("hours"), "hours", 300)
    hours.parse(schedule)
    site_kind = _site_kind(db, site)
    if site_kind is None:
        raise VisitError("not_found", f"site: no site {site}")
    if (kind == "visitor_room") != (site_kind == "bureau"):
        raise VisitError("invalid", f"kind: a {site_kind} has no {kind}")
    if db.execute("SELECT 1 FROM terminals WHERE id=?", (tid,)).fetchone():
        raise VisitError("conflict", f"terminal {tid} exists")
    db.execute(
        "INSERT INTO terminals(id, site, kind, name, hours) VALUES (?,?,?,?,?)",
        (tid, site, kind, name, schedule),
    )
    return tid


def insert_inmate(db, store, row: dict) -> int:
    facility = slug(row.get("facility"), "facility")
    number = text(row.get("number"), "number", 32)
    name = text(row.get("name"), "name", 80)
    grade = choice(row.get("grade"), "grade", GRADES)
    status = choice(row.get("status") or "visitable", "status", INMATE_STATUSES)
    if _site_kind(db, facility) not in ("prison", "rehab"):
        raise VisitError("not_found", f"facility: no prison or centre {facility}")
    try:
        cur = db.execute(
            "INSERT INTO inmates(facility, number, name, grade, status) VALUES (?,?,?,?,?)",
            (facility, number, name, grade, status),
        )
    except sqlite3.IntegrityError:
        raise VisitError("conflict", f"number: inmate {number} exists at {facility}") from None
    return cur.lastrowid


def insert_visitor(db, store: VisitStore, row: dict) -> int:
    """An approved visitor of one inmate (named by facility and inmate number)."""
    facility = slug(row.get("facility"), "facility")
    number = text(row.get("inmate_number"), "inmate_number", 32)
    found = db.execute(
        "SELECT id FROM inmates WHERE facility=? AND number=?", (facility, number)
    ).fetchone()
    if found is None:
        raise VisitError("not_found", f"inmate_number: no inmate {number} at {facility}")
    name = text(row.get("name"), "name", 80)
    relation = choice(row.get("relationship"), "relationship", RELATIONSHIPS)
    number_id = id_number(row.get("id_number"))
    evidence = text(row.get("evidence"), "evidence", 100)
    approved_by = text(row.get("approved_by"), "approved_by", 64)
    reason = text(row.get("reason"), "reason", 200)
    expires = date(row.get("expires"), "expires")
    mail = contact(row.get("contact"))
    try:
        cur = db.execute(
            "INSERT INTO visitors(inmate, name, relationship, id_hash, id_last4, evidence,"
            " approved_by, reason, expires, contact) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                found[0],
                name,
                relation,
                store.id_hash(number_id),
                number_id[-4:],
                evidence,
                approved_by,
                reason,
                expires,
                mail,
            ),
        )
    except sqlite3.IntegrityError:
        raise VisitError("conflict", "id_number: this person is already approved") from None
    return cur.lastrowid


def insert_org(db, store, row: dict) -> str:
    org = slug(row.get("id"), "id")
    name = text(row.get("name"), "name", 100)
    site = row.get("site") or None
    if site is not None and _site_kind(db, slug(site, "site")) is None:
        raise VisitError("not_found", f"site: no site {site}")
    try:
        db.execute("INSERT INTO orgs VALUES (?,?,?)", (org, name, site))
    except sqlite3.IntegrityError:
        raise VisitError("conflict", f"organisation {org} exists") from None
    return org


def insert_worker(db, store: VisitStore, row: dict) -> int:
    org = slug(row.get("org"), "org")
    if not db.execute("SELECT 1 FROM orgs WHERE id=?", (org,)).fetchone():
        raise VisitError("not_found", f"org: no organisation {org}")
    name = text(row.get("name"), "name", 80)
    number_id = id_number(row.get("id_number"))
    try:
        cur = db.execute(
            "INSERT INTO workers(org, name, id_hash, id_last4) VALUES (?,?,?,?)",
            (org, name, store.id_hash(number_id), number_id[-4:]),
        )
    except sqlite3.IntegrityError:
        raise VisitError("conflict", "id_number: this worker is already registered") from None
    return cur.lastrowid


def insert_maintenance(db, store, row: dict) -> int:
    tid = slug(row.get("terminal"), "terminal")
    if not db.execute("SELECT 1 FROM terminals WHERE id=?", (tid,)).fetchone():
        raise VisitError("not_found", f"terminal: no terminal {tid}")
    try:
        start = dt.datetime.fromisoformat(str(row.get("start")))
        end = dt.datetime.fromisoformat(str(row.get("end")))
    except ValueError:
        raise VisitError("invalid", "start, end: YYYY-MM-DDTHH:MM") from None
    if end <= start or start.tzinfo or end.tzinfo:
        raise VisitError("invalid", "end: after start, local time without zone")
    note = text(row.get("note"), "note", 200, optional=True)
    cur = db.execute(
        "INSERT INTO maintenance(terminal, start, end, note) VALUES (?,?,?,?)",
        (tid, start.isoformat(timespec="minutes"), end.isoformat(timespec="minutes"), note),
    )
    return cur.lastrowid


def check_visitor(db, visitor_id: int, inmate_id: int, day: dt.date, *, noun: str) -> str:
    """Refuse (``invalid``) unless ``visitor_id`` is on ``inmate_id``'s approved list and its
    approval still holds on ``day``; the visitor's relationship otherwise."""
    row = db.execute(
        "SELECT inmate, relationship, expires FROM visitors WHERE id=?", (visitor_id,)
    ).fetchone()
    if row is None or row[0] != inmate_id:
        raise VisitError("invalid", f"visitor: not an approved {noun} of this inmate")
    if row[2] < day.isoformat():
        raise VisitError("invalid", "visitor: the approval has expired")
    return row[1]


class Directory:
    def __init__(self, store: VisitStore) -> None:
        self.store = store

    def add(self, inserter, row: dict):
        with self.store.tx() as db:
            return inserter(db, self.store, row)

    # -- reads ----------------------------------------------------------------------------------
    def site(self, site_id: str) -> Site | None:
        rows = self.store.rows("SELECT id, kind, name FROM sites WHERE id=?", (site_id,))
        return Site(*rows[0]) if rows else None

    def sites(self) -> list[Site]:
        return [Site(*r) for r in self.store.rows("SELECT id, kind, name FROM sites ORDER BY id")]

    def terminal(self, tid: str) -> Terminal | None:
        rows = self.store.rows(
            "SELECT id, site, kind, name, hours, active FROM terminals WHERE id=?", (tid,)
        )
        return Terminal(*rows[0][:5], bool(rows[0][5])) if rows else None

    def terminals(self, site: str) -> list[Terminal]:
        rows = self.store.rows(
            "SELECT id, site, kind, name, hours, active FROM terminals WHERE site=? ORDER BY id",
            (site,),
        )
        return [Terminal(*r[:5], bool(r[5])) for r in rows]

    def maintenance(self, terminal: str) -> list[tuple[str, str]]:
        return [
            (r[0], r[1])
            for r in self.store.rows(
                "SELECT start, end FROM maintenance WHERE terminal=? ORDER BY start", (terminal,)
            )
        ]

    def inmate(self, inmate_id: int) -> Inmate | None:
        rows = self.store.rows(
            "SELECT id, facility, number, name, grade, status FROM inmates WHERE id=?", (inmate_id,)
        )
        return Inmate(*rows[0]) if rows else None

    def inmate_by_number(self, facility: str, number: str) -> Inmate | None:
        rows = self.store.rows(
            "SELECT id FROM inmates WHERE facility=? AND number=?", (facility, number)
        )
        return self.inmate(rows[0][0]) if rows else None

    def inmates(self, facility: str) -> list[Inmate]:
        rows = self.store.rows(
            "SELECT id, facility, number, name, grade, status FROM inmates WHERE facility=?"
            " ORDER BY number",
            (facility,),
        )
        return [Inmate(*r) for r in rows]

    def visitors(self, inmate_id: int) -> list[Visitor]:
        rows = self.store.rows(
            "SELECT id, inmate, name, relationship, id_last4, evidence, approved_by, reason,"
            " expires, contact FROM visitors WHERE inmate=? ORDER BY id",
            (inmate_id,),
        )
        return [Visitor(*r) for r in rows]

    def workers(self, ids) -> list[tuple[int, str, str]]:
        """(id, name, organisation's name) of these help-education workers, in the given order
        (the kiosk names the workers who come; never their identity numbers)."""
        ids = list(ids)
        if not ids:
            return []
        rows = self.store.rows(
            "SELECT w.id, w.name, o.name FROM workers w JOIN orgs o ON o.id=w.org"
            f" WHERE w.id IN ({','.join('?' * len(ids))})",
            tuple(ids),
        )
        named = {r[0]: (r[0], r[1], r[2]) for r in rows}
        return [named[i] for i in ids if i in named]

    def set_inmate_status(self, inmate_id: int, status: str) -> None:
        status = choice(status, "status", INMATE_STATUSES)
        with self.store.tx() as db:
            if not db.execute(
                "UPDATE inmates SET status=? WHERE id=?", (status, inmate_id)
            ).rowcount:
                raise VisitError("not_found", "no such inmate")

    # -- terminal credentials -------------------------------------------------------------------
    def issue_credential(self, tid: str, now: float) -> str:
        """A new device token for the terminal (shown once); the previous one stops working."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.store.tx() as db:
            cur = db.execute(
                "UPDATE terminals SET token_hash=?, token_issued=? WHERE id=?",
                (_digest(token), now, tid),
            )
            if not cur.rowcount:
                raise VisitError("not_found", f"no terminal {tid[:40]}")
        return token

    def revoke_credential(self, tid: str) -> None:
        with self.store.tx() as db:
            cur = db.execute(
                "UPDATE terminals SET token_hash=NULL, token_issued=NULL WHERE id=?", (tid,)
            )
            if not cur.rowcount:
                raise VisitError("not_found", f"no terminal {tid[:40]}")

    def has_credential(self, tid: str) -> bool:
        rows = self.store.rows("SELECT token_hash FROM terminals WHERE id=?", (tid,))
        return bool(rows and rows[0][0])

    def terminal_for_token(self, token: str) -> Terminal | None:
        """The active terminal this device token belongs to, or None (for the kiosk, later)."""
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 100:
            return None
        rows = self.store.rows(
            "SELECT id FROM terminals WHERE token_hash=? AND active=1", (_digest(token),)
        )
        return self.terminal(rows[0][0]) if rows else None

    # -- grants ---------------------------------------------------------------------------------
    def grant(self, username: str, role: str, site: str) -> Grant:
        with self.store.tx() as db:
            kind = None if site == ALL_SITES else _site_kind(db, site)
            check_grant(role, site, kind)
            db.execute("INSERT OR IGNORE INTO grants VALUES (?,?,?)", (username, role, site))
        return Grant(username, role, site)

    def revoke_grant(self, username: str, role: str, site: str) -> bool:
        with self.store.tx() as db:
            cur = db.execute(
                "DELETE FROM grants WHERE username=? AND role=? AND site=?", (username, role, site)
            )
            return bool(cur.rowcount)

    def grants(self, username: str) -> list[Grant]:
        rows = self.store.rows(
            "SELECT username, role, site FROM grants WHERE username=? ORDER BY site, role",
            (username,),
        )
        return [Grant(*r) for r in rows]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
