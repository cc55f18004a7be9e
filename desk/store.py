"""The desk's database: ``desk.sqlite3`` in the data directory (mode 0600: names, phone numbers,
summaries of legal questions). Points, shifts, lawyers' status, tickets and the desk log.

A ticket is one request for a lawyer: a citizen in a point's queue, a mediation's call, or a
call-back appointment. The citizen holds the ticket by a random secret in the page's address;
only its SHA-256 is stored. Every step of a ticket (queued, picked up, summary, rating, a
lawyer reading the citizen's earlier consultations) is a row of the append-only ``log``. The
queue is the waiting tickets, so it survives a restart as it stood.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass, fields
from pathlib import Path

from desk.errors import DeskError
from desk.queue import Entry
from desk.roster import STATUSES, Shift
from desk.stats import Record
from sqlstore import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, hours TEXT NOT NULL, address TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS shifts (
  id INTEGER PRIMARY KEY, lawyer TEXT NOT NULL, point TEXT NOT NULL REFERENCES points(id),
  start REAL NOT NULL, end REAL NOT NULL);
CREATE TABLE IF NOT EXISTS lawyers (
  username TEXT PRIMARY KEY, status TEXT NOT NULL, since REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tickets (
  id INTEGER PRIMARY KEY, secret_hash TEXT UNIQUE, kind TEXT NOT NULL, point TEXT,
  name TEXT NOT NULL, phone TEXT NOT NULL DEFAULT '', topic TEXT NOT NULL,
  lang TEXT NOT NULL DEFAULT 'zh', consent_online INTEGER NOT NULL DEFAULT 0,
  consent_recording INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL, queued_at REAL NOT NULL,
  last_seen REAL NOT NULL, picked_at REAL, ended_at REAL, lawyer TEXT, session TEXT,
  citizen_pid TEXT, lawyer_pid TEXT, summary TEXT, referral INTEGER NOT NULL DEFAULT 0,
  referral_note TEXT NOT NULL DEFAULT '', rating INTEGER, comment TEXT NOT NULL DEFAULT '',
  callback_at REAL, question TEXT NOT NULL DEFAULT '', transfer_to TEXT,
  flag TEXT NOT NULL DEFAULT '', interpreter TEXT NOT NULL DEFAULT '', interpreter_pid TEXT);
CREATE TABLE IF NOT EXISTS legal_aid (
  id INTEGER PRIMARY KEY, ts REAL NOT NULL, ticket INTEGER NOT NULL, point TEXT,
  lawyer TEXT NOT NULL, name TEXT NOT NULL, phone TEXT NOT NULL, topic TEXT NOT NULL,
  summary TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'open');
CREATE TABLE IF NOT EXISTS documents (
  id TEXT PRIMARY KEY, ticket INTEGER NOT NULL, ts REAL NOT NULL, name TEXT NOT NULL,
  mime TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS log (
  id INTEGER PRIMARY KEY, ts REAL NOT NULL, ticket INTEGER, actor TEXT NOT NULL,
  type TEXT NOT NULL, data TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS tickets_state ON tickets(state);
CREATE INDEX IF NOT EXISTS tickets_phone ON tickets(phone);
CREATE INDEX IF NOT EXISTS tickets_session ON tickets(session);
"""
POINT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
LIVE = ("waiting", "serving")
# columns added after the first release: a database from before gets them on open
_ADDED = {
    "transfer_to": "TEXT",
    "flag": "TEXT NOT NULL DEFAULT ''",
    "interpreter": "TEXT NOT NULL DEFAULT ''",
    "interpreter_pid": "TEXT",
}


@dataclass(frozen=True)
class Point:
    id: str
    name: str
    hours: str
    address: str


@dataclass(frozen=True)
class Ticket:
    id: int
    secret_hash: str | None
    kind: str
    point: str | None
    name: str
    phone: str
    topic: str
    lang: str
    consent_online: int
    consent_recording: int
    state: str
    queued_at: float
    last_seen: float
    picked_at: float | None
    ended_at: float | None
    lawyer: str | None
    session: str | None
    citizen_pid: str | None
    lawyer_pid: str | None
    summary: str | None
    referral: int
    referral_note: str
    rating: int | None
    comment: str
    callback_at: float | None
    question: str
    transfer_to: str | None  # a lawyer this consultation is being handed to (until accepted)
    flag: str  # '' or 'legal_aid_visitation': a relative's request filed at the bureau counter
    interpreter: str = ""  # the language the citizen asked an interpreter for ('' none)
    interpreter_pid: str | None = None  # the interpreter's place in the session, once created

    def entry(self) -> Entry:
        return Entry(self.id, self.kind, self.point, self.queued_at, self.last_seen, self.state)

    def record(self) -> Record:
        return Record(
            self.kind, self.state, self.queued_at, self.picked_at, self.ended_at, self.rating
        )


TICKET_COLUMNS = [f.name for f in fields(Ticket)]
# what a ticket's columns hold when add_ticket does not give them (the schema's defaults)
TICKET_DEFAULTS = {
    **dict.fromkeys(TICKET_COLUMNS),
    **dict.fromkeys(("phone", "referral_note", "comment", "question", "flag", "interpreter"), ""),
    **dict.fromkeys(("consent_online", "consent_recording", "referral"), 0),
    "lang": "zh",
}
TICKET_REQUIRED = ("kind", "name", "topic", "state", "queued_at", "last_seen")


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# -- the rules both stores apply (this one and cluster.desk.RedisDeskStore) ---------------------


def checked_point(pid: object, name: object, hours: object, address: object = "") -> Point:
    from visits.hours import parse  # the same weekly-hours line as visitation terminals

    if not isinstance(pid, str) or not POINT_ID.match(pid):
        raise DeskError("invalid", "point id: lowercase letters, digits and '-', e.g. hall-1")
    if not isinstance(name, str) or not name.strip() or len(name) > 120:
        raise DeskError("invalid", "point name: 1-120 characters")
    if not isinstance(address, str) or len(address) > 200:
        raise DeskError("invalid", "address: at most 200 characters")
    try:
        parse(hours)
    except Exception as exc:  # noqa: BLE001 - VisitError, re-raised as the desk's
        raise DeskError("invalid", str(exc)) from None
    return Point(pid, name.strip(), hours, address)


def check_shift(store, point: str, start: float, end: float) -> None:
    if store.point(point) is None:
        raise DeskError("not_found", f"no service point {point[:40]!r}")
    if not end > start or end - start > 24 * 3600:
        raise DeskError("invalid", "a shift ends after it starts and lasts at most 24 hours")


def check_status(status: str) -> None:
    if status not in STATUSES:
        raise DeskError("invalid", f"status must be one of {', '.join(STATUSES)}")


def check_fields(values: dict) -> None:
    unknown = set(values) - set(TICKET_COLUMNS)
    if unknown:
        raise ValueError(f"unknown ticket fields {sorted(unknown)}")


def queued_data(values: dict) -> str:
    """The ``queued`` log entry's data."""
    return json.dumps(
        {"kind": values.get("kind"), "point": values.get("point"), "topic": values.get("topic")}
    )


def update_data(values: dict) -> str:
    """An update's log entry: the changes worth reading later (not the summary's text)."""
    logged = ("state", "lawyer", "session", "rating", "referral", "transfer_to")
    return json.dumps({k: v for k, v in values.items() if k in logged})


class DeskStore(SqliteStore):
    def __init__(self, data_dir: str | Path, *, file: str = "desk.sqlite3") -> None:
        super().__init__(data_dir, file, SCHEMA)
        have = {r[1] for r in self._db.execute("PRAGMA table_info(tickets)")}
        for column, kind in _ADDED.items():
            if column not in have:
                self._db.execute(f"ALTER TABLE tickets ADD COLUMN {column} {kind}")

    # -- points and shifts ----------------------------------------------------------------------
    def add_point(self, pid: str, name: str, hours: str, address: str = "") -> Point:
        point = checked_point(pid, name, hours, address)
        with self.tx() as db:
            db.execute(
                "INSERT INTO points(id, name, hours, address) VALUES (?,?,?,?) ON CONFLICT(id) "
                "DO UPDATE SET name=excluded.name, hours=excluded.hours, address=excluded.address",
                (point.id, point.name, point.hours, point.address),
            )
        return point

    def _points(self, where: str = "", args: tuple = ()) -> list[Point]:
        sql = f"SELECT id, name, hours, address FROM points {where} ORDER BY id"
        return [Point(*r) for r in self.rows(sql, args)]

    def points(self) -> list[Point]:
        return self._points()

    def point(self, pid: str) -> Point | None:
        found = self._points("WHERE id=?", (pid,))
        return found[0] if found else None

    def add_shift(self, lawyer: str, point: str, start: float, end: float) -> Shift:
        check_shift(self, point, start, end)
        with self.tx() as db:
            cur = db.execute(
                "INSERT INTO shifts(lawyer, point, start, end) VALUES (?,?,?,?)",
                (lawyer, point, float(start), float(end)),
            )
        return Shift(cur.lastrowid, lawyer, point, float(start), float(end))

    def remove_shift(self, shift_id: int) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM shifts WHERE id=?", (shift_id,))

    def shifts(self, after: float = 0.0) -> list[Shift]:
        rows = self.rows(
            "SELECT id, lawyer, point, start, end FROM shifts WHERE end > ? ORDER BY start, id",
            (after,),
        )
        return [Shift(*r) for r in rows]

    # -- lawyers --------------------------------------------------------------------------------
    def set_status(self, lawyer: str, status: str, now: float) -> None:
        check_status(status)
        with self.tx() as db:
            db.execute(
                "INSERT INTO lawyers(username, status, since) VALUES (?,?,?) ON CONFLICT(username)"
                " DO UPDATE SET status=excluded.status, since=excluded.since",
                (lawyer, status, now),
            )

    def statuses(self) -> dict[str, str]:
        return dict(self.rows("SELECT username, status FROM lawyers"))

    # -- tickets --------------------------------------------------------------------------------
    def add_ticket(self, *, now: float, **values) -> tuple[Ticket, str]:
        """A new ticket and its secret (returned once; only the hash is kept)."""
        secret = secrets.token_urlsafe(24)
        values = {"secret_hash": secret_hash(secret), "queued_at": now, "last_seen": now, **values}
        check_fields(values)
        cols = ", ".join(values)
        with self.tx() as db:
            cur = db.execute(
                f"INSERT INTO tickets({cols}) VALUES ({', '.join('?' * len(values))})",
                tuple(values.values()),
            )
            tid = cur.lastrowid
            db.execute(
                "INSERT INTO log(ts, ticket, actor, type, data) VALUES (?,?,?,?,?)",
                (
                    now,
                    tid,
                    values.get("lawyer") or "citizen",
                    "queued",
                    queued_data(values),
                ),
            )
        return self.ticket(tid), secret

    def rotate_secret(self, tid: int) -> str:
        """A returning citizen on a new device gets a new address; the old one stops working."""
        secret = secrets.token_urlsafe(24)
        with self.tx() as db:
            db.execute("UPDATE tickets SET secret_hash=? WHERE id=?", (secret_hash(secret), tid))
        return secret

    def _ticket_rows(self, where: str, args: tuple = ()) -> list[Ticket]:
        cols = ", ".join(TICKET_COLUMNS)
        return [Ticket(*r) for r in self.rows(f"SELECT {cols} FROM tickets {where}", args)]

    def ticket(self, tid: int) -> Ticket | None:
        found = self._ticket_rows("WHERE id=?", (tid,))
        return found[0] if found else None

    def ticket_by_secret(self, secret: object) -> Ticket | None:
        if not isinstance(secret, str) or not 10 <= len(secret) <= 64:
            return None
        found = self._ticket_rows("WHERE secret_hash=?", (secret_hash(secret),))
        return found[0] if found else None

    def live(self) -> list[Ticket]:
        return self._ticket_rows("WHERE state IN ('waiting', 'serving') ORDER BY id")

    def callbacks(self) -> list[Ticket]:
        return self._ticket_rows("WHERE state='callback' ORDER BY callback_at, id")

    def for_phone(self, phone: str) -> list[Ticket]:
        return self._ticket_rows("WHERE phone=? AND phone != '' ORDER BY id", (phone,))

    def for_session(self, session: str) -> list[Ticket]:
        return self._ticket_rows("WHERE session=? ORDER BY id", (session,))

    def since(self, since: float) -> list[Ticket]:
        return self._ticket_rows("WHERE queued_at >= ? ORDER BY id", (since,))

    def handling_times(self, point: str | None, limit: int = 20) -> list[float]:
        """Talk times of the last consultations at ``point`` (any point for None), oldest first."""
        rows = self.rows(
            "SELECT ended_at - picked_at FROM tickets WHERE kind='citizen' AND state='done' "
            "AND picked_at IS NOT NULL AND ended_at IS NOT NULL AND (? IS NULL OR point=?) "
            "ORDER BY ended_at DESC LIMIT ?",
            (point, point, limit),
        )
        return [r[0] for r in reversed(rows)]

    def update(
        self, tid: int, *, actor: str, event: str | None, now: float, expect: tuple = (), **values
    ) -> Ticket:
        """Change a ticket (only from a state in ``expect`` when given) and log ``event``."""
        check_fields(values)
        with self.tx() as db:
            row = db.execute("SELECT state FROM tickets WHERE id=?", (tid,)).fetchone()
            if row is None:
                raise DeskError("not_found", "no such ticket")
            if expect and row[0] not in expect:
                raise DeskError("conflict", f"the ticket is {row[0]}")
            if values:
                sets = ", ".join(f"{k}=?" for k in values)
                db.execute(f"UPDATE tickets SET {sets} WHERE id=?", (*values.values(), tid))
            if event:
                db.execute(
                    "INSERT INTO log(ts, ticket, actor, type, data) VALUES (?,?,?,?,?)",
                    (now, tid, actor, event, update_data(values)),
                )
        return self.ticket(tid)

    def touch(self, tid: int, now: float) -> None:
        """The citizen's page polled: still there (not logged: it happens every few seconds)."""
        with self.tx() as db:
            db.execute("UPDATE tickets SET last_seen=? WHERE id=?", (now, tid))

    def log(self, tid: int | None, actor: str, event: str, now: float, **data) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO log(ts, ticket, actor, type, data) VALUES (?,?,?,?,?)",
                (now, tid, actor, event, json.dumps(data, ensure_ascii=False)),
            )

    def log_rows(self, tid: int | None = None) -> list[tuple]:
        if tid is None:
            return self.rows("SELECT ts, ticket, actor, type, data FROM log ORDER BY id")
        return self.rows(
            "SELECT ts, ticket, actor, type, data FROM log WHERE ticket=? ORDER BY id", (tid,)
        )

    # -- documents the citizen attached -----------------------------------------------------------
    def add_document(self, tid: int, doc: dict, now: float) -> None:
        """A file the citizen attached to the ticket (the bytes are beside the database)."""
        with self.tx() as db:
            db.execute(
                "INSERT INTO documents(id, ticket, ts, name, mime, size, sha256)"
                " VALUES (?,?,?,?,?,?,?)",
                (doc["id"], tid, now, doc["name"], doc["mime"], doc["size"], doc["sha256"]),
            )
            db.execute(
                "INSERT INTO log(ts, ticket, actor, type, data) VALUES (?,?,?,?,?)",
                (now, tid, "citizen", "document_added", json.dumps(doc, ensure_ascii=False)),
            )

    def documents(self, tid: int) -> list[dict]:
        rows = self.rows(
            "SELECT id, name, mime, size, sha256 FROM documents WHERE ticket=? ORDER BY ts, id",
            (tid,),
        )
        return [dict(zip(("id", "name", "mime", "size", "sha256"), r, strict=True)) for r in rows]

    # -- legal-aid cases ------------------------------------------------------------------------
    def add_legal_aid(self, ticket: Ticket, lawyer: str, summary: str, now: float) -> int:
        """A consultation converted into a legal-aid case: the hall's legal-aid list."""
        with self.tx() as db:
            cur = db.execute(
                "INSERT INTO legal_aid(ts, ticket, point, lawyer, name, phone, topic, summary) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (
                    now,
                    ticket.id,
                    ticket.point,
                    lawyer,
                    ticket.name,
                    ticket.phone,
                    ticket.topic,
                    summary,
                ),
            )
        return cur.lastrowid

    def legal_aid_cases(self, limit: int = 200) -> list[dict]:
        cols = (
            "id",
            "ts",
            "ticket",
            "point",
            "lawyer",
            "name",
            "phone",
            "topic",
            "summary",
            "state",
        )
        rows = self.rows(
            f"SELECT {', '.join(cols)} FROM legal_aid ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [dict(zip(cols, r, strict=True)) for r in rows]
