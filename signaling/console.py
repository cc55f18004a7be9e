"""The mediator's console pages: list and create sessions, invitations with QR codes, enter.

Server-rendered HTML (works on any laptop browser, prints cleanly). Everything that changes
state goes through ``SessionService`` as a staff actor, so it is permission-checked and in the
ledger like any other command.
"""

from __future__ import annotations

import io

import qrcode
import qrcode.image.svg
from aiohttp import web

from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.service import ParticipantSpec
from signaling.pages import esc, page
from signaling.staff import form, require_staff

ROWS = 6
ROLE_CHOICES = [
    ("party", "当事人 Party"),
    ("counsel", "代理律师 Counsel"),
    ("support", "陪同人员 Support person"),
    ("interpreter", "翻译 Interpreter"),
    ("co_mediator", "协同调解员 Co-mediator"),
    ("observer", "观察员 Observer"),
]
SIDES = [("", "—"), ("A", "申请人 A"), ("B", "被申请人 B")]
ROLE_LABELS = dict(ROLE_CHOICES) | {
    "mediator": "调解员 Mediator",
    "duty_lawyer": "值班律师 Duty lawyer",
}
SPACE_LABELS = {
    "waiting": "等候室 waiting",
    "joint": "调解室 joint",
    "left": "已离开 left",
    "removed": "已移出 removed",
}


def _mine(state, account) -> bool:
    return state.created_by == f"staff:{account.username}" or "admin" in account.roles


def _host(state):
    return next((p for p in state.participants.values() if p.role == "mediator"), None)


class Console:
    def __init__(self, service, signer, config) -> None:
        self.service, self.signer, self.config = service, signer, config

    def _session(self, request, account):
        try:
            state = self.service.state(request.match_info["sid"])
        except CommandError:
            raise web.HTTPNotFound(text="not_found: no such session") from None
        if not _mine(state, account):
            raise web.HTTPForbidden(text="forbidden: not your session")
        return state

    def path(self, state, p, staff: str | None = None) -> str:
        token = self.signer.issue(
            state.id,
            p.id,
            p.role,
            ttl=self.config.invitation_ttl,
            gen=p.invitation_gen,
            staff=staff,
        )
        return f"/j/{token}"

    def link(self, request, state, p) -> str:
        base = self.config.public_url or f"{request.scheme}://{request.host}"
        return base + self.path(state, p)

    # -- pages --------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        account, _ = require_staff(request)
        if not account.roles & {"mediator", "admin"}:
            # visitation staff hold site grants, not the mediator role: their console is /visits
            raise web.HTTPSeeOther("/visits")
        account, sess = require_staff(request, "mediator")
        return self._index(account, sess)

    def _index(self, account, sess, error: str = "", status: int = 200) -> web.Response:
        rows = "".join(
            f"<tr><td>{esc(s.case_number or '')}</td><td><a href='/console/sessions/{esc(s.id)}'>"
            f"{esc(s.title)}</a></td><td>{'已结束 ended' if s.ended else '进行中 open'}</td></tr>"
            for s in sorted(self.service.sessions(), key=lambda s: -(s.created_at or 0))
            if _mine(s, account)
        )
        people = "".join(
            f"<tr><td><input name='name{i}' maxlength='80' aria-label='name {i}'></td>"
            f"<td><select name='role{i}'>"
            + "".join(f"<option value='{v}'>{esc(t)}</option>" for v, t in ROLE_CHOICES)
            + f"</select></td><td><select name='side{i}'>"
            + "".join(
                f"<option value='{v}'{' selected' if v == ('A' if i == 0 else 'B' if i == 1 else '') else ''}>"
                f"{esc(t)}</option>"
                for v, t in SIDES
            )
            + "</select></td></tr>"
            for i in range(ROWS)
        )
        err = f"<p class='error' role='alert'>{esc(error)}</p>" if error else ""
        body = (
            "<p><a href='/visits'>远程会见 Remote visitation</a></p>"
            f"<h1>调解 Mediations</h1><table class='list'><tr><th>案号 Case</th><th>标题 Title</th>"
            f"<th>状态 State</th></tr>{rows or '<tr><td colspan=3>—</td></tr>'}</table>"
            f"<h2>新建调解 New mediation</h2>{err}"
            "<form method='post' action='/console/sessions' class='stack'>"
            f"<input type='hidden' name='csrf' value='{esc(sess.csrf)}'>"
            "<label>案号 Case number<input name='case_number' maxlength='64' required></label>"
            "<label>标题 Title<input name='title' maxlength='200' required></label>"
            "<label>语言 Language<select name='lang'><option value='zh'>中文</option>"
            "<option value='en'>English</option></select></label>"
            "<table class='people'><tr><th>姓名 Name</th><th>身份 Role</th><th>方 Side</th></tr>"
            f"{people}</table>"
            "<button class='primary big' type='submit'>创建 Create</button></form>"
        )
        return page(
            "调解控制台 Console", body, status=status, user=account.display_name, csrf=sess.csrf
        )

    async def create(self, request: web.Request) -> web.Response:
        account, sess = require_staff(request, "mediator")
        fields = await form(request, sess)
        specs = [ParticipantSpec(name=account.display_name, role="mediator")]
        for i in range(ROWS):
            name = fields.get(f"name{i}", "").strip()
            if not name:
                continue
            role = fields.get(f"role{i}", "")
            side = fields.get(f"side{i}", "") or None
            if role == "party" and side is None:
                return self._index(
                    account, sess, f"{name}: 当事人需要选择一方 a party needs a side", 400
                )
            specs.append(ParticipantSpec(name=name, role=role, side=side))
        if not any(s.role == "party" for s in specs):
            return self._index(
                account, sess, "至少需要一名当事人 At least one party is needed", 400
            )
        try:
            state = self.service.create_session(
                "mediation",
                actor=f"staff:{account.username}",
                title=fields.get("title", ""),
                case_number=fields.get("case_number") or None,
                participants=specs,
            )
        except CommandError as exc:
            return self._index(account, sess, f"{exc.code}: {exc.message}", 400)
        raise web.HTTPSeeOther(f"/console/sessions/{state.id}")

    async def session(self, request: web.Request) -> web.Response:
        account, sess = require_staff(request, "mediator")
        state = self._session(request, account)
        cards = []
        for p in state.participants.values():
            if p.role == "mediator":
                continue
            url = self.link(request, state, p)
            cards.append(
                f"<article class='invite' data-participant='{esc(p.id)}'>"
                f"<h3>{esc(p.name)}</h3><p>{esc(ROLE_LABELS.get(p.role, p.role))}"
                f"{' · ' + esc(p.side) if p.side else ''} · {esc(SPACE_LABELS.get(p.space, p.space))}</p>"
                f"<img alt='QR' width='180' height='180' src='/console/sessions/{esc(state.id)}/qr/{esc(p.id)}.svg'>"
                f"<p class='url'><a href='{esc(url)}'>{esc(url)}</a></p>"
                f"<p><a download='invitation-{esc(p.id)}.svg' "
                f"href='/console/sessions/{esc(state.id)}/qr/{esc(p.id)}.svg'>下载二维码 Download QR</a></p>"
                f"<form method='post' action='/console/sessions/{esc(state.id)}/reissue/{esc(p.id)}'>"
                f"<input type='hidden' name='csrf' value='{esc(sess.csrf)}'>"
                "<button class='small' type='submit'>作废并重发链接 Revoke and re-issue</button></form>"
                "</article>"
            )
        body = (
            f"<h1>{esc(state.title)}</h1><p>案号 Case {esc(state.case_number or '—')} · "
            f"{'已结束 ended' if state.ended else '进行中 open'}</p>"
            + (
                ""
                if state.ended
                else f"<p><a class='button primary big' id='enter' href='/console/sessions/{esc(state.id)}/enter'>"
                "进入调解室 Enter the session</a></p>"
            )
            + "<h2>邀请 Invitations</h2><p class='hint'>每人一个链接/二维码，请勿转发。"
            "One link per person; do not forward.</p>"
            f"<div class='invites'>{''.join(cards)}</div>"
        )
        return page(state.title, body, user=account.display_name, csrf=sess.csrf)

    async def reissue(self, request: web.Request) -> web.Response:
        account, sess = require_staff(request, "mediator")
        await form(request, sess)
        state = self._session(request, account)
        pid = request.match_info["pid"]
        try:
            self.service.execute(
                state.id,
                f"staff:{account.username}",
                decode_command({"type": "reissue_invitation", "participant": pid}),
            )
        except CommandError as exc:
            raise web.HTTPConflict(text=f"{exc.code}: {exc.message}") from None
        raise web.HTTPSeeOther(f"/console/sessions/{state.id}#{pid}")

    async def qr(self, request: web.Request) -> web.Response:
        account, _ = require_staff(request, "mediator")
        state = self._session(request, account)
        p = state.participants.get(request.match_info["pid"])
        if p is None:
            raise web.HTTPNotFound(text="not_found: no such participant")
        img = qrcode.make(self.link(request, state, p), image_factory=qrcode.image.svg.SvgPathImage)
        buf = io.BytesIO()
        img.save(buf)
        return web.Response(
            body=buf.getvalue(), content_type="image/svg+xml", headers={"Cache-Control": "no-store"}
        )

    async def enter(self, request: web.Request) -> web.Response:
        account, _ = require_staff(request, "mediator")
        state = self._session(request, account)
        host = _host(state)
        if host is None or state.ended:
            raise web.HTTPConflict(text="conflict: this session cannot be entered")
        # The token says a logged-in staff member entered: the e-signature needs that (staff_login).
        raise web.HTTPSeeOther(self.path(state, host, staff=account.username))

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/console", self.index),
            web.post("/console/sessions", self.create),
            web.get("/console/sessions/{sid}", self.session),
            web.get("/console/sessions/{sid}/qr/{pid}.svg", self.qr),
            web.post("/console/sessions/{sid}/reissue/{pid}", self.reissue),
            web.get("/console/sessions/{sid}/enter", self.enter),
        ]
