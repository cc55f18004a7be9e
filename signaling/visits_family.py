"""The relatives' own page (``/family``): book, cancel and move a visit, order a family meal and
read the education record from a phone, without coming to the counter.

A relative has no account. They type the mobile number or e-mail address on their approved-visitor
record (the contact the facility registered, visits/model.py); a 6-digit code goes there through
the notifier (SMS spool or SMTP, signaling/desk_notify.py) and is checked by the desk's
``PhoneCodes`` (desk/codes.py: HMAC only, 10 minutes, 5 tries, limited per contact and per client
address). A contact on no approved record gets the same answer and no code, so the page tells
nobody who is on a list. A verified contact gets a session token (``Authorization: Bearer``, kept
by the page in ``sessionStorage``, 30 minutes), kept where the codes are: this process's memory
(a restart asks for a new code) or Redis when clustered (any node or worker accepts it, a logout
on one ends it on all). Every call then acts as the approved-visitor records of that contact *as of now*
(visits/access.py ``family_records``: approved, not expired, not a lawyer) and names the record it
acts as; a booking is the relative's when one of their records is among its visitors.

Booking goes the counter's way (visits/reservations.py): proposals on the preferred dates at the
bureau the relative chooses, a request the facility approves; within the month's quota only (an
exception is the counter's, with a supervisor). Cancelling and moving end at the cutoff. Actions
are logged as ``family:<visitor id>``. Every refusal is ``{ok: false, error: {code, message}}``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import secrets
import time
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from desk.codes import (
    CodeStore,
    MemoryCodeStore,
    PhoneCodes,
    StoreUnavailable,
    Window,
    derive_key,
)
from desk.errors import DeskError
from signaling.desk_http import body, client_address
from signaling.guard import refusal
from signaling.http import WEB_DIR
from visits import notices
from visits.access import family_records
from visits.booking import ACTIVE, CELL, parse_start
from visits.meals import Meals, yuan
from visits.model import VisitError, Visitor, login_contact
from visits.records import Records
from visits.reservations import Booking, Request

log = logging.getLogger("parley.visits")

SESSION_TTL = 1800.0
STATUS = {
    "invalid": 400,
    "unavailable": 503,  # the code store (Redis, when clustered) is away
    "no_code": 400,
    "wrong_code": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_approved": 403,
    "not_found": 404,
    "conflict": 409,
    "quota": 409,
    "too_late": 409,
    "too_soon": 409,
    "needs_supervisor": 409,
    "locked": 429,
    "throttled": 429,
}

Id = Annotated[int, msgspec.Meta(ge=1, le=2**53)]
Contact = Annotated[str, msgspec.Meta(min_length=3, max_length=200)]
Code = Annotated[str, msgspec.Meta(pattern=r"^\d{6}$")]
Day = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")]
Slug = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
When = Annotated[str, msgspec.Meta(max_length=16)]
Minutes = Annotated[int, msgspec.Meta(ge=CELL, le=240, multiple_of=CELL)]


class _Body(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


class CodeBody(_Body):
    contact: Contact


class LoginBody(_Body):
    contact: Contact
    code: Code


class ProposalBody(_Body):
    visitor: Id
    bureau: Slug
    dates: Annotated[list[Day], msgspec.Meta(min_length=1, max_length=7)]
    minutes: Minutes = 30


class BookBody(_Body):
    visitor: Id
    start: When
    bureau_terminal: Slug
    facility_terminal: Slug
    minutes: Minutes = 30
    co_visitors: Annotated[list[Id], msgspec.Meta(max_length=9)] = []
    lang: Literal["zh", "en"] = "zh"


class MoveProposalBody(_Body):
    dates: Annotated[list[Day], msgspec.Meta(min_length=1, max_length=7)]


class MoveBody(_Body):
    start: When
    bureau_terminal: Slug
    facility_terminal: Slug


class MealLine(_Body):
    item: Id
    qty: Annotated[int, msgspec.Meta(ge=1, le=31)]


class MealBody(_Body):
    visitor: Id
    lines: Annotated[list[MealLine], msgspec.Meta(min_length=1, max_length=20)]


class RecordBody(_Body):
    visitor: Id


def answers(handler):
    """VisitError, DeskError (the codes) as their JSON refusal."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (VisitError, DeskError) as exc:
            return refusal(exc.code, exc.message, STATUS.get(exc.code, 400))

    wrapped.__name__ = handler.__name__
    return wrapped


def _ok(**data) -> web.Response:
    return web.json_response({"ok": True, **data}, headers={"Cache-Control": "no-store"})


def _session_key(token: str) -> str:
    """The store's key of a sign-in: a digest, so the store never holds a usable token."""
    return "family:session:" + hashlib.sha256(token.encode()).hexdigest()


class FamilyPages:
    def __init__(
        self,
        console,
        notifier,
        *,
        clock=time.time,
        code_store: CodeStore | None = None,
        secret: bytes | None = None,
    ) -> None:
        """``code_store`` keeps the codes and the windows (memory, or Redis when clustered);
        ``secret`` is the server's, for an HMAC key every node shares."""
        self.c = console
        self.res = console.res
        self.directory = console.directory
        self.meals = Meals(console.res.store)
        self.records = Records(console.res.store)
        self.notifier = notifier
        self.clock = clock
        codes = code_store if code_store is not None else MemoryCodeStore()
        key = derive_key(secret, "family") if secret is not None else None
        # 3 codes a contact, 30 an address, per 15 minutes
        self.codes = PhoneCodes(store=codes, key=key, name="family")
        # login attempts per client address
        self._logins = Window(30, 900.0, store=codes, name="family:login_address")
        self._signed_in = codes  # token digest -> the contact, SESSION_TTL
        self._sends: set[asyncio.Task] = set()

    # -- who is asking --------------------------------------------------------------------------
    def _contact(self, request: web.Request) -> str:
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if not 20 <= len(token) <= 100:
            raise VisitError("unauthorized", "sign in with a one-time code first")
        try:
            contact = self._signed_in.recall(_session_key(token), self.clock())
        except StoreUnavailable:
            raise VisitError("unavailable", "the server cannot check this now; try again") from None
        if contact is None:
            raise VisitError("unauthorized", "sign in with a one-time code first")
        return contact

    def _records(self, request: web.Request) -> list[Visitor]:
        records = family_records(self.res.store, self._contact(request), self._today())
        if not records:
            raise VisitError("not_approved", "no approved visitor record has this contact now")
        return records

    @staticmethod
    def _as(records: list[Visitor], visitor_id: int) -> Visitor:
        """The caller's record ``visitor_id``; another person's record is forbidden."""
        mine = next((v for v in records if v.id == visitor_id), None)
        if mine is None:
            raise VisitError("forbidden", "visitor: not one of your approved records")
        return mine

    def _booking(self, records: list[Visitor], booking_id: str) -> Booking:
        if not booking_id.isdigit() or len(booking_id) > 12:
            raise VisitError("invalid", "booking: a number")
        b = self.res.get(int(booking_id))
        if not {v.id for v in records} & set(b.visitors):
            raise VisitError("forbidden", "this booking is not yours")
        return b

    def _today(self) -> str:
        return self.c.now().date().isoformat()

    # -- signing in -----------------------------------------------------------------------------
    async def code(self, request: web.Request) -> web.Response:
        req = await body(request, CodeBody)
        contact = login_contact(req.contact)
        code = self.codes.issue(contact, client_address(request), self.clock())
        if family_records(self.res.store, contact, self._today()):
            subject, text = notices.code_message(code)
            task = asyncio.get_running_loop().create_task(self._send(contact, subject, text))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)
        # the same answer whether or not the contact is on a list: nobody learns who is
        return _ok(sent="if_registered")

    async def _send(self, contact: str, subject: str, text: str) -> None:
        try:
            await self.notifier.send(contact, subject, text)
        except Exception:  # noqa: BLE001 - a gateway's trouble is logged; the relative retries
            log.warning("family code to …%s not sent", contact[-4:], exc_info=True)

    async def login(self, request: web.Request) -> web.Response:
        req = await body(request, LoginBody)
        contact = login_contact(req.contact)
        now = self.clock()
        if not self._logins.allow(client_address(request), now):
            raise VisitError("throttled", "too many attempts; try again in 15 minutes")
        self.codes.verify(contact, req.code, now)
        if not family_records(self.res.store, contact, self._today()):
            raise VisitError("not_approved", "no approved visitor record has this contact now")
        token = secrets.token_urlsafe(32)
        try:
            self._signed_in.remember(_session_key(token), contact, SESSION_TTL, now)
        except StoreUnavailable:
            raise VisitError("unavailable", "you cannot sign in now; try again") from None
        return _ok(token=token, expires_in=int(SESSION_TTL))

    async def logout(self, request: web.Request) -> web.Response:
        self._contact(request)
        token = request.headers["Authorization"][7:]
        try:
            self._signed_in.forget(_session_key(token))
        except StoreUnavailable:
            raise VisitError(
                "unavailable", "the server cannot sign you out now; try again"
            ) from None
        return _ok()

    # -- what the relative sees -----------------------------------------------------------------
    async def me(self, request: web.Request) -> web.Response:
        records = self._records(request)
        now = self.c.now()
        out, facilities = [], {}
        for v in records:
            inmate = self.directory.inmate(v.inmate)
            site = self.directory.site(inmate.facility)
            facilities[inmate.facility] = site.name
            co = [
                {"id": o.id, "name": o.name, "relationship": o.relationship}
                for o in self.directory.visitors(v.inmate)
                if o.id != v.id
                and o.relationship != "lawyer"
                and o.expires >= now.date().isoformat()
            ]
            out.append(
                {
                    "visitor": v.id,
                    "name": v.name,
                    "relationship": v.relationship,
                    "expires": v.expires,
                    "inmate": {
                        "name": inmate.name,
                        "number": inmate.number,
                        "facility": inmate.facility,
                        "facility_name": site.name,
                        "visitable": inmate.status == "visitable",
                    },
                    "co_visitors": co,
                }
            )
        bureaus = [
            {"id": s.id, "name": s.name} for s in self.directory.sites() if s.kind == "bureau"
        ]
        menus = {
            f: [
                {"id": i.id, "name": i.name, "price": yuan(i.price_cents), "per_month": i.per_month}
                for i in self.meals.menu(f)
            ]
            for f in facilities
        }
        ids = [v.id for v in records]
        orders = [
            {
                "id": o.id,
                "visitor": o.visitor,
                "placed_at": o.placed_at,
                "total": yuan(o.total_cents),
                "status": o.status,
                "delivered_at": o.delivered_at,
                "lines": [{"name": n, "qty": q} for n, q, _ in o.lines],
            }
            for o in self.meals.orders(visitors=ids)[:50]
        ]
        bookings = [self._booking_view(b, now) for b in self.res.for_visitors(ids)]
        return _ok(
            records=out,
            bureaus=bureaus,
            menus=menus,
            orders=orders,
            bookings=bookings,
            cutoff_minutes=self.res.rules.cancel_cutoff_minutes,
        )

    def _booking_view(self, b: Booking, now: dt.datetime) -> dict:
        inmate = self.directory.inmate(b.inmate)
        bureau = self.directory.terminal(b.bureau_terminal)
        names = {v.id: v.name for v in self.directory.visitors(b.inmate)}
        open_ = b.status in ACTIVE and now <= b.start - dt.timedelta(
            minutes=self.res.rules.cancel_cutoff_minutes
        )
        return {
            "id": b.id,
            "start": b.start.isoformat(timespec="minutes"),
            "minutes": b.minutes,
            "status": b.status,
            "reason": b.reason_code,
            "inmate": inmate.name if inmate else "",
            "bureau": self._site_name(bureau.site) if bureau else "",
            "bureau_site": bureau.site if bureau else "",
            "visitors": [names.get(v, "") for v in b.visitors],
            "workers": len(b.workers),
            "can_change": open_,
        }

    def _site_name(self, site_id: str) -> str:
        site = self.directory.site(site_id)
        return site.name if site else site_id

    # -- booking --------------------------------------------------------------------------------
    @staticmethod
    def _days(raw: list[str], now: dt.datetime) -> list[dt.date]:
        try:
            days = sorted({dt.date.fromisoformat(d) for d in raw})
        except ValueError:
            raise VisitError("invalid", "dates: YYYY-MM-DD") from None
        if days[0] < now.date():
            raise VisitError("invalid", "dates: not in the past")
        return days

    def _bureau(self, site_id: str):
        site = self.directory.site(site_id)
        if site is None or site.kind != "bureau":
            raise VisitError("not_found", "bureau: no such justice bureau")
        return site

    @staticmethod
    def _proposals(props) -> list[dict]:
        return [
            {
                "start": p.start.isoformat(timespec="minutes"),
                "minutes": p.minutes,
                "bureau_terminal": p.bureau_terminal,
                "facility_terminal": p.facility_terminal,
            }
            for p in props
        ]

    async def proposals(self, request: web.Request) -> web.Response:
        records = self._records(request)
        req = await body(request, ProposalBody)
        me = self._as(records, req.visitor)
        now = self.c.now()
        bureau = self._bureau(req.bureau)
        props = self.res.propose(bureau.id, me.inmate, self._days(req.dates, now), req.minutes, now)
        return _ok(proposals=self._proposals(props))

    async def book(self, request: web.Request) -> web.Response:
        records = self._records(request)
        req = await body(request, BookBody)
        me = self._as(records, req.visitor)
        others = {v.id: v for v in self.directory.visitors(me.inmate)}
        for vid in req.co_visitors:
            if vid == me.id or vid not in others or others[vid].relationship == "lawyer":
                raise VisitError("invalid", f"co_visitors: {vid} is not a relative on this list")
        contact = self._contact(request)
        bid = self.res.request(
            f"family:{me.id}",
            Request(
                me.inmate,
                req.bureau_terminal,
                req.facility_terminal,
                parse_start(req.start),
                req.minutes,
                (me.id, *req.co_visitors),
                contact=contact,
                lang=req.lang,
            ),
            self.c.now(),
        )
        b = self.res.get(bid)
        await notices.notify(self.notifier, "requested", b, self._bureau_name(b))
        return _ok(booking=self._booking_view(b, self.c.now()))

    def _bureau_name(self, b: Booking) -> str:
        t = self.directory.terminal(b.bureau_terminal)
        return self._site_name(t.site) if t else b.bureau_terminal

    async def cancel(self, request: web.Request) -> web.Response:
        records = self._records(request)
        b = self._booking(records, request.match_info["id"])
        actor = f"family:{next(v.id for v in records if v.id in b.visitors)}"
        b = self.res.cancel(actor, b.id, side="bureau", reason="family_request", now=self.c.now())
        await notices.notify(self.notifier, "cancelled", b, self._bureau_name(b))
        return _ok(booking=self._booking_view(b, self.c.now()))

    async def move_proposals(self, request: web.Request) -> web.Response:
        records = self._records(request)
        b = self._booking(records, request.match_info["id"])
        req = await body(request, MoveProposalBody)
        now = self.c.now()
        bureau = self.directory.terminal(b.bureau_terminal)
        props = self.res.propose(
            bureau.site, b.inmate, self._days(req.dates, now), b.minutes, now, exclude=b.id
        )
        return _ok(proposals=self._proposals(p for p in props if p.start != b.start))

    async def move(self, request: web.Request) -> web.Response:
        records = self._records(request)
        b = self._booking(records, request.match_info["id"])
        req = await body(request, MoveBody)
        actor = f"family:{next(v.id for v in records if v.id in b.visitors)}"
        new = self.res.reschedule(
            actor,
            b.id,
            start=parse_start(req.start),
            bureau_terminal=req.bureau_terminal,
            facility_terminal=req.facility_terminal,
            now=self.c.now(),
        )
        nb = self.res.get(new)
        await notices.notify(self.notifier, "rescheduled", nb, self._bureau_name(nb))
        return _ok(booking=self._booking_view(nb, self.c.now()))

    # -- meals and the record -------------------------------------------------------------------
    async def meal(self, request: web.Request) -> web.Response:
        records = self._records(request)
        req = await body(request, MealBody)
        me = self._as(records, req.visitor)
        lines: dict[int, int] = {}
        for line in req.lines:
            if line.item in lines:
                raise VisitError("invalid", f"item {line.item}: once per order")
            lines[line.item] = line.qty
        oid = self.meals.order(f"family:{me.id}", me.inmate, me.id, lines, self.c.now())
        order = next(o for o in self.meals.orders(visitors=[me.id]) if o.id == oid)
        return _ok(order={"id": oid, "total": yuan(order.total_cents), "status": order.status})

    async def record(self, request: web.Request) -> web.Response:
        records = self._records(request)
        req = await body(request, RecordBody)
        me = self._as(records, req.visitor)
        entries = self.records.read(f"family:{me.id}", me.inmate, me.id, self.c.now())
        return _ok(
            entries=[
                {"kind": e.kind, "period": e.period, "title": e.title, "detail": e.detail}
                for e in entries
            ]
        )

    # -- the page -------------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.Response:
        resp = web.FileResponse(WEB_DIR / "family.html")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Referrer-Policy"] = "no-referrer"
        return resp

    def routes(self) -> list[web.RouteDef]:
        api = "/family/api"
        return [
            web.get("/family", self.page),
            web.post(f"{api}/code", answers(self.code)),
            web.post(f"{api}/login", answers(self.login)),
            web.post(f"{api}/logout", answers(self.logout)),
            web.get(f"{api}/me", answers(self.me)),
            web.post(f"{api}/proposals", answers(self.proposals)),
            web.post(f"{api}/bookings", answers(self.book)),
            web.post(f"{api}/bookings/{{id}}/cancel", answers(self.cancel)),
            web.post(f"{api}/bookings/{{id}}/proposals", answers(self.move_proposals)),
            web.post(f"{api}/bookings/{{id}}/reschedule", answers(self.move)),
            web.post(f"{api}/meals", answers(self.meal)),
            web.post(f"{api}/record", answers(self.record)),
        ]
