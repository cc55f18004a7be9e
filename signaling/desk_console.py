"""The lawyers' side of the desk: ``/desk`` (the queue, pick up, the consultation, the summary),
its JSON API, the admin's points and shifts, and the printable QR poster of a service point.

Staff login as everywhere (signaling/staff.py); the API needs the role ``duty_lawyer`` (or
``admin``) and the session's CSRF token in ``X-CSRF-Token`` for every change. Being logged in is
not enough to receive calls: only a shift that covers now puts a point's queue on the desk.
"""

from __future__ import annotations

import datetime as dt
import hmac
import io

from aiohttp import web

from desk.errors import DeskError
from signaling.desk import ConsultDesk
from signaling.desk_http import (
    CallBackRequest,
    EndRequest,
    HistoryRequest,
    InterpreterRequest,
    LegalAidRequest,
    PickupRequest,
    StatusRequest,
    TransferRequest,
    answers,
    body,
)
from signaling.pages import esc, page
from signaling.staff import ACCOUNTS, current, form, require_staff


def _lawyer(request: web.Request):
    """The logged-in duty lawyer (or admin) for the JSON API: errors as JSON, never redirects."""
    sess = current(request)
    account = request.app[ACCOUNTS].get(sess.username) if sess else None
    if account is None:
        raise DeskError("forbidden", "log in as a duty lawyer first")
    if not account.roles & {"duty_lawyer", "admin"}:
        raise DeskError("forbidden", "this needs the role duty_lawyer")
    if request.method == "POST" and not hmac.compare_digest(
        request.headers.get("X-CSRF-Token", ""), sess.csrf
    ):
        raise DeskError("csrf", "the page expired; reload it")
    return account


class DeskConsole:
    def __init__(self, desk: ConsultDesk, config) -> None:
        self.desk, self.config = desk, config

    def base(self, request: web.Request) -> str:
        return self.config.public_url or f"{request.scheme}://{request.host}"

    # -- pages ----------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        account, sess = require_staff(request, "duty_lawyer")
        return self._index(request, account, sess)

    def _index(
        self, request: web.Request, account, sess, error: str = "", status: int = 200
    ) -> web.Response:
        points = self.desk.store.points()
        posters = "".join(
            f"<li><a href='/desk/points/{esc(p.id)}/poster'>{esc(p.name)}</a></li>" for p in points
        )
        admin = self._admin(request, sess, error) if "admin" in account.roles else ""
        body_html = (
            "<link rel='stylesheet' href='/static/desk.css'>"  # page() links the console's only
            f"<div id='desk' class='desk' data-csrf='{esc(sess.csrf)}'>"
            "<section id='me' aria-live='polite'></section>"
            "<section id='current' hidden></section>"
            "<section><h2>排队 Queue</h2><p><button id='pickup-next' class='primary big' "
            "type='button' hidden>接听下一位 Pick up next</button></p>"
            "<table class='list' id='queue'></table></section>"
            "<section><h2>预约回电 Call-backs</h2><table class='list' id='callbacks'></table>"
            "</section>"
            "<section><h2>今日统计 Today</h2><dl id='stats' class='stats'></dl></section>"
            "</div>"
            + self._legal_aid_list()
            + f"<section><h2>服务点海报 Service point posters</h2><ul>{posters or '<li>—</li>'}</ul>"
            f"</section>{admin}"
            "<script src='/static/desk.js'></script>"
        )
        resp = page(
            "值班律师工作台 Duty-lawyer desk",
            body_html,
            status=status,
            user=account.display_name,
            csrf=sess.csrf,
        )
        return resp

    def _legal_aid_list(self) -> str:
        """The hall's legal-aid cases opened from consultations (newest first)."""
        rows = "".join(
            f"<tr data-case='{c['id']}'><td>#{c['id']}</td>"
            f"<td>{esc(self.desk.local(c['ts']).isoformat(sep=' ', timespec='minutes'))}</td>"
            f"<td>{esc(c['name'])}</td><td>{esc(c['phone'])}</td><td>{esc(c['topic'])}</td>"
            f"<td>{esc(c['lawyer'])}</td><td>{esc(c['summary'])}</td></tr>"
            for c in self.desk.store.legal_aid_cases(50)
        )
        return (
            "<section><h2>法律援助案件 Legal-aid cases</h2><table class='list' id='legal-aid'>"
            "<tr><th>#</th><th>时间 When</th><th>姓名 Name</th><th>电话 Phone</th>"
            "<th>问题 Topic</th><th>律师 Lawyer</th><th>小结 Summary</th></tr>"
            f"{rows or '<tr><td colspan=7>—</td></tr>'}</table></section>"
        )

    def _admin(self, request: web.Request, sess, error: str) -> str:
        now = self.desk.clock()
        lawyers = [a for a in request.app[ACCOUNTS].list() if "duty_lawyer" in a.roles]
        points = self.desk.store.points()
        shifts = "".join(
            f"<tr><td>{esc(s.lawyer)}</td><td>{esc(s.point)}</td>"
            f"<td>{esc(self.desk.local(s.start).isoformat(sep=' ', timespec='minutes'))}</td>"
            f"<td>{esc(self.desk.local(s.end).isoformat(sep=' ', timespec='minutes'))}</td>"
            f"<td><form method='post' action='/desk/admin/shifts/{s.id}/delete' class='inline'>"
            f"<input type='hidden' name='csrf' value='{esc(sess.csrf)}'>"
            "<button class='small danger' type='submit'>删除 Delete</button></form></td></tr>"
            for s in self.desk.store.shifts(now)
        )
        today = self.desk.local(now).date().isoformat()
        err = f"<p class='error' role='alert'>{esc(error)}</p>" if error else ""
        csrf = f"<input type='hidden' name='csrf' value='{esc(sess.csrf)}'>"
        return (
            f"<section class='admin'><h2>管理 Administration</h2>{err}"
            "<h3>服务点 Service points</h3><table class='list'><tr><th>ID</th><th>名称 Name</th>"
            "<th>开放时间 Hours</th></tr>"
            + "".join(
                f"<tr><td>{esc(p.id)}</td><td>{esc(p.name)}</td><td>{esc(p.hours)}</td></tr>"
                for p in points
            )
            + "</table><form method='post' action='/desk/admin/points' class='stack'>"
            + csrf
            + "<label>ID（字母数字）ID (letters, digits, -)<input name='id' maxlength='40' "
            "required pattern='[a-z0-9][a-z0-9\\-]*'></label>"
            "<label>名称 Name<input name='name' maxlength='120' required></label>"
            "<label>地址 Address<input name='address' maxlength='200'></label>"
            "<label>开放时间 Hours (1-5 09:00-12:00 14:00-17:00)<input name='hours' "
            "maxlength='300' required value='1-5 09:00-12:00 14:00-17:00'></label>"
            "<button type='submit'>保存服务点 Save point</button></form>"
            "<h3>值班 Shifts</h3><table class='list'><tr><th>律师 Lawyer</th><th>服务点 Point</th>"
            f"<th>开始 Start</th><th>结束 End</th><th></th></tr>{shifts or '<tr><td colspan=5>—</td></tr>'}"
            "</table><form method='post' action='/desk/admin/shifts' class='stack'>"
            + csrf
            + "<label>律师 Lawyer<select name='lawyer' required>"
            + "".join(
                f"<option value='{esc(a.username)}'>{esc(a.display_name)} ({esc(a.username)})"
                "</option>"
                for a in lawyers
            )
            + "</select></label><label>服务点 Point<select name='point' required>"
            + "".join(f"<option value='{esc(p.id)}'>{esc(p.name)}</option>" for p in points)
            + f"</select></label><label>日期 Date<input type='date' name='date' value='{today}' "
            "required></label><label>开始 From<input type='time' name='start' value='09:00' "
            "required></label><label>结束 To<input type='time' name='end' value='17:00' required>"
            "</label><button type='submit'>添加值班 Add shift</button></form></section>"
        )

    async def add_point(self, request: web.Request) -> web.Response:
        account, sess = require_staff(request, "admin")
        fields = await form(request, sess)
        try:
            self.desk.store.add_point(
                fields.get("id", ""),
                fields.get("name", ""),
                fields.get("hours", ""),
                fields.get("address", ""),
            )
        except DeskError as exc:
            return self._index(request, account, sess, f"{exc.code}: {exc.message}", 400)
        raise web.HTTPSeeOther("/desk")

    async def add_shift(self, request: web.Request) -> web.Response:
        account, sess = require_staff(request, "admin")
        fields = await form(request, sess)
        lawyer = request.app[ACCOUNTS].get(fields.get("lawyer", ""))
        try:
            if lawyer is None or "duty_lawyer" not in lawyer.roles:
                raise DeskError("invalid", "lawyer: a staff account with the role duty_lawyer")
            try:
                day = dt.date.fromisoformat(fields.get("date", ""))
                start = dt.time.fromisoformat(fields.get("start", ""))
                end = dt.time.fromisoformat(fields.get("end", ""))
            except ValueError:
                raise DeskError("invalid", "date and times: 2026-12-01, 09:00, 17:00") from None
            tz = self.desk.tz
            self.desk.store.add_shift(
                lawyer.username,
                fields.get("point", ""),
                dt.datetime.combine(day, start, tz).timestamp(),
                dt.datetime.combine(day, end, tz).timestamp(),
            )
        except DeskError as exc:
            return self._index(request, account, sess, f"{exc.code}: {exc.message}", 400)
        raise web.HTTPSeeOther("/desk")

    async def delete_shift(self, request: web.Request) -> web.Response:
        _, sess = require_staff(request, "admin")
        await form(request, sess)
        try:
            shift_id = int(request.match_info["sid"])
        except ValueError:
            raise web.HTTPNotFound(text="not_found: no such shift") from None
        self.desk.store.remove_shift(shift_id)
        raise web.HTTPSeeOther("/desk")

    def _point(self, request: web.Request):
        point = self.desk.store.point(request.match_info["point"])
        if point is None:
            raise web.HTTPNotFound(text="not_found: no such service point")
        return point

    async def qr(self, request: web.Request) -> web.Response:
        require_staff(request, "duty_lawyer")
        point = self._point(request)
        import qrcode.image.svg  # on first use: most servers never draw one

        img = qrcode.make(
            f"{self.base(request)}/consult/{point.id}", image_factory=qrcode.image.svg.SvgPathImage
        )
        buf = io.BytesIO()
        img.save(buf)
        return web.Response(body=buf.getvalue(), content_type="image/svg+xml")

    async def poster(self, request: web.Request) -> web.Response:
        """A page to print and put up in the hall or the village point: the QR code, the
        address it opens, the opening hours, what to have ready; both languages."""
        account, sess = require_staff(request, "duty_lawyer")
        point = self._point(request)
        url = f"{self.base(request)}/consult/{point.id}"
        body_html = (
            "<link rel='stylesheet' href='/static/desk.css'><article class='poster'>"
            "<h1>免费法律咨询 · 值班律师视频接听</h1>"
            "<p class='en'>Free legal advice · a duty lawyer answers by video</p>"
            f"<h2>{esc(point.name)}</h2>"
            f"<img class='poster-qr' alt='QR' src='/desk/points/{esc(point.id)}/qr.svg'>"
            f"<p class='url'>{esc(url)}</p>"
            "<ol><li>用手机扫描二维码 Scan the code with your phone</li>"
            "<li>填写姓名、手机号和问题类型 Enter your name, phone number and topic</li>"
            "<li>排队等候，律师接听后开始视频 Wait in the queue; the video starts when a lawyer "
            "answers</li></ol>"
            f"<p>开放时间 Opening hours: {esc(point.hours)}（1=周一 Monday … 7=周日 Sunday）</p>"
            "<p>无人值班时可预约回电。 When nobody is on duty, ask for a call-back.</p>"
            "<p class='no-print'><button id='print' class='primary' type='button'>打印 Print"
            "</button></p></article><script src='/static/desk.js'></script>"
        )
        return page(
            f"海报 Poster · {point.name}", body_html, user=account.display_name, csrf=sess.csrf
        )

    # -- JSON -----------------------------------------------------------------------------------
    @answers
    async def state(self, request: web.Request) -> web.Response:
        account = _lawyer(request)
        out = self.desk.desk_state(account.username)
        return web.json_response({"ok": True, "desk": out}, headers={"Cache-Control": "no-store"})

    @answers
    async def status(self, request: web.Request) -> web.Response:
        account = _lawyer(request)
        req = await body(request, StatusRequest)
        self.desk.set_status(account.username, req.status)
        return web.json_response({"ok": True})

    @answers
    async def pickup(self, request: web.Request) -> web.Response:
        account = _lawyer(request)
        req = await body(request, PickupRequest)
        current = await self.desk.pickup(account, req.ticket)
        return web.json_response({"ok": True, "current": current})

    @answers
    async def end(self, request: web.Request) -> web.Response:
        account = _lawyer(request)
        req = await body(request, EndRequest)
        await self.desk.end(
            account.username, req.ticket, req.summary, req.referral, req.referral_note
        )
        return web.json_response({"ok": True})

    @answers
    async def transfer(self, request: web.Request) -> web.Response:
        account = _lawyer(request)
        req = await body(request, TransferRequest)
        current = self.desk.transfer(account.username, req.ticket, req.to)
        return web.json_response({"ok": True, "current": current})

    @answers
    async def legal_aid(self, request: web.Request) -> web.Response:
        account = _lawyer(request)
        req = await body(request, LegalAidRequest)
        case = await self.desk.to_legal_aid(account.username, req.ticket, req.summary)
        return web.json_response({"ok": True, "case": case})

    @answers
    async def call_back(self, request: web.Request) -> web.Response:
        account = _lawyer(request)
        req = await body(request, CallBackRequest)
        current = await self.desk.call_back(account, req.ticket, self.base(request))
        return web.json_response({"ok": True, "current": current})

    @answers
    async def history(self, request: web.Request) -> web.Response:
        account = _lawyer(request)
        req = await body(request, HistoryRequest)
        return web.json_response(
            {"ok": True, "history": self.desk.history(account.username, req.ticket)}
        )

    @answers
    async def interpreter(self, request: web.Request) -> web.Response:
        """The link (and its QR code) for the interpreter the citizen asked for."""
        account = _lawyer(request)
        req = await body(request, InterpreterRequest)
        out = self.desk.invite_interpreter(account.username, req.ticket)
        url = self.base(request) + out["path"]
        import qrcode.image.svg  # on first use, as the poster's

        buf = io.BytesIO()
        qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage).save(buf)
        return web.json_response(
            {"ok": True, "url": url, "language": out["language"], "qr_svg": buf.getvalue().decode()}
        )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/desk", self.index),
            web.post("/desk/admin/points", self.add_point),
            web.post("/desk/admin/shifts", self.add_shift),
            web.post("/desk/admin/shifts/{sid}/delete", self.delete_shift),
            web.get("/desk/points/{point}/poster", self.poster),
            web.get("/desk/points/{point}/qr.svg", self.qr),
            web.get("/desk/api/state", self.state),
            web.post("/desk/api/status", self.status),
            web.post("/desk/api/pickup", self.pickup),
            web.post("/desk/api/end", self.end),
            web.post("/desk/api/history", self.history),
            web.post("/desk/api/transfer", self.transfer),
            web.post("/desk/api/callback", self.call_back),
            web.post("/desk/api/legal-aid", self.legal_aid),
            web.post("/desk/api/interpreter", self.interpreter),
        ]
