"""The education/reform record relatives may read (教育改造表现): published by the facility, read
by an approved relative at the bureau counter, every read logged.

The facility decides what relatives see: it publishes entries per inmate (a course, work, an
assessment, points) and can withdraw one; nothing else of the inmate's file is here. A relative
reads at the counter: the operator opens the record for one approved visitor of the inmate
(not a lawyer, approval not expired), and the read is written — who opened it, for whom, when,
how many entries — before the entries are shown. The facility sees the read log.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from visits.directory import check_visitor
from visits.model import VisitError, choice, text
from visits.store import VisitStore

KINDS = ("course", "work", "assessment", "points")
PERIOD = re.compile(r"^20[0-9]{2}-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class Entry:
    id: int
    inmate: int
    kind: str
    period: str
    title: str
    detail: str
    published_by: str
    published_at: str


@dataclass(frozen=True)
class Read:
    at: str
    read_by: str
    visitor: int
    entries: int


class Records:
    def __init__(self, store: VisitStore) -> None:
        self.store = store

    def publish(self, actor: str, inmate_id: int, fields: dict, now: dt.datetime) -> int:
        kind = choice(fields.get("kind"), "kind", KINDS)
        period = fields.get("period")
        if not isinstance(period, str) or not PERIOD.match(period.strip()):
            raise VisitError("invalid", "period: YYYY-MM")
        title = text(fields.get("title"), "title", 100)
        detail = text(fields.get("detail"), "detail", 500, optional=True)
        with self.store.tx() as db:
            if not db.execute("SELECT 1 FROM inmates WHERE id=?", (inmate_id,)).fetchone():
                raise VisitError("not_found", "no such inmate")
            cur = db.execute(
                "INSERT INTO record_entries(inmate, kind, period, title, detail, published_by,"
                " published_at) VALUES (?,?,?,?,?,?,?)",
                (
                    inmate_id,
                    kind,
                    period.strip(),
                    title,
                    detail,
                    actor,
                    now.isoformat(timespec="minutes"),
                ),
            )
            return cur.lastrowid

    def withdraw(self, inmate_id: int, entry_id: int) -> None:
        with self.store.tx() as db:
            if not db.execute(
                "UPDATE record_entries SET withdrawn=1 WHERE id=? AND inmate=? AND withdrawn=0",
                (entry_id, inmate_id),
            ).rowcount:
                raise VisitError("not_found", "no such entry in this record")

    def entries(self, inmate_id: int) -> list[Entry]:
        return [
            Entry(*r)
            for r in self.store.rows(
                "SELECT id, inmate, kind, period, title, detail, published_by, published_at"
                " FROM record_entries WHERE inmate=? AND withdrawn=0 ORDER BY period DESC, id DESC",
                (inmate_id,),
            )
        ]

    def read(self, actor: str, inmate_id: int, visitor_id: int, now: dt.datetime) -> list[Entry]:
        """The record as the relative may see it; the read is logged first, in one transaction."""
        with self.store.tx() as db:
            if check_visitor(db, visitor_id, inmate_id, now.date(), noun="relative") == "lawyer":
                raise VisitError("invalid", "visitor: the record is for relatives")
            count = db.execute(
                "SELECT count(*) FROM record_entries WHERE inmate=? AND withdrawn=0", (inmate_id,)
            ).fetchone()[0]
            db.execute(
                "INSERT INTO record_reads(inmate, visitor, read_by, at, entries) VALUES (?,?,?,?,?)",
                (inmate_id, visitor_id, actor, now.isoformat(timespec="seconds"), count),
            )
        return self.entries(inmate_id)

    def reads(self, inmate_id: int) -> list[Read]:
        return [
            Read(*r)
            for r in self.store.rows(
                "SELECT at, read_by, visitor, entries FROM record_reads WHERE inmate=?"
                " ORDER BY id DESC LIMIT 200",
                (inmate_id,),
            )
        ]
