"""The live visit: an approved booking becomes a session at its time, and goes live by itself.

Once a second (``run``), for every approved booking from ``OPEN_MINUTES`` before its start to its
booked end:

1. open: create the session — ``visitation``, or ``privileged`` for a lawyer's visit (R2) — with
   the bureau's terminal as the family (``visitor``; ``lawyer``) and the facility's terminal as the
   ``inmate``, the visit's length from the booking (``set_time_limit``), and remember it in
   ``live_visits``; the kiosks now get their place in it (signaling/visits_kiosk.py);
2. once someone of the booking is checked in at the counter, record that in the session as the
   family's identity check (method ``check_in``, R6): nobody unchecked is admitted;
3. from the booked start, when both terminals are connected and admissible: start the recording
   (it must be required and the recorder ready: R1, "no recorder, no visit") and admit both;
   the session clock (rooms/rules.py, R17) runs from there;
4. a session that ended (time up, ended by an officer, an outage beyond the grace) completes the
   booking; one that never went live by the booked end is ended with ``no_visit`` and its
   booking stays approved, for the counter's no-show or the facility's cancellation.

Every step is a command of the system actor through rooms, so it is in the session's ledger, and
rooms refuses what its rules refuse. No policy here: only the order of the steps.

Clustered, a visit's session may be served by another node than this clock's (it took the
session over after a crash): the clock then reads it from the ledger (``SessionService.peek``)
and sends the same steps through the cluster's relay (cluster/relay.py). The time warnings and
the end at zero are decided by the serving node's own system tick (rooms/rules.py, R17).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3

from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.rules import admission_problem
from rooms.service import ParticipantSpec
from rooms.state import WAITING
from signaling.visits_statement import Statements
from visits.checkin import CheckIns
from visits.model import VisitError

log = logging.getLogger("parley.visits")

OPEN_MINUTES = 15  # the session opens this long before the start: the kiosks connect, agree
TOKEN_TTL = 4 * 3600.0  # a terminal's invitation; it asks for a fresh one every few seconds


class LiveVisits:
    def __init__(self, console, service, signer) -> None:
        self.c = console  # VisitsConsole: directory, reservations, the province's clock
        self.service, self.signer = service, signer
        self.store = console.res.store
        self.checks = CheckIns(self.store, console.res)
        # the lawyer's signed statement of a privileged visit (R2); server.py gives it the PKI
        self.statements = Statements(service)
        # clustered, the cluster's relay (cluster/relay.py): a visit another node serves (it
        # took the session over) is read from the ledger and stepped through its node
        self.relay = None
        # clustered, ``await role()`` says whether this node holds the cluster's one clock
        # (cluster.registry.Registry.hold); None: the clock is this process's alone
        self.role = None

    def now(self) -> dt.datetime:
        return dt.datetime.now(self.c.zone).replace(tzinfo=None, microsecond=0)

    # -- the records --------------------------------------------------------------------------
    def row(self, *, booking: int | None = None, session: str | None = None) -> tuple | None:
        """(booking, session, kind, bureau participant, facility participant, ended)."""
        column, value = ("booking", booking) if booking is not None else ("session", session)
        rows = self.store.rows(
            "SELECT booking, session, kind, bureau_pid, facility_pid, ended FROM live_visits"
            f" WHERE {column}=?",
            (value,),
        )
        return rows[0] if rows else None

    def open_rows(self) -> list[tuple]:
        return self.store.rows(
            "SELECT booking, session, kind, bureau_pid, facility_pid, ended FROM live_visits"
            " WHERE ended=0 ORDER BY booking"
        )

    def for_terminal(self, terminal, b) -> dict | None:
        """The terminal's place in its booking's open session, with a fresh invitation."""
        row = self.row(booking=b.id)
        if row is None or row[5]:
            return None
        try:  # wherever it is served (a node that took it over: read from the ledger)
            state = self.service.peek(row[1])
        except CommandError:
            return None
        if state.ended:
            return None
        pid = row[3] if terminal.id == b.bureau_terminal else row[4]
        person = state.participants[pid]
        token = self.signer.issue(
            state.id, pid, person.role, ttl=TOKEN_TTL, gen=person.invitation_gen
        )
        return {
            "open": True,
            "session": state.id,
            "kind": state.kind,
            "role": person.role,
            "token": token,
        }

    # -- the steps ----------------------------------------------------------------------------
    async def run(self, interval: float = 1.0) -> None:
        """Beat every ``interval``; when clustered, only while this node holds the cluster's
        one clock (``self.role``: every node's bookings are one database, so two clocks would
        open each visit twice)."""
        while True:
            await asyncio.sleep(interval)
            try:
                if self.role is not None and not await self.role():
                    continue
                await self.tick()
            except Exception:  # noqa: BLE001 - the visits' clock must keep running
                log.exception("live visits step failed")

    def step(self, now: dt.datetime | None = None) -> list[tuple]:
        """Open the due bookings and step the visits served here; returns the open visits
        another node serves (``tick`` steps them through the relay)."""
        now = now or self.now()
        for b in self.c.res.due(now, OPEN_MINUTES):
            if self.row(booking=b.id) is None:
                self._open(b, now)
        away = []
        for row in self.open_rows():
            if self.relay is not None and not self.relay.here(row[1]):
                away.append(row)
                continue
            try:
                self._advance(row, now)
            except (CommandError, VisitError) as exc:
                log.warning("live visit %s: %s %s", row[0], exc.code, exc.message)
        return away

    async def tick(self, now: dt.datetime | None = None) -> None:
        """One beat of the clock: ``step``, then the visits another node serves (after a
        takeover), read from the ledger and commanded through the relay, with the same steps."""
        now = now or self.now()
        for row in self.step(now):
            try:
                await self._advance_away(row, now)
            except (CommandError, VisitError) as exc:
                log.warning("live visit %s: %s %s", row[0], exc.code, exc.message)

    async def _advance_away(self, row: tuple, now: dt.datetime) -> None:
        state = self.service.peek(row[1])
        for raw in self._steps(row, state, now):
            await self.relay.execute(row[1], "system", raw)
            self.service.peek(row[1])  # the mirror folds what the owner appended

    def _system(self, session: str, **raw) -> None:
        self.service.execute(session, "system", decode_command(raw))

    def _open(self, b, now: dt.datetime) -> None:
        d = self.c.directory
        inmate = d.inmate(b.inmate)
        bureau = d.terminal(b.bureau_terminal)
        site = d.site(bureau.site) if bureau else None
        guest = "visitor" if b.kind == "visitation" else "lawyer"
        room = f"{site.name if site else ''} {bureau.name if bureau else b.bureau_terminal}"
        facility = d.terminal(b.facility_terminal)
        # "<facility site>/V-<booking>": the facility's reviewers and supervisors find the
        # visit's recording by it (recording/review.py visit_site, R3)
        held_at = facility.site if facility else ""
        state = self.service.create_session(
            b.kind,
            actor="system",
            title=f"会见 Visit #{b.id}",
            case_number=f"{held_at}/V-{b.id}",
            participants=[
                ParticipantSpec(room.strip()[:80] or "—", guest),
                ParticipantSpec((inmate.name if inmate else "—")[:80], "inmate"),
            ],
        )
        family, held = list(state.participants)
        self._system(state.id, type="set_time_limit", seconds=b.minutes * 60)
        try:
            with self.store.tx() as db:
                db.execute(
                    "INSERT INTO live_visits(booking, session, kind, bureau_pid, facility_pid,"
                    " created) VALUES (?,?,?,?,?,?)",
                    (b.id, state.id, b.kind, family, held, now.isoformat(timespec="seconds")),
                )
        except (sqlite3.IntegrityError, VisitError) as exc:
            # another node's clock opened it meanwhile (the clock passing between nodes), or
            # the database refused: this session is nobody's visit; the next beat looks again
            self._system(state.id, type="end_session", reason="not_opened")
            log.warning("visit %s not opened: %s", b.id, getattr(exc, "message", exc))
            return
        log.info("visit session opened", extra={"session": state.id})

    def _advance(self, row: tuple, now: dt.datetime) -> None:
        state = self.service.state(row[1])
        for raw in self._steps(row, state, now):
            self._system(row[1], **raw)

    def _steps(self, row: tuple, state, now: dt.datetime):
        """The system's commands due on one visit, in order; the caller runs each before the
        next is decided (``state`` is folded forward in between)."""
        booking_id, _, _, family_id, inmate_id, _ = row
        b = self.c.res.get(booking_id)
        if state.ended:
            self._close(booking_id, b, state.ended_reason or "ended", now)
            return
        family, inmate = state.participants[family_id], state.participants[inmate_id]
        if not family.identity_checked and self.checks.checked(b.id):
            detail = self.checks.summary(b)
            yield {
                "type": "mark_identity_checked",
                "participant": family.id,
                "method": "check_in",
                "detail": detail,
            }
        if now >= b.end and not state.clock_started:
            yield {"type": "end_session", "reason": "no_visit"}
            return
        if now < b.start:
            return
        people = (inmate, family)
        if not any(p.space == WAITING for p in people):
            return
        if any(p.space == WAITING and admission_problem(state, p) for p in people):
            return
        if any(not p.connected for p in people):
            return
        policy = state.policy
        if policy.recording == "required" and not state.recording:
            if state.recorder != "ready":
                return  # R1: no recorder, no visit; the conductor reports it when it is
            yield {"type": "start_recording"}
        for p in people:
            if p.space == WAITING:
                yield {"type": "admit", "participant": p.id}

    def _close(self, booking_id: int, b, reason: str, now: dt.datetime) -> None:
        with self.store.tx() as db:
            db.execute("UPDATE live_visits SET ended=1 WHERE booking=?", (booking_id,))
        # a visit that never went live is not a completed one: the counter marks the no-show
        # (the family did not come) or the facility cancels (a fault); it stays approved
        if b.status == "approved" and reason != "no_visit":
            self.c.res.complete("system", booking_id, reason, now)
