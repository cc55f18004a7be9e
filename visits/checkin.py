"""Check-in at the bureau counter (R6): each visitor's identity, for this visit, against the list.

The operator reads the identity card the visitor hands over and types its number; it is compared
with the approved record through the same keyed digest the directory stores (visits/store.py), so
the number itself is never written anywhere. The operator also attests how the person was checked
(``id_card``: the card was seen and the face matches its photo; ``id_card_and_record``: also
compared with the photo on the approved record) and that the visitor signed the rules pledge. A
check-in is for one booking only: the next visit checks everyone again. Only checked-in visitors
of the booking count as present; the live visit waits until at least one is (signaling/
visits_live.py), and the session's ledger records the check as ``identity_checked`` with method
``check_in``. A help-education worker named on the booking is checked the same way against their
registration's digest (``worker=True``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from visits import booking
from visits.model import VisitError, id_number
from visits.reservations import Booking, Reservations
from visits.store import VisitStore

METHODS = ("id_card", "id_card_and_record")
OPEN_MINUTES = 60  # check-in opens an hour before the start, closes at the booked end


@dataclass(frozen=True)
class CheckIn:
    visitor: int
    name: str
    relationship: str
    id_last4: str
    at: str
    by: str
    method: str
    worker: bool = False  # a help-education worker of the booking (``visitor`` is the worker id)


class CheckIns:
    def __init__(self, store: VisitStore, res: Reservations) -> None:
        self.store, self.res = store, res

    def check_in(
        self,
        actor: str,
        booking_id: int,
        visitor_id: int,
        number: object,
        *,
        method: str,
        pledge: bool,
        now: dt.datetime,
        worker: bool = False,
    ) -> CheckIn:
        """Check in a visitor of the booking, or with ``worker`` one of its help-education
        workers (``visitor_id`` is then the worker's id; their digest is in ``workers``)."""
        if method not in METHODS:
            raise VisitError("invalid", f"method: one of {', '.join(METHODS)}")
        if pledge is not True:
            raise VisitError("invalid", "pledge: the visitor signs the rules pledge first")
        normalised = id_number(number)
        with self.store.tx() as db:
            b = self.res._get(db, booking_id)
            if b.status != "approved":
                raise VisitError("conflict", f"the booking is {b.status}")
            if now < b.start - dt.timedelta(minutes=OPEN_MINUTES):
                raise VisitError("too_soon", f"check-in opens {OPEN_MINUTES} minutes before")
            if now >= b.end:
                raise VisitError("too_late", "the visit's time is over")
            if visitor_id not in (b.workers if worker else b.visitors):
                raise VisitError("not_found", "this person is not a visitor of this booking")
            if worker:  # a worker's registration has no expiry; the booking checked eligibility
                row = db.execute(
                    "SELECT id_hash, '9999-12-31' FROM workers WHERE id=?", (visitor_id,)
                ).fetchone()
            else:
                row = db.execute(
                    "SELECT id_hash, expires FROM visitors WHERE id=? AND inmate=?",
                    (visitor_id, b.inmate),
                ).fetchone()
            if row is None:
                raise VisitError("not_found", "this person is not approved for this inmate")
            if row[1] < now.date().isoformat():
                raise VisitError("conflict", "this visitor's approval has expired")
            if row[0] != self.store.id_hash(normalised):
                raise VisitError(
                    "identity_mismatch", "the ID number does not match the approved record"
                )
            table, column = ("worker_checkins", "worker") if worker else ("checkins", "visitor")
            if db.execute(
                f"SELECT 1 FROM {table} WHERE booking=? AND {column}=?", (booking_id, visitor_id)
            ).fetchone():
                raise VisitError("conflict", "this visitor is already checked in")
            at = now.isoformat(timespec="seconds")
            db.execute(
                f"INSERT INTO {table} VALUES (?,?,?,?,?,1)",
                (booking_id, visitor_id, at, actor, method),
            )
            db.execute(
                "INSERT INTO booking_log(booking, at, actor, action, reason) VALUES (?,?,?,?,?)",
                (
                    booking_id,
                    booking.cell(now),
                    actor,
                    "checked_in",
                    f"{column} {visitor_id} {method}",
                ),
            )
        return next(
            c for c in self.checked(booking_id) if (c.visitor, c.worker) == (visitor_id, worker)
        )

    def checked(self, booking_id: int) -> list[CheckIn]:
        """Everyone of the booking checked in: relatives, then help-education workers."""
        return [
            CheckIn(*r)
            for r in self.store.rows(
                "SELECT c.visitor, v.name, v.relationship, v.id_last4, c.at, c.by, c.method"
                " FROM checkins c JOIN visitors v ON v.id=c.visitor WHERE c.booking=?"
                " ORDER BY c.at, c.visitor",
                (booking_id,),
            )
        ] + [
            CheckIn(*r, worker=True)
            for r in self.store.rows(
                "SELECT c.worker, w.name, 'help_education', w.id_last4, c.at, c.by, c.method"
                " FROM worker_checkins c JOIN workers w ON w.id=c.worker WHERE c.booking=?"
                " ORDER BY c.at, c.worker",
                (booking_id,),
            )
        ]

    def summary(self, b: Booking) -> str:
        """One line for the session's ledger: who was checked, how and by whom (no numbers)."""
        return "; ".join(
            f"{c.name} ({c.relationship}, …{c.id_last4}, {c.method}, {c.by})"
            for c in self.checked(b.id)
        )[:200]
