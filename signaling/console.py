"""The mediator's console pages: list and create sessions, invitations with QR codes, enter.

Server-rendered HTML (works on any laptop browser, prints cleanly). Everything that changes
state goes through ``SessionService`` as a staff actor, so it is permission-checked and in the
ledger like any other command.

Clustered (``cluster``: this node's ``cluster.node.ClusterNode``), the console spans the nodes
(docs/scaling.md, "The console across nodes"): the list reads the session index in Redis
(every session of the staff member, whatever node serves it), a new session is placed on the
least-loaded node, and a session's pages opened on a node that does not serve it answer 307 to
the same path on the node that does (the login cookie names a host, not a port).
"""

from __future__ import annotations

import io
import re

from aiohttp import web

from recording.review import may_see_queue, review_grant
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
SIDE_LABELS = {"A": "申请方 Applicant (side A)", "B": "被申请方 Respondent (side B)"}
SIDES = [("", "—"), *SIDE_LABELS.items()]
ROLE_LABELS = dict(ROLE_CHOICES) | {
    "mediator": "调解员 Mediator",
    "duty_lawyer": "值班律师 Duty lawyer",
}
SPACE_LABELS = {
    "waiting": "等候室 Waiting room",
    "joint": "联合会谈 Joint session",
    "left": "已离开 Left",
    "removed": "已移出 Removed",
}
ROOM_LABELS = {
    "a": "申请方单独会谈室 Applicant's private room",
    "b": "被申请方单独会谈室 Respondent's private room",
}
# What became of the agreement (rooms' agreement status), as the console says it.
OUTCOMES = {
    "sealed": "已签署并盖章 Signed and sealed",
    "complete": "各方已签署，未盖章 Signed by all, not sealed",
    "signing": "签署未完成 Signing not finished",
    "declined": "有人拒绝签署 Declined",
    "drafting": "仅有草稿，未签署 Draft only, not signed",
}
NO_AGREEMENT = "未达成协议 No agreement"


def space_label(space: str | None) -> str:
    """A space as people say it: never ``joint`` or ``caucus:a``."""
    if not space:
        return "—"
    if space.startswith("caucus:"):
        name = space.removeprefix("caucus:")
        return ROOM_LABELS.get(name, f"单独会谈室 Private room {name}")
    return SPACE_LABELS.get(space, space)


def who_label(p) -> str:
    """Role and side in words: a party is its side (申请方 Applicant (side A)), others their role."""
    side = SIDE_LABELS.get(p.side or "", "")
    if p.role == "party" and side:
        return side
    role = ROLE_LABELS.get(p.role, p.role)
    return f"{role} · {side}" if side else role


def outcome(state) -> str:
    return _outcome((state.agreement or {}).get("status"))


def _outcome(status: str | None) -> str:
    return OUTCOMES.get(status, NO_AGREEMENT) if status else NO_AGREEMENT


def _mine(state, account) -> bool:
    """A session (or its index summary) the staff member may open: their own, or any for an
    administrator."""
    return state.created_by == f"staff:{account.username}" or "admin" in account.roles


def _waiting_label(n: int) -> str:
    return f"{n} 人等候 waiting" if n else "—"


def _listed(state) -> tuple:
    """A session in memory as the list shows it: the fields of an index summary."""
    status = (state.agreement or {}).get("status")
    return (
        state.id,
        state.case_number,
        state.title,
        state.created_at or 0,
        state.ended,
        state.waiting_count(),
        status,
    )


def _filename(state, p=None) -> str:
    """A download's name from the case number (ASCII letters and digits), never a raw id."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", state.case_number or "").strip("-") or "case"
    if p is None:
        return base
    person = re.sub(r"[^A-Za-z0-9]+", "-", p.name).strip("-")
    return f"{base}-invitation-{person or p.role}"


def _host(state):
    return next((p for p in state.participants.values() if p.role == "mediator"), None)


class Console:
    def __init__(self, service, signer, config, desk=None, cluster=None) -> None:
        self.service, self.signer, self.config = service, signer, config
        self.desk = desk  # the agreement desk: an ended case's PDF and evidence.zip
        self.cluster = cluster  # clustered: the index, placement and where a session is served

    async def _session(self, request, account):
        sid = request.match_info["sid"]
        try:
            state = self.service.state(sid)
        except CommandError:
            state = await self._elsewhere(request, account, sid)
        if state is None:
            raise web.HTTPNotFound(text="not_found: no such session")
        if not _mine(state, account):
            raise web.HTTPForbidden(text="forbidden: not your session")
        return state

    async def _elsewhere(self, request, account, sid: str):
        """A session not in memory here: on a clustered node, the index says whose it is (the
        same refusal as for one served here), and the page goes to the node serving it: 307 to
        the same path there (a form's POST keeps its method and body). None: no such session."""
        if self.cluster is None:
            return None
        entry = await self.cluster.index.get(sid)
        if entry is None:
            return None
        if not _mine(entry, account):
            raise web.HTTPForbidden(text="forbidden: not your session")
        route = await self.cluster.locate(sid)
        if route is None:
            return None
        if route.code == "redirect":
            raise web.HTTPTemporaryRedirect(route.url + request.path_qs)
        if route.code == "here":
            try:
                return self.service.state(sid)
            except CommandError:
                return None
        # between two nodes (its node died or drained, another is taking it): in a moment
        raise web.HTTPServiceUnavailable(
            text="session_moving: this session is moving to another server, try again in a moment",
            headers={"Retry-After": "1", "Refresh": "1"},
        )

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

    def fragment(self) -> str:
        """``#root=<fingerprint>`` on every invitation (link and QR code): the signing page
        checks its certificate chain against the root named by the invitation itself."""
        return self.desk.invitation_fragment() if self.desk is not None else ""

    def link(self, request, state, p) -> str:
        base = self.config.public_url or f"{request.scheme}://{request.host}"
        return base + self.path(state, p) + self.fragment()

    # -- pages --------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        account, _ = require_staff(request)
        if not account.roles & {"mediator", "admin"} and "duty_lawyer" in account.roles:
            raise web.HTTPSeeOther("/desk")  # a duty lawyer's console is the desk (docs/desk.md)
        if not account.roles & {"mediator", "admin"}:
            # visitation staff hold site grants, not the mediator role: their console is /visits
            raise web.HTTPSeeOther("/visits")
        account, sess = require_staff(request, "mediator")
        return await self._index(account, sess)

    async def _listing(self, account) -> list[tuple]:
        """The staff member's sessions, newest first: (id, case number, title, created at,
        ended, waiting, agreement status). Clustered, from the index: every node's."""
        if self.cluster is None:
            rows = [_listed(s) for s in self.service.sessions() if _mine(s, account)]
        else:
            admin = "admin" in account.roles
            found = await self.cluster.index.sessions(
                None if admin else f"staff:{account.username}"
            )
            rows = [
                (s.id, s.case_number, s.title, s.created_at, s.ended, s.waiting, s.agreement)
                for s in found
                if _mine(s, account)
            ]
        return sorted(rows, key=lambda r: -r[3])

    async def _index(self, account, sess, error: str = "", status: int = 200) -> web.Response:
        mine = await self._listing(account)

        def row(r, last: str) -> str:
            sid, case_number, title = r[0], r[1], r[2]
            return (
                f"<tr><td>{esc(case_number or '')}</td><td><a href='/console/sessions/{esc(sid)}'>"
                f"{esc(title)}</a></td><td>{esc(last)}</td></tr>"
            )

        live = "".join(row(r, _waiting_label(r[5])) for r in mine if not r[4])
        ended = "".join(row(r, _outcome(r[6])) for r in mine if r[4])
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
        queue = (  # an admin has the R3 queue too (recording/review.py may_see_queue)
            " · <a id='review-queue' href='/review'>录像审阅队列 Review queue</a>"
            if may_see_queue(account, ())
            else ""
        )
        body = (
            f"<p><a href='/visits'>远程会见 Remote visitation</a>{queue}</p>"
            "<h1>调解 Mediations</h1><h2>进行中 Open cases</h2>"
            "<table class='list'><tr><th>案号 Case</th><th>标题 Title</th>"
            f"<th>等候室 Waiting room</th></tr>{live or '<tr><td colspan=3>—</td></tr>'}</table>"
            f"<h2>新建调解 New mediation</h2>{err}"
            "<form method='post' action='/console/sessions' class='stack'>"
            f"<input type='hidden' name='csrf' value='{esc(sess.csrf)}'>"
            "<label>案号 Case number<input name='case_number' maxlength='64' required></label>"
            "<label>标题 Title<input name='title' maxlength='200' required></label>"
            "<table class='people'><tr><th>姓名 Name</th><th>身份 Role</th><th>方 Side</th></tr>"
            f"{people}</table>"
            "<button class='primary big' type='submit'>创建 Create</button></form>"
            "<h2>已结束的调解 Ended cases</h2>"
            "<table class='list'><tr><th>案号 Case</th><th>标题 Title</th>"
            f"<th>结果 Outcome</th></tr>{ended or '<tr><td colspan=3>—</td></tr>'}</table>"
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
                return await self._index(
                    account, sess, f"{name}: 当事人需要选择一方 a party needs a side", 400
                )
            specs.append(ParticipantSpec(name=name, role=role, side=side))
        if not any(s.role == "party" for s in specs):
            return await self._index(
                account, sess, "至少需要一名当事人 At least one party is needed", 400
            )

        def make():
            return self.service.create_session(
                "mediation",
                actor=f"staff:{account.username}",
                title=fields.get("title", ""),
                case_number=fields.get("case_number") or None,
                participants=specs,
            )

        try:
            # clustered: placed on the least-loaded node, listed in the index (the page below
            # is then sent there)
            state = make() if self.cluster is None else await self.cluster.create(make)
        except CommandError as exc:
            return await self._index(account, sess, f"{exc.code}: {exc.message}", 400)
        raise web.HTTPSeeOther(f"/console/sessions/{state.id}")

    async def session(self, request: web.Request) -> web.Response:
        account, sess = require_staff(request, "mediator")
        state = await self._session(request, account)
        sid = esc(state.id)
        people = [p for p in state.participants.values() if p.role != "mediator"]
        head = (
            f"<h1>{esc(state.title)}</h1><p>案号 Case {esc(state.case_number or '—')} · "
            f"{'已结束 Ended' if state.ended else '进行中 Open'}</p>"
        )
        if state.segments and review_grant(account, (), state):  # recorded: its review page
            head += (
                f"<p><a id='review' href='/review/{sid}'>"
                "录像与访问记录 Recording and access log</a></p>"
            )
        if state.ended:
            return page(
                state.title,
                head + self._ended(state, people),
                user=account.display_name,
                csrf=sess.csrf,
            )
        cards = []
        # printed on every invitation: what the party checks the signed agreement against later
        root = (
            "<p class='hint root'>调解组织根证书指纹 Organisation root fingerprint (SHA-256): "
            f"<code>{esc(self.desk.root_sha256())}</code></p>"
            if self.desk is not None
            else ""
        )
        for p in people:
            url = self.link(request, state, p)
            pid = esc(p.id)
            cards.append(
                f"<article class='invite' id='{pid}' data-participant='{pid}'>"
                f"<h3>{esc(p.name)}</h3><p>{esc(who_label(p))} · {esc(space_label(p.space))}</p>"
                f"<img alt='QR' width='180' height='180' src='/console/sessions/{sid}/qr/{pid}.svg'>"
                f"<p class='url'><a href='{esc(url)}'>{esc(url)}</a></p>{root}"
                f"<p><a download='{esc(_filename(state, p))}.svg' "
                f"href='/console/sessions/{sid}/qr/{pid}.svg'>下载二维码 Download QR</a></p>"
                f"<p><a class='button danger' href='/console/sessions/{sid}/reissue/{pid}'>"
                "作废并重发链接 Revoke and re-issue</a></p>"
                "</article>"
            )
        body = (
            head
            + f"<p><a class='button primary big' id='enter' href='/console/sessions/{sid}/enter'>"
            "进入调解室 Enter the session</a></p>"
            + "<h2>邀请 Invitations</h2><p class='hint'>每人一个链接/二维码，请勿转发。"
            "One link per person; do not forward.</p>"
            f"<div class='invites'>{''.join(cards)}</div>"
        )
        return page(state.title, body, user=account.display_name, csrf=sess.csrf)

    def _ended(self, state, people) -> str:
        """An ended case: how it ended, who took part, and the signed agreement to download."""
        sid = esc(state.id)
        status = (state.agreement or {}).get("status")
        downloads = ""
        if (state.agreement or {}).get("version"):
            what = (
                "已签署的协议 Signed agreement"
                if status == "sealed"
                else "协议（未完成签署）Agreement (not fully signed)"
            )
            downloads += (
                f"<li><a class='button primary' download href='/console/sessions/{sid}/agreement.pdf'>"
                f"下载 Download {what} (PDF)</a></li>"
            )
        if status == "sealed":
            downloads += (
                f"<li><a class='button' download href='/console/sessions/{sid}/evidence.zip'>"
                "下载证据包 Download evidence.zip</a></li>"
            )
        rows = "".join(
            f"<tr><td>{esc(p.name)}</td><td>{esc(who_label(p))}</td>"
            f"<td>{'✔' if p.identity_checked else '—'}</td></tr>"
            for p in people
        )
        reason = f"<p>结束原因 Reason: {esc(state.ended_reason)}</p>" if state.ended_reason else ""
        return (
            f"<section class='outcome'><h2>结果 Outcome</h2><p class='outcome-line'>{esc(outcome(state))}</p>"
            f"{reason}{f'<ul class=downloads>{downloads}</ul>' if downloads else ''}</section>"
            "<h2>参加人员 Participants</h2><table class='list'><tr><th>姓名 Name</th>"
            f"<th>身份 Role</th><th>身份已核验 ID checked</th></tr>{rows}</table>"
        )

    async def reissue_ask(self, request: web.Request) -> web.Response:
        """Revoking a link cuts off whoever holds it: ask first, naming the person."""
        account, sess = require_staff(request, "mediator")
        state = await self._session(request, account)
        p = state.participants.get(request.match_info["pid"])
        if p is None or p.role == "mediator":
            raise web.HTTPNotFound(text="not_found: no such participant")
        sid = esc(state.id)
        body = (
            f"<h1>作废 {esc(p.name)} 的邀请链接？ Revoke {esc(p.name)}'s invitation link?</h1>"
            "<p>旧链接和二维码立即失效，正在使用旧链接的手机会被断开；随后生成新的链接和二维码，请重新发给此人。</p>"
            "<p>The old link and QR code stop working at once and a phone using it is disconnected; "
            "a new link and QR code are made for you to send again.</p>"
            f"<form method='post' action='/console/sessions/{sid}/reissue/{esc(p.id)}' class='stack'>"
            f"<input type='hidden' name='csrf' value='{esc(sess.csrf)}'>"
            "<button class='danger big' type='submit'>作废并重发 Revoke and re-issue</button></form>"
            f"<p><a class='button' href='/console/sessions/{sid}#{esc(p.id)}'>取消 Cancel</a></p>"
        )
        return page(state.title, body, user=account.display_name, csrf=sess.csrf)

    async def agreement_pdf(self, request: web.Request) -> web.Response:
        account, _ = require_staff(request, "mediator")
        state = await self._session(request, account)
        if self.desk is None or not (state.agreement or {}).get("version"):
            raise web.HTTPNotFound(text="not_found: no agreement was frozen in this case")
        data = await self.desk.pdf(state.id)
        if data is None:
            raise web.HTTPNotFound(text="not_found: no agreement was frozen in this case")
        return web.Response(
            body=data,
            content_type="application/pdf",
            headers={
                "Content-Disposition": f"attachment; filename={_filename(state)}-agreement.pdf",
                "Cache-Control": "no-store",
            },
        )

    async def evidence(self, request: web.Request) -> web.Response:
        account, _ = require_staff(request, "mediator")
        state = await self._session(request, account)
        if self.desk is None or (state.agreement or {}).get("status") != "sealed":
            raise web.HTTPConflict(text="conflict: the agreement is not sealed")
        try:
            data = await self.desk.evidence(state.id)
        except CommandError as exc:
            raise web.HTTPConflict(text=f"{exc.code}: {exc.message}") from None
        return web.Response(
            body=data,
            content_type="application/zip",
            headers={
                "Content-Disposition": f"attachment; filename={_filename(state)}-evidence.zip",
                "Cache-Control": "no-store",
            },
        )

    async def reissue(self, request: web.Request) -> web.Response:
        account, sess = require_staff(request, "mediator")
        await form(request, sess)
        state = await self._session(request, account)
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
        state = await self._session(request, account)
        p = state.participants.get(request.match_info["pid"])
        if p is None:
            raise web.HTTPNotFound(text="not_found: no such participant")
        import qrcode.image.svg  # on first use (~4 MB, ~50 ms): most servers never draw one

        img = qrcode.make(self.link(request, state, p), image_factory=qrcode.image.svg.SvgPathImage)
        buf = io.BytesIO()
        img.save(buf)
        return web.Response(
            body=buf.getvalue(), content_type="image/svg+xml", headers={"Cache-Control": "no-store"}
        )

    async def enter(self, request: web.Request) -> web.Response:
        account, _ = require_staff(request, "mediator")
        state = await self._session(request, account)
        host = _host(state)
        if host is None or state.ended:
            raise web.HTTPConflict(text="conflict: this session cannot be entered")
        # The token says a logged-in staff member entered: the e-signature needs that (staff_login).
        raise web.HTTPSeeOther(self.path(state, host, staff=account.username) + self.fragment())

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/console", self.index),
            web.post("/console/sessions", self.create),
            web.get("/console/sessions/{sid}", self.session),
            web.get("/console/sessions/{sid}/qr/{pid}.svg", self.qr),
            web.get("/console/sessions/{sid}/reissue/{pid}", self.reissue_ask),
            web.post("/console/sessions/{sid}/reissue/{pid}", self.reissue),
            web.get("/console/sessions/{sid}/agreement.pdf", self.agreement_pdf),
            web.get("/console/sessions/{sid}/evidence.zip", self.evidence),
            web.get("/console/sessions/{sid}/enter", self.enter),
        ]
