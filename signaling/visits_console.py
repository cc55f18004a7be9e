"""The visitation console: capacity grid, booking at the bureau counter, decisions at the
facility, cancellation and no-shows, the directory's terminals (device credentials) and CSV import.

Every route logs the staff member in (signaling/staff.py), reads their site-scoped grants
(visits/access.py) and asks for the permission at the site the object belongs to: a booking's
facility for decisions, its bureau for no-shows, the terminal's site for credentials. A refusal
answers a bilingual page with the code (``invalid`` 400, ``forbidden`` 403, ``not_found`` 404,
``conflict``/``quota``/``too_late`` 409) and changes nothing. Storage is the visitation SQLite
file; its calls are short and run on the loop like the ledger's.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from aiohttp import web

from recording.review import may_see_queue
from signaling.pages import esc, page
from signaling.staff import form, require_staff
from signaling.visits_checkin import CheckInPages
from signaling.visits_directory import DirectoryPages
from signaling.visits_kiosk import Kiosk
from signaling.visits_live import LiveVisits
from signaling.visits_meals import MealPages
from signaling.visits_officer import OfficerConsole
from signaling.visits_pages import (
    ERRORS,
    VISITS_STAFF,
    book_form,
    booking_row,
    bookings_table,
    grid,
    number,
)
from signaling.visits_records import RecordPages
from visits import notices
from visits.access import ALL_SITES, allowed, require, sites_of
from visits.booking import Rules, parse_start
from visits.directory import Directory
from visits.model import VisitError, contact, date, slug, text
from visits.reservations import Request, Reservations
from visits.store import VisitStore

STYLE = "<link rel='stylesheet' href='/static/visits.css'>"


class VisitsConsole:
    def __init__(
        self,
        store: VisitStore,
        *,
        rules: Rules,
        notifier,
        timezone: str,
        service=None,
        signer=None,
    ) -> None:
        self.directory = Directory(store)
        self.res = Reservations(store, rules)
        self.notifier = notifier
        self.zone = ZoneInfo(timezone)
        # the live visit needs the sessions (rooms) and invitations; without them, booking only
        self.live = LiveVisits(self, service, signer) if service is not None else None
        self.officer = OfficerConsole(self, service, signer) if service is not None else None

    def now(self) -> dt.datetime:
        return dt.datetime.now(self.zone).replace(tzinfo=None, second=0, microsecond=0)

    def _staff(self, request):
        """The staff member, their session and grants; remembered for the error page."""
        account, sess = require_staff(request)
        request[VISITS_STAFF] = (account, sess)
        return account, sess, self.directory.grants(account.username)

    def _page(self, title, body, account, sess, status=200):
        return page(title, STYLE + body, status=status, user=account.display_name, csrf=sess.csrf)

    def _site(self, grants, action: str, site_id: str):
        """The site, if the grants allow the action there (forbidden first: no probing)."""
        require(grants, action, site_id)
        site = self.directory.site(site_id)
        if site is None:
            raise VisitError("not_found", "no such site")
        return site

    def _inmate_by_number(self, facility: object, number: object):
        """The inmate with that number at that facility (the counter's search)."""
        inmate = self.directory.inmate_by_number(
            slug(facility, "facility"), text(number, "number", 32)
        )
        if inmate is None:
            raise VisitError("not_found", "no inmate with that number at that facility")
        return inmate

    @staticmethod
    def _refuse(exc: VisitError, account=None, sess=None) -> web.Response:
        status, title = ERRORS.get(exc.code, (400, exc.code))
        body = (
            f"<h1>{esc(title)}</h1><p class='error' role='alert' data-code='{esc(exc.code)}'>"
            f"{esc(exc.code)}: {esc(exc.message)}</p><p><a href='/visits'>返回 Back</a></p>"
        )
        if account is None:
            return page(title, body, status=status)
        return page(title, body, status=status, user=account.display_name, csrf=sess.csrf)

    def _guard(self, handler):
        async def run(request: web.Request) -> web.Response:
            try:
                return await handler(request)
            except VisitError as exc:
                sess_info = request.get(VISITS_STAFF) or (None, None)
                return self._refuse(exc, *sess_info)

        return run

    async def _form(self, request):
        account, sess, grants = self._staff(request)
        fields = await form(request, sess)
        return account, sess, grants, fields

    # -- pages ----------------------------------------------------------------------------------
    async def home(self, request: web.Request) -> web.Response:
        account, sess, grants = self._staff(request)
        sites = self.directory.sites()
        mine = sites_of(grants)
        shown = [s for s in sites if s.id in mine or ALL_SITES in mine]
        rows = "".join(
            f"<tr><td><a href='/visits/sites/{esc(s.id)}'>{esc(s.name)}</a></td><td>{esc(s.id)}</td>"
            f"<td>{esc(s.kind)}</td><td>{esc(', '.join(sorted(g.role for g in grants if g.site in (s.id, ALL_SITES))))}</td></tr>"
            for s in shown
        )
        tools = (
            "<p><a href='/visits/import'>批量导入 CSV import</a></p>"
            if allowed(grants, "directory.edit", ALL_SITES)
            else ""
        )
        if may_see_queue(account, grants):  # R3 (signaling/review.py)
            tools += "<p><a id='review-queue' href='/review'>录像审阅队列 Review queue</a></p>"
        body = (
            "<h1>远程会见 Remote visitation</h1>"
            + (
                "<table class='list'><tr><th>单位 Site</th><th>编号 Id</th><th>类型 Kind</th>"
                f"<th>权限 Roles</th></tr>{rows}</table>"
                if rows
                else "<p>您没有会见相关权限。You hold no visitation grants; ask an administrator.</p>"
            )
            + tools
        )
        return self._page("远程会见 Visits", body, account, sess)

    async def site(self, request: web.Request) -> web.Response:
        account, sess, grants = self._staff(request)
        site = self._site(grants, "site.view", request.match_info["site"])
        raw = request.query.get("date")
        day = dt.date.fromisoformat(date(raw, "date")) if raw else self.now().date()
        terminals = self.directory.terminals(site.id)
        maintenance = {
            t.id: [
                (dt.datetime.fromisoformat(a), dt.datetime.fromisoformat(b))
                for a, b in self.directory.maintenance(t.id)
            ]
            for t in terminals
        }
        held = self.res.held_cells([t.id for t in terminals], day)
        rows = []
        if allowed(grants, "booking.view", site.id):
            for b in self.res.at_site(site.id, day):
                rows.append(
                    booking_row(
                        b, self.directory.inmate(b.inmate), self._actions(grants, b), sess.csrf
                    )
                )
        links = []
        if allowed(grants, "booking.request", site.id):
            links.append(
                f"<a class='button primary' href='/visits/sites/{esc(site.id)}/book'>预约会见 Book a visit</a>"
            )
        if self.live is not None and allowed(grants, "visit.live", site.id):
            links.append(f"<a href='/visits/sites/{esc(site.id)}/live'>实时会见 Live visits</a>")
        if allowed(grants, "meals.menu", site.id) or allowed(grants, "meals.order", site.id):
            links.append(f"<a href='/visits/sites/{esc(site.id)}/meals'>亲情点餐 Family meals</a>")
        if allowed(grants, "records.publish", site.id) or allowed(grants, "records.read", site.id):
            links.append(
                f"<a href='/visits/sites/{esc(site.id)}/records'>教育改造表现 Education record</a>"
            )
        if allowed(grants, "booking.request", site.id):  # signaling/visits_legal_aid.py
            links.append(
                f"<a href='/visits/sites/{esc(site.id)}/legal-aid'>法律援助申请 Legal-aid request</a>"
            )
        if allowed(grants, "directory.view", site.id):
            links.append(f"<a href='/visits/sites/{esc(site.id)}/directory'>名录 Directory</a>")
        prev, nxt = day - dt.timedelta(days=1), day + dt.timedelta(days=1)
        body = (
            f"<h1>{esc(site.name)}</h1><p>{' · '.join(links)}</p>"
            f"<form method='get' class='inline'><label>日期 Date<input type='date' name='date' "
            f"value='{day.isoformat()}'></label><button type='submit'>查看 Show</button>"
            f"<a href='?date={prev}'>← {prev}</a><a href='?date={nxt}'>{nxt} →</a></form>"
            f"<h2>容量 Capacity {day.isoformat()}</h2>{grid(terminals, maintenance, held, day)}"
            + (
                f"<h2>预约 Bookings</h2>{bookings_table(rows)}"
                if allowed(grants, "booking.view", site.id)
                else ""
            )
        )
        return self._page(site.name, body, account, sess)

    def _actions(self, grants, b) -> set[str]:
        facility = self.directory.terminal(b.facility_terminal).site
        bureau = self.directory.terminal(b.bureau_terminal).site
        out = set()
        if allowed(grants, "booking.decide", facility):
            out.add("decide")
        if allowed(grants, "booking.cancel", facility) or allowed(grants, "booking.cancel", bureau):
            out.add("cancel")
        if allowed(grants, "booking.no_show", bureau):
            out.add("no_show")
        if allowed(grants, "booking.checkin", bureau):
            out.add("checkin")
        return out

    async def book(self, request: web.Request) -> web.Response:
        account, sess, grants = self._staff(request)
        site = self._site(grants, "booking.request", request.match_info["site"])
        if site.kind != "bureau":
            raise VisitError("invalid", "visits are booked at a bureau")
        q = request.query
        facilities = [s for s in self.directory.sites() if s.facility]
        options = "".join(
            f"<option value='{esc(s.id)}'{' selected' if q.get('facility') == s.id else ''}>{esc(s.name)}</option>"
            for s in facilities
        )
        find = (
            f"<h1>预约会见 Book a visit · {esc(site.name)}</h1>"
            "<form method='get' class='stack'>"
            f"<label>监所 Facility<select name='facility'>{options}</select></label>"
            f"<label>服刑人员编号 Inmate number<input name='number' maxlength='32' required value='{esc(q.get('number', ''))}'></label>"
            f"<label>希望日期（空格分隔）Preferred dates (space separated)<input name='dates' maxlength='200' required value='{esc(q.get('dates', ''))}' placeholder='2030-01-08 2030-01-09'></label>"
            "<label>时长 Minutes<select name='minutes'><option>30</option><option>15</option></select></label>"
            "<button type='submit'>查找时段 Find times</button></form>"
        )
        if not q.get("number"):
            return self._page("预约 Book", find, account, sess)
        facility = slug(q.get("facility"), "facility")
        inmate = self.directory.inmate_by_number(facility, text(q.get("number"), "number", 32))
        if inmate is None:
            raise VisitError("not_found", "no inmate with that number at that facility")
        days = sorted(
            {dt.date.fromisoformat(date(d, "dates")) for d in q.get("dates", "").split()[:7]}
        )
        if not days:
            raise VisitError("invalid", "dates: one or more dates YYYY-MM-DD")
        minutes = number(q.get("minutes", "30"), "minutes")
        now = self.now()
        proposals = self.res.propose(site.id, inmate.id, days, minutes, now)
        note = ""
        if not proposals:
            proposals = self.res.propose(
                site.id, inmate.id, days, minutes, now, respect_quota=False
            )
            if proposals:
                note = (
                    "<p class='error'>本月会见额度已用完：需填写例外理由，由监所领导审批。"
                    "The month's quota is used: give an exception reason; a supervisor decides.</p>"
                )
        visitors = [
            v for v in self.directory.visitors(inmate.id) if v.expires >= days[0].isoformat()
        ]
        body = (
            find
            + note
            + book_form(
                site.id,
                sess.csrf,
                inmate,
                visitors,
                proposals,
                {"minutes": str(minutes)},
                workers=self.res.workers_for(inmate.id, site.id),  # help-education (帮教)
            )
        )
        return self._page("预约 Book", body, account, sess)

    async def create(self, request: web.Request) -> web.Response:
        account, sess, grants, fields = await self._form(request)
        site = self._site(grants, "booking.request", request.match_info["site"])
        posted = await request.post()
        visitors = tuple(number(v, "visitor") for v in posted.getall("visitor", [])[:8])
        start, bureau_terminal, facility_terminal = (fields.get("slot", "").split("|") + ["", ""])[
            :3
        ]
        terminal = self.directory.terminal(bureau_terminal)
        if terminal is None or terminal.site != site.id:
            raise VisitError("invalid", "slot: not a terminal of this bureau")
        lang = fields.get("lang", "zh")
        if lang not in ("zh", "en"):
            raise VisitError("invalid", "lang: zh or en")
        req = Request(
            inmate=number(fields.get("inmate"), "inmate"),
            bureau_terminal=bureau_terminal,
            facility_terminal=facility_terminal,
            start=parse_start(start),
            minutes=number(fields.get("minutes"), "minutes"),
            visitors=visitors,
            contact=contact(fields.get("contact")),
            lang=lang,
            exception_reason=text(
                fields.get("exception_reason"), "exception_reason", 200, optional=True
            ),
            kind=fields.get("kind", "visitation"),  # checked by visits/reservations.py
            workers=tuple(number(w, "worker") for w in posted.getall("worker", [])[:8]),
        )
        bid = self.res.request(f"staff:{account.username}", req, self.now())
        await notices.notify(self.notifier, "requested", self.res.get(bid), site.name)
        raise web.HTTPSeeOther(f"/visits/sites/{site.id}?date={req.start.date()}#b{bid}")

    def _booking(self, request):
        try:
            return self.res.get(number(request.match_info["bid"], "booking"))
        except VisitError as exc:
            raise VisitError("not_found", "no such booking") from exc

    def _sites_of(self, b):
        return self.directory.terminal(b.bureau_terminal).site, self.directory.terminal(
            b.facility_terminal
        ).site

    async def decide(self, request: web.Request) -> web.Response:
        account, sess, grants, fields = await self._form(request)
        b = self._booking(request)
        bureau, facility = self._sites_of(b)
        require(grants, "booking.decide", facility)
        decision = fields.get("decision")
        if decision not in ("approve", "reject"):
            raise VisitError("invalid", "decision: approve or reject")
        b = self.res.decide(
            f"staff:{account.username}",
            b.id,
            approve=decision == "approve",
            reason=fields.get("reason", ""),
            supervisor=allowed(grants, "booking.exception", facility),
            now=self.now(),
        )
        await notices.notify(
            self.notifier,
            "approved" if decision == "approve" else "rejected",
            b,
            self._name(bureau),
        )
        raise web.HTTPSeeOther(f"/visits/sites/{facility}?date={b.start.date()}#b{b.id}")

    async def cancel(self, request: web.Request) -> web.Response:
        account, sess, grants, fields = await self._form(request)
        b = self._booking(request)
        bureau, facility = self._sites_of(b)
        if allowed(grants, "booking.cancel", facility):
            side, back = "facility", facility
        elif allowed(grants, "booking.cancel", bureau):
            side, back = "bureau", bureau
        else:
            raise VisitError("forbidden", "booking.cancel is not among your grants here")
        b = self.res.cancel(
            f"staff:{account.username}",
            b.id,
            side=side,
            reason=fields.get("reason", ""),
            now=self.now(),
        )
        await notices.notify(self.notifier, "cancelled", b, self._name(bureau))
        raise web.HTTPSeeOther(f"/visits/sites/{back}?date={b.start.date()}#b{b.id}")

    async def no_show(self, request: web.Request) -> web.Response:
        account, sess, grants, fields = await self._form(request)
        b = self._booking(request)
        bureau, _ = self._sites_of(b)
        require(grants, "booking.no_show", bureau)
        b = self.res.no_show(f"staff:{account.username}", b.id, self.now())
        raise web.HTTPSeeOther(f"/visits/sites/{bureau}?date={b.start.date()}#b{b.id}")

    def _name(self, site_id: str) -> str:
        site = self.directory.site(site_id)
        return site.name if site else site_id

    def routes(self) -> list[web.RouteDef]:
        pages = DirectoryPages(self)
        g = self._guard
        return [
            web.get("/visits", g(self.home)),
            web.get("/visits/sites/{site}", g(self.site)),
            web.get("/visits/sites/{site}/book", g(self.book)),
            web.post("/visits/sites/{site}/bookings", g(self.create)),
            web.post("/visits/bookings/{bid}/decide", g(self.decide)),
            web.post("/visits/bookings/{bid}/cancel", g(self.cancel)),
            web.post("/visits/bookings/{bid}/no-show", g(self.no_show)),
            *pages.routes(g),
            *CheckInPages(self).routes(g),
            *MealPages(self).routes(g),
            *RecordPages(self).routes(g),
            *Kiosk(self.directory, self.res, self.zone.key, live=self.live).routes(),
            *(self.officer.routes(g) if self.officer else []),
        ]
