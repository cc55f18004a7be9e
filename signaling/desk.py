"""The consultation desk's engine: citizens queue, duty lawyers pick up, sessions are made.

It joins the pure desk (``desk/``: queue, roster, codes, store) to the session service and the
invitation tokens. A pick-up creates a ``consultation`` session (the lawyer as ``duty_lawyer``,
the citizen as ``citizen``) and hands each side its own link; the citizen's page, which polls
its ticket, finds its link there. The lawyer's pick-up is the admission: when the citizen's
phone connects to the waiting room, the desk admits them with the lawyer as the actor, so the
ledger says who let them in.

The mediator's "call a duty lawyer" (rooms' ``call_duty_lawyer``) rings the same desk: a listener
sees the duty lawyer added to a mediation and queues the mediation (priority before citizens,
any lawyer on shift may answer). The lawyer who picks it up gets that participant's link, so
they land in the space the mediator chose; the mediator's link stays as the fallback. The ticket
ends when the lawyer leaves or is released (removed), or the mediation ends.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import time
import zoneinfo

from desk import queue as q
from desk.codes import CodeStore, MemoryCodeStore, PhoneCodes, Window, derive_key, normalise_phone
from desk.errors import DeskError
from desk.hours import check_callback, is_open, next_opening
from desk.roster import SETTABLE, free_lawyers, lawyers_on_shift, pickup_refusal, points_on_shift
from desk.stats import summarise
from desk.store import DeskStore, Ticket
from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.service import ParticipantSpec

log = logging.getLogger("parley.desk")

TOPIC_LABELS = {
    "family": "婚姻家庭 Family",
    "labour": "劳动 Labour",
    "debt": "债务 Debt",
    "neighbour": "邻里纠纷 Neighbour dispute",
    "other": "其他 Other",
    "mediation": "调解支持 Mediation support",
}
CITIZEN_TTL = 4 * 3600.0  # the citizen's link: long enough for a long wait and a reconnect
INTERPRETER_LABELS = {  # the languages the entry page offers (signaling/desk_http.py)
    "sign": "手语 Sign language",
    "bo": "藏语 Tibetan",
    "ug": "维吾尔语 Uyghur",
    "mn": "蒙古语 Mongolian",
    "en": "英语 English",
    "other": "其他语言 Other language",
}
INTERPRETER_NAME = "翻译 Interpreter"


class ConsultDesk:
    def __init__(
        self,
        store: DeskStore,
        service,
        signer,
        *,
        notifier,
        timezone: str = "Asia/Shanghai",
        invitation_ttl: float = 24 * 3600,
        ring_seconds: float = 60.0,
        clock=time.time,
        code_store: CodeStore | None = None,
        secret: bytes | None = None,
    ) -> None:
        """``code_store`` keeps the phone codes and the windows (memory, or Redis when
        clustered); ``secret`` is the server's, for an HMAC key every node shares."""
        self.store, self.service, self.signer = store, service, signer
        self.notifier = notifier
        self.tz = zoneinfo.ZoneInfo(timezone)
        self.invitation_ttl = invitation_ttl
        self.ring_seconds = ring_seconds  # the mediator's fallback link after this long
        self.clock = clock
        codes = code_store if code_store is not None else MemoryCodeStore()
        key = derive_key(secret, "desk") if secret is not None else None
        self.codes = PhoneCodes(store=codes, key=key, name="desk")
        self._tasks: set[asyncio.Task] = set()  # admissions waiting for their answer
        # clustered, a consultation another node serves is read from the ledger (``peek``) and
        # commanded through the cluster's relay (cluster/relay.py); None: all are here
        self.relay = None
        self._relayed: asyncio.Task | None = None  # the last desk step sent through the relay
        self._notifying = False  # inside the session service's listener (see _ledger)
        self._after: list = []  # ledger appends held until the listener returns (no loop)
        # a hall shares one address
        self._joins_per_address = Window(30, 600.0, store=codes, name="desk:join_address")
        self._joins_per_phone = Window(3, 600.0, store=codes, name="desk:join_phone")
        service.subscribe(self.on_events)

    # -- time and the queue ---------------------------------------------------------------------
    def local(self, now: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(now, self.tz).replace(tzinfo=None)

    def _sweep(self, now: float) -> list[Ticket]:
        """Lapse the entries whose hold ran out; the live tickets after that."""
        live = self.store.live()
        lapsed = q.lapsed([t.entry() for t in live], now)
        for tid in lapsed:
            self.store.update(
                tid,
                actor="system",
                event="lapsed",
                now=now,
                expect=("waiting",),
                state="abandoned",
                ended_at=now,
            )
        return self.store.live() if lapsed else live

    def _estimate(
        self, ticket: Ticket, live: list[Ticket], now: float
    ) -> tuple[int | None, float | None]:
        entries = [t.entry() for t in live]
        pos = q.position(entries, ticket.id, now)
        if pos is None:
            return None, None
        shifts, statuses = self.store.shifts(now), self.store.statuses()
        free = len(free_lawyers(shifts, statuses, ticket.point, now))
        on_shift = len(lawyers_on_shift(shifts, ticket.point, now))
        recent = self.store.handling_times(ticket.point)
        return pos, q.estimate_wait(pos, free, on_shift, recent)

    # -- the citizen ----------------------------------------------------------------------------
    def point(self, point_id: str):
        point = self.store.point(point_id) if isinstance(point_id, str) else None
        if point is None:
            raise DeskError("not_found", "no such service point")
        return point

    def point_info(self, point_id: str) -> dict:
        point = self.point(point_id)
        now = self.clock()
        local = self.local(now)
        shifts = self.store.shifts(now)
        on_shift = lawyers_on_shift(shifts, point.id, now)
        nxt = next_opening(point.hours, local)
        live = self._sweep(now)
        return {
            "id": point.id,
            "name": point.name,
            "address": point.address,
            "hours": point.hours,
            "open_now": is_open(point.hours, local),
            "next_opening": nxt.isoformat(timespec="minutes") if nxt else None,
            "on_duty": len(on_shift),
            "available": len(free_lawyers(shifts, self.store.statuses(), point.id, now)),
            "waiting": len(q.line([t.entry() for t in live], [point.id], now)),
            "topics": list(q.TOPICS),
        }

    async def send_code(self, point_id: str, phone_raw: object, address: str) -> None:
        self.point(point_id)
        phone = normalise_phone(phone_raw)
        code = self.codes.issue(phone, address, self.clock())
        text = (
            f"您的法律咨询排队验证码是 {code}，10分钟内有效。请勿告诉他人。\n"
            f"Your legal consultation queue code is {code}. Valid for 10 minutes. Tell nobody."
        )
        try:
            await self.notifier.send(phone, "法律咨询验证码 Consultation code", text)
        except Exception:  # noqa: BLE001 - the gateway failed: say so, keep serving
            log.exception("code to %s not sent", phone[-4:])
            raise DeskError("unavailable", "the code could not be sent; try again later") from None

    def _verified(self, req, address: str, now: float) -> str:
        phone = normalise_phone(req.phone)
        if not req.consent_online:
            raise DeskError("consent_required", "consent to the online consultation is required")
        if not self._joins_per_address.allow(address, now):
            raise DeskError("throttled", "too many requests; try again in 10 minutes")
        self.codes.verify(phone, req.code, now)
        if not self._joins_per_phone.allow(phone, now):  # one number queueing again and again
            raise DeskError("throttled", "too many requests; try again in 10 minutes")
        return phone

    def join(self, point_id: str, req, address: str) -> str:
        """Queue the citizen (or give a returning one their place back); the ticket's secret."""
        point = self.point(point_id)
        now = self.clock()
        phone = self._verified(req, address, now)
        live = self._sweep(now)
        mine = next((t for t in live if t.kind == "citizen" and t.phone == phone), None)
        if mine is not None:  # came back on another device, or cleared the page: same place
            self.store.touch(mine.id, now)
            self.store.log(mine.id, "citizen", "returned", now)
            return self.store.rotate_secret(mine.id)
        if not lawyers_on_shift(self.store.shifts(now), point.id, now):
            raise DeskError("closed", "no lawyer is on duty now; ask for a call-back")
        return self._citizen_ticket(point, req, phone, now, state="waiting")

    def callback(self, point_id: str, req, address: str) -> str:
        """A call-back appointment ("call me back at …"), inside the point's opening hours."""
        point = self.point(point_id)
        now = self.clock()
        try:
            at = dt.datetime.fromisoformat(req.at)
        except ValueError:
            raise DeskError("invalid", "at: a local time like 2026-12-01T10:00") from None
        if at.tzinfo is not None:
            raise DeskError("invalid", "at: a local time without a zone, like 2026-12-01T10:00")
        check_callback(point.hours, at, self.local(now))
        phone = self._verified(req, address, now)
        return self._citizen_ticket(
            point,
            req,
            phone,
            now,
            state="callback",
            callback_at=at.replace(tzinfo=self.tz).timestamp(),
        )

    def _citizen_ticket(self, point, req, phone: str, now: float, **values) -> str:
        """A citizen's ticket from the join or call-back form (consent given); its secret."""
        ticket, secret = self.store.add_ticket(
            now=now,
            kind="citizen",
            point=point.id,
            name=req.name.strip(),
            phone=phone,
            topic=req.topic,
            lang=req.lang,
            consent_online=1,
            consent_recording=int(req.consent_recording),
            interpreter=getattr(req, "interpreter", ""),  # older callers send none
            **values,
        )
        if ticket.state == "waiting":
            self._offer(ticket, now)
        return secret

    async def legal_aid_request(
        self,
        point_id: str,
        *,
        name: str,
        phone_raw: object,
        topic: str,
        text: str,
        by: str,
        link_base: str,
    ) -> int:
        """A relative's legal-aid request filed at the bureau's visitation counter: a call-back
        ticket, due now, flagged ``legal_aid_visitation`` on the desks of the point's lawyers.
        The relative gets a text with the address of their ticket's page, where the lawyer's
        video call-back arrives. Returns the ticket's id."""
        point = self.point(point_id)
        phone = normalise_phone(phone_raw)
        if topic not in q.TOPICS:
            raise DeskError("invalid", f"topic: one of {', '.join(q.TOPICS)}")
        text = " ".join(str(text).split())
        if not text or len(text) > 200:
            raise DeskError("invalid", "the question: 1-200 characters")
        if not name.strip() or len(name) > 80:
            raise DeskError("invalid", "name: 1-80 characters")
        now = self.clock()
        ticket, secret = self.store.add_ticket(
            now=now,
            kind="citizen",
            point=point.id,
            name=name.strip(),
            phone=phone,
            topic=topic,
            consent_online=1,
            state="callback",
            callback_at=now,
            question=text,
            flag="legal_aid_visitation",
        )
        self.store.log(ticket.id, by, "filed_at_counter", now, flag="legal_aid_visitation")
        body = (
            f"您的法律援助申请已登记，值班律师将通过视频回电，请保持手机畅通：{link_base}/consult/t/{secret}\n"
            f"Your legal-aid request is filed. A duty lawyer will call you back by video here: "
            f"{link_base}/consult/t/{secret}"
        )
        try:
            await self.notifier.send(phone, "法律援助申请 Legal-aid request", body)
        except Exception:  # noqa: BLE001 - the lawyer sees the number and texts it again
            log.exception("legal-aid request %s: text not sent", ticket.id)
        return ticket.id

    async def call_back(self, account, ticket_id: int, link_base: str) -> dict:
        """The lawyer calls a call-back ticket back by video: a consultation session as for a
        pick-up, and a text to the caller's phone with the call's link (``/j/<token>``, the one
        their ticket's page also leads to; the page's own address keeps working for the
        summary afterwards)."""
        username = account.username
        now = self.clock()
        ticket = self.store.ticket(ticket_id)
        if ticket is None or ticket.kind != "citizen" or ticket.state != "callback":
            raise DeskError("not_found", "no such call-back")
        shifts, statuses = self.store.shifts(now), self.store.statuses()
        refusal = pickup_refusal(shifts, statuses, username, ticket.point, now)
        if refusal:
            raise DeskError(refusal, f"cannot call back: {refusal}")
        if any(t.state == "serving" and t.lawyer == username for t in self.store.live()):
            raise DeskError("busy", "finish the current consultation first")
        ticket = self._open_consultation(account, ticket, now, expect=("callback",))
        self.store.set_status(username, "busy", now)
        path = self._citizen_path(ticket)
        body = (
            f"值班律师正在视频回电，请打开：{link_base}{path}\n"
            f"A duty lawyer is calling you back by video now: {link_base}{path}"
        )
        try:
            await self.notifier.send(ticket.phone, "律师回电 A lawyer calls you back", body)
        except Exception:  # noqa: BLE001 - the lawyer can phone the number shown on the desk
            log.exception("call-back %s: text not sent", ticket.id)
        return self._current(ticket, username)

    def _offer(self, ticket: Ticket, now: float) -> list[str]:
        """Log whose desk rings for this new caller (free lawyers on shift at its point)."""
        lawyers = sorted(
            free_lawyers(self.store.shifts(now), self.store.statuses(), ticket.point, now)
        )
        if lawyers:
            self.store.log(ticket.id, "system", "offered", now, lawyers=lawyers)
        return lawyers

    def ticket_for(self, secret: object) -> Ticket:
        ticket = self.store.ticket_by_secret(secret)
        if ticket is None or ticket.kind != "citizen":
            raise DeskError("not_found", "no such ticket (the link may have been replaced)")
        return ticket

    def status(self, secret: object) -> dict:
        """What the citizen's page shows; polling it is the citizen's presence in the queue."""
        ticket = self.ticket_for(secret)
        now = self.clock()
        live = self._sweep(now)  # first: a page back after its hold ran out has lost the place
        ticket = self.store.ticket(ticket.id)
        if ticket.state == "waiting":
            self.store.touch(ticket.id, now)
            live = self.store.live()
        out = {
            "state": ticket.state,
            "point": ticket.point,
            "topic": ticket.topic,
            "name": ticket.name,
            "lang": ticket.lang,
            "documents": [d["name"] for d in self.store.documents(ticket.id)],
        }
        if ticket.state == "waiting":
            pos, eta = self._estimate(ticket, live, now)
            out |= {"position": pos, "eta_seconds": eta}
        if ticket.state == "callback":
            out["callback_at"] = self.local(ticket.callback_at).isoformat(timespec="minutes")
        if ticket.state == "serving" and ticket.session:
            path = self._citizen_path(ticket)
            if path:
                out["join_path"] = path
        if ticket.state == "done":
            out |= {
                "summary": ticket.summary,
                "referral": bool(ticket.referral),
                "referral_note": ticket.referral_note,
                "rating": ticket.rating,
            }
        return out

    def _citizen_path(self, ticket: Ticket) -> str | None:
        """The citizen's link into their consultation, while it runs."""
        state = self.service.peek(ticket.session)
        p = state.participants.get(ticket.citizen_pid)
        if state.ended or p is None or p.space == "removed":
            return None
        token = self.signer.issue(state.id, p.id, p.role, ttl=CITIZEN_TTL, gen=p.invitation_gen)
        return f"/j/{token}"

    def leave(self, secret: object) -> None:
        ticket = self.ticket_for(secret)
        now = self.clock()
        self.store.update(
            ticket.id,
            actor="citizen",
            event="left_queue",
            now=now,
            expect=("waiting", "callback"),
            state="cancelled",
            ended_at=now,
        )

    def rate(self, secret: object, stars: int, comment: str) -> None:
        ticket = self.ticket_for(secret)
        if ticket.state != "done":
            raise DeskError("conflict", "rate the consultation after it ended")
        if ticket.rating is not None:
            raise DeskError("conflict", "this consultation is rated already")
        ticket = self.store.update(
            ticket.id,
            actor="citizen",
            event="rated",
            now=self.clock(),
            expect=("done",),
            rating=stars,
            comment=comment.strip(),
        )
        self._ledger(ticket, "rating", stars=stars, comment=bool(ticket.comment))

    # -- the lawyer -----------------------------------------------------------------------------
    def desk_state(self, username: str) -> dict:
        now = self.clock()
        live = self._sweep(now)
        shifts = self.store.shifts(now)
        mine = points_on_shift(shifts, username, now)
        statuses = self.store.statuses()
        status = statuses.get(username, "away")
        current = next((t for t in live if t.state == "serving" and t.lawyer == username), None)
        queue = [  # a colleague hands a citizen to me: first, whatever else waits
            self._row(t, now) | {"transfer_from": t.lawyer}
            for t in live
            if t.state == "serving" and t.transfer_to == username
        ]
        if mine:
            entries = [t.entry() for t in live]
            by_id = {t.id: t for t in live}
            for e in q.line(entries, mine, now):
                t = by_id[e.id]
                queue.append(self._row(t, now, present=q.present(e, now)))
        day = self.local(now).replace(hour=0, minute=0, second=0, microsecond=0)
        since = day.replace(tzinfo=self.tz).timestamp()
        return {
            "user": username,
            "status": status,
            "on_shift": sorted(mine),
            "points": [{"id": p.id, "name": p.name} for p in self.store.points()],
            "shifts": [
                {
                    "point": s.point,
                    "start": self.local(s.start).isoformat(timespec="minutes"),
                    "end": self.local(s.end).isoformat(timespec="minutes"),
                }
                for s in shifts
                if s.lawyer == username
            ][:10],
            "queue": queue,
            "current": self._current(current, username) if current else None,
            "callbacks": [
                self._row(t, now)
                | {"at": self.local(t.callback_at).isoformat(timespec="minutes"), "phone": t.phone}
                for t in self.store.callbacks()
                if t.point in mine
            ],
            "stats": summarise([t.record() for t in self.store.since(since)], since),
        }

    def _row(self, t: Ticket, now: float, present: bool = True) -> dict:
        earlier = (
            sum(1 for x in self.store.for_phone(t.phone) if x.id != t.id and x.state == "done")
            if t.phone
            else 0
        )
        return {
            "id": t.id,
            "kind": t.kind,
            "name": t.name,
            "point": t.point,
            "topic": t.topic,
            "topic_label": TOPIC_LABELS.get(t.topic, t.topic),
            "lang": t.lang,
            "waited": round(now - t.queued_at),
            "present": present,
            "returning": earlier,
            "question": t.question,
            "recording_consent": bool(t.consent_recording),
            "flag": t.flag,
            "interpreter": t.interpreter,
            "documents": [  # what the citizen attached (opened at /desk/api/tickets/…)
                {k: d[k] for k in ("id", "name", "mime", "size")}
                for d in (self.store.documents(t.id) if t.kind == "citizen" else [])
            ],
        }

    def _current(self, t: Ticket, username: str) -> dict:
        now = self.clock()
        out = self._row(t, now) | {"session": t.session, "transfer_to": t.transfer_to}
        if t.kind == "citizen" and t.point:
            shifts, statuses = self.store.shifts(now), self.store.statuses()
            out["colleagues"] = [  # whom this consultation can be handed to
                {"username": u, "status": statuses.get(u, "away")}
                for u in sorted(lawyers_on_shift(shifts, t.point, now) - {username})
            ]
        if t.session:
            state = self.service.peek(t.session)
            p = state.participants.get(t.lawyer_pid)
            if p is not None and not state.ended and p.space != "removed":
                token = self.signer.issue(
                    state.id,
                    p.id,
                    p.role,
                    ttl=self.invitation_ttl,
                    gen=p.invitation_gen,
                    staff=username,
                )
                out["join_path"] = f"/j/{token}"
            i = state.participants.get(t.interpreter_pid) if t.interpreter_pid else None
            if i is not None:  # the interpreter asked for: not yet here, in the call, or gone
                out["interpreter_state"] = (
                    "joined" if i.space not in ("waiting", "removed") else i.space
                )
        return out

    def set_status(self, username: str, status: str) -> None:
        if status not in SETTABLE:
            raise DeskError("invalid", "status: available or away")
        now = self.clock()
        if self.store.statuses().get(username) == "busy" and any(
            t.state == "serving" and t.lawyer == username for t in self.store.live()
        ):
            raise DeskError("busy", "finish the current consultation first")
        self.store.set_status(username, status, now)

    async def pickup(self, account, ticket_id: int | None) -> dict:
        """The next caller (``ticket_id`` None) or a chosen one, for a lawyer on shift."""
        username = account.username
        now = self.clock()
        live = self._sweep(now)
        shifts, statuses = self.store.shifts(now), self.store.statuses()
        mine = points_on_shift(shifts, username, now)
        if not mine:
            raise DeskError("not_on_shift", "you are not on shift now: calls do not reach you")
        if any(t.state == "serving" and t.lawyer == username for t in live):
            raise DeskError("busy", "finish the current consultation first")
        handed = [t for t in live if t.state == "serving" and t.transfer_to == username]
        chosen = next((t for t in handed if ticket_id in (None, t.id)), None)
        if chosen is not None:
            return await self._accept_transfer(account, chosen, now)
        entries = [t.entry() for t in live]
        if ticket_id is None:
            entry = q.next_for(entries, mine, now)
            if entry is None:
                raise DeskError("not_found", "nobody is waiting for you")
        else:
            try:
                entry = q.choose(entries, ticket_id, mine, now)
            except ValueError as exc:
                code = str(exc)
                raise DeskError(
                    code,
                    {
                        "not_found": "no such caller is waiting",
                        "not_your_point": "this caller is at a point where you are not on shift",
                        "caller_away": "this caller's page is away; they keep their place a while",
                    }[code],
                ) from None
        refusal = pickup_refusal(shifts, statuses, username, entry.point, now)
        if refusal:
            raise DeskError(refusal, f"cannot pick up: {refusal}")
        ticket = self.store.ticket(entry.id)
        if ticket.kind == "mediation":
            ticket = self.store.update(
                ticket.id,
                actor=f"staff:{username}",
                event="picked",
                now=now,
                expect=("waiting",),
                state="serving",
                lawyer=username,
                picked_at=now,
            )
            self._ledger(ticket, "accepted", lawyer=username, question=ticket.question or None)
        else:
            ticket = self._open_consultation(account, ticket, now)
        self.store.set_status(username, "busy", now)
        return self._current(ticket, username)

    # -- transfer ----------------------------------------------------------------------------
    def transfer(self, username: str, ticket_id: int, to: str) -> dict:
        """Hand my consultation to a colleague on shift at its point (``to`` their username),
        or take the offer back (``to`` empty). The citizen stays in the call with me until the
        colleague accepts; their desk shows the citizen first in their queue."""
        ticket = self._mine_serving(username, ticket_id)
        now = self.clock()
        if ticket.kind != "citizen" or not ticket.session:
            raise DeskError("invalid", "only a citizen's consultation can be transferred")
        if not to:
            if ticket.transfer_to is None:
                raise DeskError("conflict", "no transfer is pending")
            self.store.update(
                ticket.id,
                actor=f"staff:{username}",
                event="transfer_cancelled",
                now=now,
                expect=("serving",),
                transfer_to=None,
            )
            return self._current(self.store.ticket(ticket.id), username)
        if to == username:
            raise DeskError("invalid", "choose another lawyer")
        shifts, statuses = self.store.shifts(now), self.store.statuses()
        refusal = pickup_refusal(shifts, statuses, to, ticket.point, now)
        busy = any(t.state == "serving" and t.lawyer == to for t in self.store.live())
        if refusal in ("not_on_shift", "not_your_point"):
            raise DeskError("not_on_shift", "that lawyer is not on shift at this point now")
        if refusal == "busy" or busy:
            raise DeskError("busy", "that lawyer is in another consultation")
        ticket = self.store.update(
            ticket.id,
            actor=f"staff:{username}",
            event="transferred",
            now=now,
            expect=("serving",),
            transfer_to=to,
        )
        self._ledger(ticket, "transferred", by=username, to=to)
        return self._current(ticket, username)

    def invite_interpreter(self, username: str, ticket_id: int) -> dict:
        """The link for the interpreter's place in my consultation (created at the pick-up when
        the citizen asked for one). Refused once someone holds that place: one interpreter."""
        ticket = self._mine_serving(username, ticket_id)
        if not ticket.interpreter_pid or not ticket.session:
            raise DeskError("conflict", "the citizen did not ask for an interpreter")
        state = self.service.peek(ticket.session)
        p = state.participants.get(ticket.interpreter_pid)
        if state.ended or p is None:
            raise DeskError("ended", "the consultation has ended")
        if p.connected or p.space != "waiting":
            raise DeskError("conflict", "an interpreter has already joined this consultation")
        token = self.signer.issue(
            state.id, p.id, p.role, ttl=self.invitation_ttl, gen=p.invitation_gen
        )
        now = self.clock()
        self.store.log(
            ticket.id, f"staff:{username}", "interpreter_invited", now, lang=ticket.interpreter
        )
        self._ledger(ticket, "interpreter_invited", language=ticket.interpreter, by=username)
        return {"path": f"/j/{token}", "language": ticket.interpreter}

    def _mine_serving(self, username: str, ticket_id: int) -> Ticket:
        ticket = self.store.ticket(ticket_id)
        if ticket is None:
            raise DeskError("not_found", "no such ticket")
        if ticket.lawyer != username:
            raise DeskError("forbidden", "this is another lawyer's consultation")
        if ticket.state != "serving":
            raise DeskError("conflict", f"the consultation is {ticket.state}")
        return ticket

    async def _accept_transfer(self, account, ticket: Ticket, now: float) -> dict:
        """Take over the consultation: the lawyer's place in the session gets a new link (the
        first lawyer's link stops working: rooms' ``reissue_invitation``), the ticket is mine."""
        username, before = account.username, ticket.lawyer
        if ticket.point not in points_on_shift(self.store.shifts(now), username, now):
            raise DeskError("not_your_point", "you are not on shift at this caller's point")
        try:
            await self._command(
                ticket.session,
                f"staff:{username}",
                {
                    "type": "reissue_invitation",
                    "participant": ticket.lawyer_pid,
                    "name": account.display_name[:80],  # the citizen's tile names the colleague
                },
            )
        except CommandError as exc:  # the citizen left or the session ended meanwhile
            self.store.update(
                ticket.id, actor="system", event="transfer_failed", now=now, transfer_to=None
            )
            raise DeskError(
                "conflict", f"the consultation cannot be taken over: {exc.code}"
            ) from None
        ticket = self.store.update(
            ticket.id,
            actor=f"staff:{username}",
            event="accepted",
            now=now,
            expect=("serving",),
            lawyer=username,
            transfer_to=None,
        )
        self._ledger(ticket, "accepted", lawyer=username, transferred_from=before)
        self.store.set_status(username, "busy", now)
        if self.store.statuses().get(before) == "busy":
            self.store.set_status(before, "available", now)
        return self._current(ticket, username)

    async def to_legal_aid(self, username: str, ticket_id: int, summary: str) -> int:
        """End my consultation by opening a legal-aid case with its summary: the case is on the
        hall's legal-aid list, the citizen's page and phone get the summary and the case number."""
        ticket = self._mine_serving(username, ticket_id)
        if ticket.kind != "citizen":
            raise DeskError("invalid", "only a citizen's consultation becomes a legal-aid case")
        case = self.store.add_legal_aid(ticket, username, summary.strip(), self.clock())
        self.store.log(ticket.id, f"staff:{username}", "legal_aid", self.clock(), case=case)
        await self.end(username, ticket.id, summary, True, f"法律援助案件 Legal-aid case #{case}")
        return case

    def _open_consultation(
        self, account, ticket: Ticket, now: float, expect: tuple = ("waiting",)
    ) -> Ticket:
        # Claim first (a second lawyer's pick-up of the same caller is refused here), then create.
        self.store.update(
            ticket.id,
            actor=f"staff:{account.username}",
            event="picked",
            now=now,
            expect=expect,
            state="serving",
            lawyer=account.username,
            picked_at=now,
        )
        try:
            state = self.service.create_session(
                "consultation",
                actor=f"staff:{account.username}",
                title=f"法律咨询 Consultation · {TOPIC_LABELS.get(ticket.topic, ticket.topic)}",
                case_number=f"DESK-{ticket.id}",
                participants=[
                    ParticipantSpec(name=account.display_name[:80], role="duty_lawyer"),
                    ParticipantSpec(name=ticket.name[:80], role="citizen"),
                    *(  # the interpreter's place, when asked for: the lawyer sends its link
                        [ParticipantSpec(name=INTERPRETER_NAME, role="interpreter")]
                        if ticket.interpreter
                        else []
                    ),
                ],
            )
        except CommandError:
            self.store.update(
                ticket.id,
                actor="system",
                event="pickup_failed",
                now=now,
                state=expect[0],
                lawyer=None,
                picked_at=None,
            )
            raise
        people = {p.role: p.id for p in state.participants.values()}
        ticket = self.store.update(
            ticket.id,
            actor="system",
            event="session",
            now=now,
            session=state.id,
            citizen_pid=people["citizen"],
            lawyer_pid=people["duty_lawyer"],
            interpreter_pid=people.get("interpreter"),
        )
        self._queued_steps(ticket)
        self._ledger(ticket, "accepted", lawyer=account.username)
        return ticket

    async def end(self, username: str, ticket_id: int, summary: str, referral: bool, note: str):
        """End the consultation with the lawyer's written summary (and a legal-aid referral)."""
        ticket = self.store.ticket(ticket_id)
        if ticket is None:
            raise DeskError("not_found", "no such ticket")
        if ticket.lawyer != username:
            raise DeskError("forbidden", "this is another lawyer's consultation")
        if ticket.state != "serving":
            raise DeskError("conflict", f"the consultation is {ticket.state}")
        now = self.clock()
        if ticket.kind == "citizen" and ticket.session:
            try:
                await self._command(
                    ticket.session,
                    f"staff:{username}",
                    {"type": "end_session", "reason": "consultation ended"},
                )
            except CommandError as exc:
                if exc.code != "ended":
                    raise
        ticket = self.store.update(
            ticket.id,
            actor=f"staff:{username}",
            event="summary",
            now=now,
            expect=("serving",),
            state="done",
            ended_at=now,
            summary=summary.strip(),
            referral=int(referral),
            referral_note=note.strip() if referral else "",
            transfer_to=None,
        )
        self._ledger(
            ticket,
            "summary",
            lawyer=username,
            sha256=hashlib.sha256(ticket.summary.encode()).hexdigest(),
            chars=len(ticket.summary),
            referral=bool(ticket.referral),
            referral_note=ticket.referral_note[:200] or None,
        )
        self.store.set_status(username, "available", now)
        if ticket.phone:
            text = f"值班律师咨询小结 Summary of your consultation:\n{ticket.summary}\n"
            if ticket.referral:
                text += f"\n法律援助转介 Legal-aid referral: {ticket.referral_note or '—'}\n"
            try:
                await self.notifier.send(ticket.phone, "法律咨询小结 Consultation summary", text)
            except Exception:  # noqa: BLE001 - the page shows it anyway
                log.exception("summary for ticket %s not sent", ticket.id)

    def history(self, username: str, ticket_id: int) -> list[dict]:
        """The citizen's earlier consultations, for the lawyer serving or seeing them; logged."""
        now = self.clock()
        ticket = self.store.ticket(ticket_id)
        mine = points_on_shift(self.store.shifts(now), username, now)
        if ticket is None or ticket.kind != "citizen":
            raise DeskError("not_found", "no such ticket")
        if not (ticket.lawyer == username or (ticket.state == "waiting" and ticket.point in mine)):
            raise DeskError("forbidden", "only the lawyer on duty for this caller may read it")
        earlier = [
            t for t in self.store.for_phone(ticket.phone) if t.id != ticket.id and t.state == "done"
        ]
        self.store.log(
            ticket.id, f"staff:{username}", "history_read", now, tickets=[t.id for t in earlier]
        )
        return [
            {
                "date": self.local(t.queued_at).isoformat(timespec="minutes"),
                "topic": t.topic,
                "topic_label": TOPIC_LABELS.get(t.topic, t.topic),
                "lawyer": t.lawyer,
                "summary": t.summary,
                "referral": bool(t.referral),
                "referral_note": t.referral_note,
            }
            for t in earlier
        ]

    def _ledger(self, ticket: Ticket, step: str, **detail) -> None:
        """The desk's step in the session's own hash-chained ledger (rooms' ``desk_event``, by
        the system). Inside the session service's listener the append waits for the loop's next
        turn: a command appended from within another's notification would reach the other
        listeners before the events that caused it."""
        if not ticket.session:
            return
        raw = {
            "type": "desk_event",
            "step": step,
            "ticket": ticket.id,
            "detail": {k: v for k, v in detail.items() if v is not None},
        }
        command = decode_command(raw)

        def append() -> None:
            try:
                self.service.execute(ticket.session, "system", command)
            except CommandError as exc:
                if exc.code == "not_found" and self.relay is not None:
                    self._relay_step(ticket, step, raw)  # another node serves the session
                    return
                log.warning("desk step %s of ticket %s not in the ledger: %s", step, ticket.id, exc)

        if not self._notifying:
            append()
            return
        try:
            asyncio.get_running_loop().call_soon(append)
        except RuntimeError:  # no loop (a command line tool, a unit test): when the listener ends
            self._after.append(append)

    def _relay_step(self, ticket: Ticket, step: str, raw: dict) -> None:
        """A desk step for a session another node serves, sent through the relay after the
        steps sent before it (one chain per desk: the ledger keeps their order)."""
        previous = self._relayed

        async def send() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            try:
                await self.relay.execute(ticket.session, "system", raw)
            except Exception as exc:  # noqa: BLE001 - refused, or Redis away: said, not raised
                log.warning("desk step %s of ticket %s not in the ledger: %s", step, ticket.id, exc)

        try:
            task = asyncio.get_running_loop().create_task(send())
        except RuntimeError:  # no loop: no relay either (a command line tool)
            log.warning("desk step %s of ticket %s not in the ledger: no loop", step, ticket.id)
            return
        self._relayed = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _command(self, session: str, actor: str, raw: dict) -> None:
        """A lawyer's command on their consultation wherever it is served: here, or through
        the cluster's relay on the node that serves it (rooms decides there, as here)."""
        if self.relay is None:
            self.service.execute(session, actor, decode_command(raw))
        else:
            await self.relay.execute(session, actor, raw)

    def _queued_steps(self, ticket: Ticket) -> None:
        """At the session's start, the ticket's past: when and where it queued, whom it rang."""
        self._ledger(
            ticket,
            "queued",
            queued_at=ticket.queued_at,
            point=ticket.point,
            topic=ticket.topic,
            recording_consent=bool(ticket.consent_recording),
            flag=ticket.flag or None,
        )
        for ts, _, _, kind, data in self.store.log_rows(ticket.id):
            if kind == "offered":
                lawyers = json.loads(data).get("lawyers", [])
                self._ledger(ticket, "offered", at=ts, lawyers=",".join(lawyers)[:200])

    # -- rooms' events --------------------------------------------------------------------------
    def on_events(self, state, events) -> None:
        """A listener of the session service: queue a mediation's call, admit a picked-up
        citizen, close a mediation's ticket. Quick (a few SQLite statements), never raises."""
        if all(e.type.startswith("desk.") for e in events):
            return  # the desk's own steps
        self._notifying = True
        try:
            if state.kind == "mediation":
                self._mediation_events(state, events)
            elif state.kind == "consultation":
                self._consultation_events(state, events)
        except Exception:  # noqa: BLE001 - a listener must not break the command that ran
            log.exception("desk listener failed on %s", state.id)
        finally:
            self._notifying = False
        if self._after:  # no loop: after this listener's own work, still in the command
            pending, self._after = self._after, []
            for append in pending:
                append()

    def _mediation_events(self, state, events) -> None:
        for e in events:
            if e.type == "participant.added" and e.data["participant"]["role"] == "duty_lawyer":
                ticket, _ = self.store.add_ticket(
                    now=e.ts,
                    kind="mediation",
                    point=None,
                    name=state.title[:120],
                    topic="mediation",
                    state="waiting",
                    session=state.id,
                    lawyer_pid=e.data["participant"]["id"],
                    question=(state.case_number or "")[:200],
                )
                self._offer(ticket, e.ts)
                self._queued_steps(ticket)
        ending = {
            e.data.get("participant")
            for e in events
            if e.type in ("participant.left", "participant.removed")
        }
        ended = any(e.type == "session.ended" for e in events)
        connected = {e.data.get("participant") for e in events if e.type == "participant.connected"}
        if not (ending or ended or connected):
            return
        for t in self.store.for_session(state.id):
            if t.kind != "mediation" or t.state not in ("waiting", "serving"):
                continue
            now = events[-1].ts
            if t.state == "waiting" and (ended or t.lawyer_pid in ending):
                self.store.update(
                    t.id,
                    actor="system",
                    event="withdrawn",
                    now=now,
                    state="cancelled",
                    ended_at=now,
                )
                self._ledger(t, "withdrawn", reason="ended" if ended else "lawyer_gone")
            elif t.state == "waiting" and t.lawyer_pid in connected:
                # someone came in through the mediator's fallback link: nobody needs ringing
                self.store.update(
                    t.id,
                    actor="system",
                    event="answered_by_link",
                    now=now,
                    state="cancelled",
                    ended_at=now,
                )
                self._ledger(t, "withdrawn", reason="answered_by_link")
            elif t.state == "serving" and (ended or t.lawyer_pid in ending):
                self.store.update(
                    t.id, actor="system", event="released", now=now, state="done", ended_at=now
                )
                self._ledger(t, "released", lawyer=t.lawyer, reason="ended" if ended else "left")
                if self.store.statuses().get(t.lawyer) == "busy":
                    self.store.set_status(t.lawyer, "available", now)

    def _consultation_events(self, state, events) -> None:
        """Admit the citizen when they reach the waiting room, or when the lawyer (back, or a
        colleague who took over) arrives and finds them there (a safety hold moved them while
        no lawyer was connected, as during a slow transfer)."""
        came = {
            e.data["participant"]
            for e in events
            if e.type in ("participant.connected", "participant.rejoined")
        }
        if not came:
            return
        ticket = next(iter(self.store.for_session(state.id)), None)
        if ticket is None or ticket.state != "serving":
            return
        for pid in (ticket.citizen_pid, ticket.interpreter_pid):  # the interpreter as the citizen
            person = state.participants.get(pid) if pid else None
            if person is None or person.space != "waiting":
                continue
            if pid not in came and not (ticket.lawyer_pid in came and person.connected):
                continue
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (a command line tool): nobody to admit
            task = loop.create_task(self._admit_after_answer(state.id, pid, ticket.lawyer_pid))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _admit_after_answer(self, session: str, citizen: str, lawyer: str) -> None:
        """The phone's ``connect`` comes from its offer, whose answer (with the waiting room's
        slot map) leaves only after the ledger's durability barrier. Admitting at once would
        send the joint room's slot map before that answer, and the page would take the answer's
        stale map last (seen in the e2e: media flowing, no tile). So the admission waits for the
        same barrier: the answer is queued on the socket first."""
        await self.service.durable()
        await asyncio.sleep(0)
        self._admit(session, citizen, lawyer)

    def _admit(self, session: str, citizen: str, lawyer: str) -> None:
        try:
            self.service.execute(
                session, lawyer, decode_command({"type": "admit", "participant": citizen})
            )
        except CommandError as exc:  # ended meanwhile, or already admitted
            log.info("desk admit in %s refused: %s", session, exc.code)
