"""Bookings in the visitation database: request, decide, cancel, reschedule, no-show, the grid.

Every change runs in one ``BEGIN IMMEDIATE`` transaction (visits/store.py): it reads what the
rules need (visits/booking.py), checks, then writes the booking, its visitors, its **holds** (one
row per 15-minute cell of each terminal and of the inmate) and a log line. The holds' primary key
refuses a second booking of a held cell, so two requests can never get the same terminal time,
even from two processes. A booking that ends (rejected, cancelled, rescheduled) releases its holds.

Permissions are the caller's (signaling/visits_console.py asks visits/access.py for the site the
booking belongs to); ``decide`` needs to know whether the actor is a supervisor, because a booking
beyond the grade's quota is an exception that only a supervisor may approve (R5).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass

from visits import booking, hours
from visits.booking import ACTIVE, CANCEL_REASONS, COUNTED, REJECT_REASONS, Rules, TerminalPlan
from visits.model import VisitError, text
from visits.store import VisitStore


@dataclass(frozen=True)
class Booking:
    id: int
    inmate: int
    bureau_terminal: str
    facility_terminal: str
    start: dt.datetime
    minutes: int
    status: str
    exception_reason: str
    exception_by: str
    contact: str
    lang: str
    requested_by: str
    reason_code: str
    visitors: tuple[int, ...]
    kind: str = "visitation"  # or "privileged": a lawyer's visit, never recorded or observed (R2)
    workers: tuple[int, ...] = ()  # help-education workers (帮教) who visit, with or without family

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(minutes=self.minutes)


@dataclass(frozen=True)
class Request:
    inmate: int
    bureau_terminal: str
    facility_terminal: str
    start: dt.datetime
    minutes: int
    visitors: tuple[int, ...]
    contact: str = ""
    lang: str = "zh"
    exception_reason: str = ""  # asked for when the month's quota is used up
    kind: str = "visitation"
    workers: tuple[
        int, ...
    ] = ()  # help-education workers (eligible_worker), with or instead of family


_COLUMNS = (
    "id, inmate, bureau_terminal, facility_terminal, start, minutes, status, exception_reason,"
    " exception_by, contact, lang, requested_by, reason_code, kind"
)
KINDS = ("visitation", "privileged")


class Reservations:
    def __init__(self, store: VisitStore, rules: Rules | None = None) -> None:
        self.store = store
        self.rules = rules or Rules()

    # -- reading --------------------------------------------------------------------------------
    def get(self, booking_id: int) -> Booking:
        with self.store.read() as db:  # a consistent read of the booking and its visitors
            return self._get(db, booking_id)

    def _get(self, db, booking_id: int) -> Booking:
        row = db.execute(f"SELECT {_COLUMNS} FROM bookings WHERE id=?", (booking_id,)).fetchone()
        if row is None:
            raise VisitError("not_found", "no such booking")
        visitors = tuple(
            r[0]
            for r in db.execute(
                "SELECT visitor FROM booking_visitors WHERE booking=? ORDER BY visitor", (row[0],)
            )
        )
        workers = tuple(
            r[0]
            for r in db.execute(
                "SELECT worker FROM booking_workers WHERE booking=? ORDER BY worker", (row[0],)
            )
        )
        return Booking(
            *row[:4], dt.datetime.fromisoformat(row[4]), *row[5:13], visitors, row[13], workers
        )

    def for_visitors(self, visitor_ids: list[int], limit: int = 50) -> list[Booking]:
        """The latest bookings naming any of these approved visitors (the family page)."""
        if not visitor_ids:
            return []
        marks = ",".join("?" * len(visitor_ids))
        ids = [
            r[0]
            for r in self.store.rows(
                f"SELECT DISTINCT booking FROM booking_visitors WHERE visitor IN ({marks})"
                " ORDER BY booking DESC LIMIT ?",
                (*visitor_ids, limit),
            )
        ]
        return [self.get(i) for i in ids]

    def workers_for(self, inmate_id: int, bureau_site: str | None = None) -> list[tuple]:
        """(id, name, org id, org name) of the help-education workers eligible for this inmate
        (``eligible_worker``), for the counter's form."""
        with self.store.tx() as db:
            facility = self._inmate(db, inmate_id)[1]
            return [
                tuple(r)
                for r in db.execute(
                    "SELECT w.id, w.name, o.id, o.name FROM workers w JOIN orgs o ON o.id=w.org"
                    " WHERE o.site IS NULL OR o.site=? OR o.site=? ORDER BY o.id, w.name",
                    (facility, bureau_site),
                )
            ]

    def at_site(self, site: str, day: dt.date | None = None) -> list[Booking]:
        """Bookings using a terminal of the site (both ends), optionally of one day."""
        sql = (
            "SELECT id FROM bookings WHERE (bureau_terminal IN (SELECT id FROM terminals WHERE"
            " site=?) OR facility_terminal IN (SELECT id FROM terminals WHERE site=?))"
        )
        args: tuple = (site, site)
        if day is not None:
            sql += " AND substr(start, 1, 10)=?"
            args += (day.isoformat(),)
        ids = [r[0] for r in self.store.rows(sql + " ORDER BY start, id", args)]
        return [self.get(i) for i in ids]

    def plan(
        self, db, terminal: str, days: list[dt.date], exclude: int | None = None
    ) -> TerminalPlan:
        row = db.execute("SELECT hours, active FROM terminals WHERE id=?", (terminal,)).fetchone()
        if row is None:
            raise VisitError("not_found", f"no terminal {terminal[:40]}")
        schedule = hours.parse(row[0]) if row[1] else {}
        maintenance = tuple(
            (dt.datetime.fromisoformat(a), dt.datetime.fromisoformat(b))
            for a, b in db.execute(
                "SELECT start, end FROM maintenance WHERE terminal=?", (terminal,)
            )
        )
        return TerminalPlan(
            terminal, schedule, maintenance, self._held(db, f"t:{terminal}", days, exclude)
        )

    @staticmethod
    def _held(db, resource: str, days: list[dt.date], exclude: int | None) -> frozenset[str]:
        held = set()
        for day in days:
            held.update(
                r[0]
                for r in db.execute(
                    "SELECT cell FROM holds WHERE resource=? AND substr(cell, 1, 10)=?"
                    " AND booking IS NOT ?",
                    (resource, day.isoformat(), exclude),
                )
            )
        return frozenset(held)

    def held_cells(self, terminals: list[str], day: dt.date) -> dict[tuple[str, str], tuple]:
        """(terminal, cell) -> (booking id, status) for the capacity grid."""
        out = {}
        for tid in terminals:
            for cell, bid, status in self.store.rows(
                "SELECT h.cell, b.id, b.status FROM holds h JOIN bookings b ON b.id=h.booking"
                " WHERE h.resource=? AND substr(h.cell, 1, 10)=?",
                (f"t:{tid}", day.isoformat()),
            ):
                out[(tid, cell)] = (bid, status)
        return out

    def propose(
        self,
        bureau_site: str,
        inmate_id: int,
        days: list[dt.date],
        minutes: int,
        now: dt.datetime,
        *,
        respect_quota: bool = True,
        exclude: int | None = None,
    ) -> list[booking.Proposal]:
        """Free slots for both ends; with ``respect_quota=False`` also in months whose quota is
        used (for a request that asks a supervisor for an exception); ``exclude`` is a booking
        being rescheduled, whose own time and quota are free for its new time."""
        with self.store.tx() as db:
            inmate = self._inmate(db, inmate_id)
            bureau = [
                self.plan(db, r[0], days, exclude)
                for r in db.execute(
                    "SELECT id FROM terminals WHERE site=? AND kind='visitor_room' AND active=1"
                    " ORDER BY id",
                    (bureau_site,),
                )
            ]
            facility = [
                self.plan(db, r[0], days, exclude)
                for r in db.execute(
                    "SELECT id FROM terminals WHERE site=? AND kind='inmate_room' AND active=1"
                    " ORDER BY id",
                    (inmate[1],),
                )
            ]
            held = self._held(db, f"i:{inmate_id}", days, exclude)
            quota = self.rules.quotas[inmate[2]]
            proposals = booking.propose(
                bureau=bureau,
                facility=facility,
                inmate_held=held,
                dates=days,
                minutes=min(minutes, quota.minutes),
                now=now,
                rules=self.rules,
            )
            if not respect_quota:
                return proposals
            return [
                p
                for p in proposals
                if self._used(db, inmate_id, p.start, exclude) < quota.per_month
            ]

    # -- changing -------------------------------------------------------------------------------
    def request(self, actor: str, req: Request, now: dt.datetime) -> int:
        with self.store.tx() as db:
            return self._insert(db, actor, req, now, replaces=None)

    def _insert(self, db, actor: str, req: Request, now: dt.datetime, replaces: int | None) -> int:
        inmate = self._inmate(db, req.inmate)
        if inmate[3] != "visitable":
            raise VisitError("conflict", f"the inmate cannot be visited now ({inmate[3]})")
        kinds = {
            r[0]: (r[1], r[2])
            for r in db.execute(
                "SELECT id, site, kind FROM terminals WHERE id IN (?,?)",
                (req.bureau_terminal, req.facility_terminal),
            )
        }
        if kinds.get(req.bureau_terminal, (None, None))[1] != "visitor_room":
            raise VisitError("invalid", "bureau_terminal: not a bureau visitor room")
        if kinds.get(req.facility_terminal) != (inmate[1], "inmate_room"):
            raise VisitError("invalid", "facility_terminal: not an inmate room of the facility")
        self._check_visitors(db, req)
        if req.kind not in KINDS:
            raise VisitError("invalid", "kind: visitation or privileged")
        if req.workers and req.kind != "visitation":
            raise VisitError("invalid", "workers: help-education workers join family visits only")
        bureau_site = kinds[req.bureau_terminal][0]
        for wid in req.workers:
            self._check_worker(db, wid, inmate[1], bureau_site)
        if req.kind == "privileged" and any(
            db.execute("SELECT relationship FROM visitors WHERE id=?", (v,)).fetchone()[0]
            != "lawyer"
            for v in req.visitors
        ):
            raise VisitError("invalid", "visitors: a privileged visit is for the inmate's lawyers")
        days = [req.start.date()]
        code = booking.problem(
            bureau=self.plan(db, req.bureau_terminal, days, replaces),
            facility=self.plan(db, req.facility_terminal, days, replaces),
            inmate_held=self._held(db, f"i:{req.inmate}", days, replaces),
            start=req.start,
            minutes=req.minutes,
            now=now,
            rules=self.rules,
        )
        if code:
            raise VisitError("invalid" if code == "invalid" else "conflict", f"slot: {code}")
        quota = self.rules.quotas[inmate[2]]
        used = self._used(db, req.inmate, req.start, replaces)
        code = booking.quota_problem(quota, used, req.minutes, len(req.visitors) + len(req.workers))
        exception = text(req.exception_reason, "exception_reason", 200, optional=True)
        if code and not (code == "quota" and exception):
            raise VisitError("quota", f"{code}: grade {inmate[2]} allows {quota}")
        cur = db.execute(
            "INSERT INTO bookings(inmate, bureau_terminal, facility_terminal, start, minutes,"
            " status, exception_reason, contact, lang, requested_by, created, rescheduled_from,"
            " kind) VALUES (?,?,?,?,?,'requested',?,?,?,?,?,?,?)",
            (
                req.inmate,
                req.bureau_terminal,
                req.facility_terminal,
                booking.cell(req.start),
                req.minutes,
                exception if code else "",
                req.contact,
                req.lang,
                actor,
                booking.cell(now),
                replaces,
                req.kind,
            ),
        )
        bid = cur.lastrowid
        db.executemany(
            "INSERT INTO booking_visitors VALUES (?,?)", [(bid, v) for v in req.visitors]
        )
        db.executemany("INSERT INTO booking_workers VALUES (?,?)", [(bid, w) for w in req.workers])
        resources = (f"t:{req.bureau_terminal}", f"t:{req.facility_terminal}", f"i:{req.inmate}")
        try:
            db.executemany(
                "INSERT INTO holds VALUES (?,?,?)",
                [(r, c, bid) for r in resources for c in booking.cells(req.start, req.minutes)],
            )
        except sqlite3.IntegrityError:
            raise VisitError("conflict", "slot: taken") from None
        self._log(db, bid, now, actor, "requested", exception if code else "")
        return bid

    def decide(
        self,
        actor: str,
        booking_id: int,
        *,
        approve: bool,
        reason: str,
        supervisor: bool,
        now: dt.datetime,
    ) -> Booking:
        with self.store.tx() as db:
            b = self._get(db, booking_id)
            if b.status != "requested":
                raise VisitError("conflict", f"the booking is {b.status}")
            if approve:
                if b.exception_reason and not supervisor:
                    raise VisitError("needs_supervisor", "beyond the quota: a supervisor approves")
                if b.start < now:
                    raise VisitError("too_late", "the visit's time has passed")
                db.execute(
                    "UPDATE bookings SET status='approved', exception_by=? WHERE id=?",
                    (actor if b.exception_reason else "", booking_id),
                )
                self._log(
                    db, booking_id, now, actor, "approved", b.exception_reason and "exception"
                )
            else:
                if reason not in REJECT_REASONS:
                    raise VisitError("invalid", f"reason: one of {', '.join(REJECT_REASONS)}")
                self._end(db, booking_id, "rejected", reason)
                self._log(db, booking_id, now, actor, "rejected", reason)
            return self._get(db, booking_id)

    def cancel(
        self, actor: str, booking_id: int, *, side: str, reason: str, now: dt.datetime
    ) -> Booking:
        """The bureau cancels for the family until the cutoff; the facility at any time before the
        visit ends (a lockdown, a fault). A cancelled booking does not use the quota."""
        if reason not in CANCEL_REASONS:
            raise VisitError("invalid", f"reason: one of {', '.join(CANCEL_REASONS)}")
        with self.store.tx() as db:
            b = self._get(db, booking_id)
            if b.status not in ACTIVE:
                raise VisitError("conflict", f"the booking is {b.status}")
            self._cutoff(b, side, now)
            self._end(db, booking_id, "cancelled", reason)
            self._log(db, booking_id, now, actor, f"cancelled_by_{side}", reason)
            return self._get(db, booking_id)

    def reschedule(
        self,
        actor: str,
        booking_id: int,
        *,
        start: dt.datetime,
        bureau_terminal: str,
        facility_terminal: str,
        now: dt.datetime,
    ) -> int:
        """Move a booking before the cutoff: the old one ends as ``rescheduled``, the new one is a
        request again (the facility approves the new time)."""
        with self.store.tx() as db:
            b = self._get(db, booking_id)
            if b.status not in ACTIVE:
                raise VisitError("conflict", f"the booking is {b.status}")
            self._cutoff(b, "bureau", now)
            self._end(db, booking_id, "rescheduled", "")
            req = Request(
                b.inmate,
                bureau_terminal,
                facility_terminal,
                start,
                b.minutes,
                b.visitors,
                b.contact,
                b.lang,
                b.exception_reason,
                b.kind,
                b.workers,
            )
            new = self._insert(db, actor, req, now, replaces=booking_id)
            self._log(db, booking_id, now, actor, "rescheduled", f"to {new}")
            return new

    def no_show(self, actor: str, booking_id: int, now: dt.datetime) -> Booking:
        """The family did not come: the visit counts against the month's quota."""
        with self.store.tx() as db:
            b = self._get(db, booking_id)
            if b.status != "approved":
                raise VisitError("conflict", f"the booking is {b.status}")
            if now < b.start + dt.timedelta(minutes=self.rules.no_show_grace_minutes):
                raise VisitError("too_soon", "a no-show is marked after the grace period")
            db.execute("UPDATE bookings SET status='no_show' WHERE id=?", (booking_id,))
            self._log(db, booking_id, now, actor, "no_show", "")
            return self._get(db, booking_id)

    def next_for_terminal(self, terminal: str, now: dt.datetime) -> Booking | None:
        """The terminal's approved visit that has not ended yet, earliest first (the kiosk)."""
        since = booking.cell(now - dt.timedelta(hours=5))
        for (bid,) in self.store.rows(
            "SELECT id FROM bookings WHERE status='approved' AND start>=?"
            " AND (bureau_terminal=? OR facility_terminal=?) ORDER BY start, id",
            (since, terminal, terminal),
        ):
            b = self.get(bid)
            if b.end > now:
                return b
        return None

    def due(self, now: dt.datetime, open_minutes: int) -> list[Booking]:
        """Approved visits whose session should exist now: from ``open_minutes`` before the
        start (the terminals connect, the family agrees to the rules) until the booked end."""
        since = booking.cell(now - dt.timedelta(hours=5))
        until = booking.cell(now + dt.timedelta(minutes=open_minutes))
        out = []
        for (bid,) in self.store.rows(
            "SELECT id FROM bookings WHERE status='approved' AND start>=? AND start<=?"
            " ORDER BY start, id",
            (since, until),
        ):
            b = self.get(bid)
            if b.start - dt.timedelta(minutes=open_minutes) <= now < b.end:
                out.append(b)
        return out

    def complete(self, actor: str, booking_id: int, reason: str, now: dt.datetime) -> None:
        """The live visit is over (its time ran out, it was ended, or it never started): the
        booking is ``completed``, its holds released, the reason in its log."""
        with self.store.tx() as db:
            b = self._get(db, booking_id)
            if b.status != "approved":
                raise VisitError("conflict", f"the booking is {b.status}")
            db.execute(
                "UPDATE bookings SET status='completed', reason_code=? WHERE id=?",
                (reason[:40], booking_id),
            )
            db.execute("DELETE FROM holds WHERE booking=?", (booking_id,))
            self._log(db, booking_id, now, actor, "completed", reason[:200])

    def log(self, booking_id: int) -> list[tuple[str, str, str, str]]:
        return [
            tuple(r)
            for r in self.store.rows(
                "SELECT at, actor, action, reason FROM booking_log WHERE booking=? ORDER BY id",
                (booking_id,),
            )
        ]

    # -- internals ------------------------------------------------------------------------------
    def _cutoff(self, b: Booking, side: str, now: dt.datetime) -> None:
        if side == "bureau":
            if now > b.start - dt.timedelta(minutes=self.rules.cancel_cutoff_minutes):
                raise VisitError("too_late", "past the cancellation cutoff; ask the facility")
        elif side == "facility":
            if now >= b.end:
                raise VisitError("too_late", "the visit is over")
        else:
            raise VisitError("invalid", "side: bureau or facility")

    @staticmethod
    def _inmate(db, inmate_id: int) -> tuple:
        row = db.execute(
            "SELECT id, facility, grade, status FROM inmates WHERE id=?", (inmate_id,)
        ).fetchone()
        if row is None:
            raise VisitError("not_found", "no such inmate")
        return row

    @staticmethod
    def _check_worker(db, worker_id: int, facility: str, bureau_site: str) -> None:
        """A help-education worker may visit an inmate when their organisation serves the whole
        province (no site), the inmate's facility, or the bureau where the visit takes place."""
        row = db.execute(
            "SELECT o.site FROM workers w JOIN orgs o ON o.id=w.org WHERE w.id=?", (worker_id,)
        ).fetchone()
        if row is None:
            raise VisitError("invalid", f"workers: no help-education worker {worker_id}")
        if row[0] is not None and row[0] not in (facility, bureau_site):
            raise VisitError(
                "invalid",
                f"workers: {worker_id}'s organisation serves neither this facility nor this bureau",
            )

    @staticmethod
    def _check_visitors(db, req: Request) -> None:
        if len(set(req.workers)) != len(req.workers):
            raise VisitError("invalid", "workers: each once")
        if not (req.visitors or req.workers) or len(set(req.visitors)) != len(req.visitors):
            raise VisitError("invalid", "visitors: one or more (or a worker), each once")
        for vid in req.visitors:
            row = db.execute("SELECT inmate, expires FROM visitors WHERE id=?", (vid,)).fetchone()
            if row is None or row[0] != req.inmate:
                raise VisitError("invalid", f"visitors: {vid} is not approved for this inmate")
            if row[1] < req.start.date().isoformat():
                raise VisitError("invalid", f"visitors: the approval of {vid} expires first")

    @staticmethod
    def _used(db, inmate_id: int, start: dt.datetime, exclude: int | None) -> int:
        marks = ",".join("?" * len(COUNTED))
        return db.execute(
            f"SELECT count(*) FROM bookings WHERE inmate=? AND substr(start, 1, 7)=?"
            f" AND status IN ({marks}) AND id IS NOT ?",
            (inmate_id, booking.month(start), *COUNTED, exclude),
        ).fetchone()[0]

    @staticmethod
    def _end(db, booking_id: int, status: str, reason: str) -> None:
        db.execute(
            "UPDATE bookings SET status=?, reason_code=? WHERE id=?", (status, reason, booking_id)
        )
        db.execute("DELETE FROM holds WHERE booking=?", (booking_id,))

    @staticmethod
    def _log(db, booking_id: int, now: dt.datetime, actor: str, action: str, reason: str) -> None:
        db.execute(
            "INSERT INTO booking_log(booking, at, actor, action, reason) VALUES (?,?,?,?,?)",
            (booking_id, booking.cell(now), actor, action, reason),
        )
