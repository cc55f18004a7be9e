"""The officer's live console (R4, R2): the live visits of one site, listen-in, warn, end.

``/visits/sites/<site>/live`` lists the open visit sessions that use a terminal of the site, each
with its state, remaining time and both ends' connection. Every action asks the site-scoped grant
(visits/access.py) of the site the visit belongs to, then hands rooms a command as the staff
member (``staff:<user>``), so the ledger names who did it and when:

- **watch** (``visit.observe``: the facility's officers and supervisors): adds the officer as a
  hidden observer (``add_observer``) and serves the page that listens in with a receive-only
  peer. A privileged visit is refused here (403), by rooms (its policy has no observer and the
  rule refuses one) and by the plan (no observer edge): R2 at every layer;
- **warn** (``visit.live``: the facility's officers, the bureau's operator by policy): a reason
  code shown on both terminals at once (``visit.warned``); never in a privileged visit;
- **end** (``visit.live``; a privileged visit only by a supervisor, ``visit.end_privileged``):
  ``end_session`` with ``terminated:<code>``; both terminals end at once.

A refusal answers the bilingual error page with its code and changes nothing.
"""

from __future__ import annotations

import time

from aiohttp import web

from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.state import GONE
from signaling.pages import esc
from signaling.visits_pages import csrf_field
from visits.access import allowed, require
from visits.model import VisitError

WARN_REASONS = {
    "language": "使用暗语或未经批准的语言 Code words or an unapproved language",
    "behaviour": "言行违反会见规定 Words or conduct against the rules",
    "third_person": "画面中有未经核验的人 An unchecked person on screen",
    "device": "使用手机或录音录像设备 A phone or recording device",
    "other": "其他 Other",
}
END_REASONS = {
    "rule_violation": "警告后仍违反规定 Rules broken after a warning",
    "security": "安全原因 Security",
    "health": "身体原因 Health",
    "technical": "技术故障 Technical fault",
    "other": "其他 Other",
}
WATCH_SCRIPTS = (
    "<script src='/vendor/socket.io.min.js'></script><script src='/static/call.js'></script>"
    "<script src='/static/officer.js'></script>"
)


def _select(name: str, options: dict[str, str]) -> str:
    return (
        f"<select name='{name}'>"
        + "".join(f"<option value='{k}'>{esc(v)}</option>" for k, v in options.items())
        + "</select>"
    )


def _mmss(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = max(0, int(seconds + 0.999))
    return f"{s // 60:02d}:{s % 60:02d}"


class OfficerConsole:
    def __init__(self, console, service, signer) -> None:
        self.c = console
        self.service, self.signer = service, signer

    # -- finding a visit and its sites ------------------------------------------------------
    def _visit(self, request, grants, action: str):
        """(row, booking, state, bureau site, facility site) if the grants allow ``action`` at
        one of the visit's sites (the facility's for observing)."""
        session = request.match_info["session"]
        row = self.c.live.row(session=session) if len(session) <= 40 else None
        if row is None:
            raise VisitError("not_found", "no such live visit")
        b = self.c.res.get(row[0])
        bureau, facility = self.c._sites_of(b)
        if action == "visit.observe":
            require(grants, action, facility)
        elif not (allowed(grants, action, facility) or allowed(grants, action, bureau)):
            raise VisitError("forbidden", f"{action} is not among your grants for this visit")
        try:
            state = self.service.state(row[1])
        except CommandError:
            raise VisitError("not_found", "no such live visit") from None
        return row, b, state, bureau, facility

    def _run(self, state, actor: str, **raw) -> None:
        try:
            self.service.execute(state.id, actor, decode_command(raw))
        except CommandError as exc:
            raise VisitError(exc.code, exc.message) from None

    # -- the list ---------------------------------------------------------------------------
    async def live_list(self, request: web.Request) -> web.Response:
        account, sess, grants = self.c._staff(request)
        site = self.c._site(grants, "visit.live", request.match_info["site"])
        now = time.time()
        rows = []
        for row in self.c.live.open_rows():
            b = self.c.res.get(row[0])
            bureau, facility = self.c._sites_of(b)
            if site.id not in (bureau, facility):
                continue
            try:
                state = self.service.state(row[1])
            except CommandError:
                continue
            rows.append(self._row(row, b, state, grants, bureau, facility, sess.csrf, now))
        body = (
            f"<h1>实时会见 Live visits · {esc(site.name)}</h1>"
            "<table class='list' id='live-list'><tr><th>编号 No.</th><th>类型 Kind</th>"
            "<th>服刑人员 Inmate</th><th>终端 Terminals</th><th>状态 Status</th>"
            "<th>剩余 Left</th><th></th></tr>"
            + ("".join(rows) or "<tr><td colspan=7>当前没有会见 No visit is open now</td></tr>")
            + "</table><script src='/static/officer.js'></script>"
        )
        return self.c._page("实时会见 Live visits", body, account, sess)

    def _row(self, row, b, state, grants, bureau, facility, csrf, now) -> str:
        inmate = self.c.directory.inmate(b.inmate)
        family, held = state.participants[row[3]], state.participants[row[4]]
        privileged = state.policy.privileged
        status = self._status(state)
        remaining = state.remaining(now)
        ends = "".join(
            f"<li>{esc(p.name)}: {'在线 online' if p.connected else '离线 offline'}</li>"
            for p in (family, held)
        )
        actions = []
        base = f"/visits/live/{esc(state.id)}"
        if not privileged and allowed(grants, "visit.observe", facility):
            actions.append(f"<a class='button' href='{base}/watch'>监看 Watch and listen</a>")
        if not privileged and (
            allowed(grants, "visit.live", facility) or allowed(grants, "visit.live", bureau)
        ):
            actions.append(self._warn_form(base, csrf))
            actions.append(self._mute_forms(base, csrf, family, held))
        if allowed(grants, "visit.end_privileged" if privileged else "visit.live", facility) or (
            not privileged and allowed(grants, "visit.live", bureau)
        ):
            actions.append(self._end_form(base, csrf))
        kind = "律师会见（不录制不监听）privileged" if privileged else "亲属会见 family"
        return (
            f"<tr data-session='{esc(state.id)}' data-booking='{b.id}'><td>{b.id}</td>"
            f"<td>{kind}</td><td>{esc(inmate.name if inmate else '')}</td>"
            f"<td>{esc(b.bureau_terminal)} ↔ {esc(b.facility_terminal)}<ul>{ends}</ul></td>"
            f"<td class='live-status {status[0]}'>{esc(status[1])}</td>"
            f"<td class='remaining' data-remaining='{'' if remaining is None else round(remaining)}'"
            f" data-running='{int(state.clock_since is not None)}'>{_mmss(remaining)}</td>"
            f"<td>{''.join(actions)}</td></tr>"
        )

    @staticmethod
    def _status(state) -> tuple[str, str]:
        if state.ended:
            return "ended", "已结束 ended"
        if state.clock_since is not None:
            return "live", "进行中 live" + (" · ● REC" if state.recording else "")
        if state.clock_started:
            return "paused", "中断（计时暂停）interrupted, clock paused"
        return "waiting", "等待开始 waiting to start"

    @staticmethod
    def _warn_form(base: str, csrf: str, query: str = "") -> str:
        return (
            f"<form method='post' action='{base}/warn{query}' class='inline'>{csrf_field(csrf)}"
            f"{_select('reason', WARN_REASONS)}"
            "<button type='submit'>警告 Warn</button></form>"
        )

    @staticmethod
    def _mute_forms(base: str, csrf: str, family, held, query: str = "") -> str:
        out = []
        for side, person, zh, en in (
            ("family", family, "家属", "the family"),
            ("inmate", held, "服刑人员", "the inmate"),
        ):
            verb = ("取消静音", "Unmute") if person.muted else ("静音", "Mute")
            out.append(
                f"<form method='post' action='{base}/mute{query}' class='inline'>{csrf_field(csrf)}"
                f"<input type='hidden' name='side' value='{side}'>"
                f"<input type='hidden' name='on' value='{0 if person.muted else 1}'>"
                f"<button type='submit'>{verb[0]}{zh} {verb[1]} {en}</button></form>"
            )
        return "".join(out)

    @staticmethod
    def _end_form(base: str, csrf: str) -> str:
        return (
            f"<form method='post' action='{base}/end' class='inline'>{csrf_field(csrf)}"
            f"{_select('reason', END_REASONS)}"
            "<button type='submit' class='danger'>终止会见 End the visit</button></form>"
        )

    # -- actions ----------------------------------------------------------------------------
    async def warn(self, request: web.Request) -> web.Response:
        account, sess, grants, fields = await self.c._form(request)
        row, b, state, bureau, facility = self._visit(request, grants, "visit.live")
        reason = fields.get("reason", "")
        if reason not in WARN_REASONS:
            raise VisitError("invalid", f"reason: one of {', '.join(WARN_REASONS)}")
        self._run(state, f"staff:{account.username}", type="warn", reason=reason)
        raise web.HTTPSeeOther(self._back(request, grants, bureau, facility, state))

    async def mute(self, request: web.Request) -> web.Response:
        """Mute one side: its sound reaches nobody (the other side, the listening officer);
        the picture goes on (rooms/plan.py). Never in a privileged visit."""
        account, sess, grants, fields = await self.c._form(request)
        row, b, state, bureau, facility = self._visit(request, grants, "visit.live")
        side, on = fields.get("side"), fields.get("on")
        if side not in ("family", "inmate") or on not in ("0", "1"):
            raise VisitError("invalid", "side: family or inmate; on: 1 or 0")
        if state.policy.privileged:
            raise VisitError("forbidden", "nobody mutes a privileged visit")
        pid = row[3] if side == "family" else row[4]
        self._run(
            state,
            f"staff:{account.username}",
            type="mute" if on == "1" else "unmute",
            participant=pid,
        )
        raise web.HTTPSeeOther(self._back(request, grants, bureau, facility, state))

    async def end(self, request: web.Request) -> web.Response:
        account, sess, grants, fields = await self.c._form(request)
        row, b, state, bureau, facility = self._visit(request, grants, "visit.live")
        if state.policy.privileged:
            require(grants, "visit.end_privileged", facility)  # a supervisor, for security
        reason = fields.get("reason", "")
        if reason not in END_REASONS:
            raise VisitError("invalid", f"reason: one of {', '.join(END_REASONS)}")
        self._run(
            state, f"staff:{account.username}", type="end_session", reason=f"terminated:{reason}"
        )
        self.c.live.step()  # the booking completes now, not at the next beat
        raise web.HTTPSeeOther(self._back(request, grants, bureau, facility, state))

    @staticmethod
    def _back(request, grants, bureau, facility, state) -> str:
        if request.query.get("from") == "watch" and not state.ended:
            return f"/visits/live/{state.id}/watch"
        site = facility if allowed(grants, "visit.live", facility) else bureau
        return f"/visits/sites/{site}/live"

    async def watch(self, request: web.Request) -> web.Response:
        account, sess, grants = self.c._staff(request)
        row, b, state, bureau, facility = self._visit(request, grants, "visit.observe")
        if state.policy.privileged:  # R2: also refused by rooms below; said plainly here
            raise VisitError("forbidden", "a privileged visit is never observed")
        if state.ended:
            raise VisitError("conflict", "this visit has ended")
        name = f"{account.display_name} ({account.username})"[:80]
        role = "supervisor" if allowed(grants, "booking.exception", facility) else "officer"
        me = next(
            (
                p
                for p in state.participants.values()
                if p.role in ("officer", "supervisor") and p.name == name and p.space not in GONE
            ),
            None,
        )
        if me is None:
            self._run(state, f"staff:{account.username}", type="add_observer", name=name, role=role)
            me = next(
                p for p in state.participants.values() if p.name == name and p.space not in GONE
            )
        token = self.signer.issue(state.id, me.id, me.role, ttl=3600.0, gen=me.invitation_gen)
        inmate = self.c.directory.inmate(b.inmate)
        base = f"/visits/live/{esc(state.id)}"
        body = (
            f"<h1>监看会见 Watching visit #{b.id} · {esc(inmate.name if inmate else '')}</h1>"
            "<p>双方看不到也听不到您。The parties neither see nor hear you.</p>"
            f"<div id='watch' data-token='{esc(token)}'>"
            "<button id='watch-start' type='button' class='primary big'>开始监看 Start watching"
            "</button> <span id='watch-status' role='status'></span>"
            " <strong id='watch-remaining' role='timer'></strong>"
            "<div id='watch-tiles' class='live-tiles'></div></div>"
            f"<h2>处置 Actions</h2>{self._warn_form(base, sess.csrf, '?from=watch')}"
            + self._mute_forms(
                base,
                sess.csrf,
                state.participants[row[3]],
                state.participants[row[4]],
                "?from=watch",
            )
            + f"{self._end_form(base, sess.csrf)}"
            f"<p><a href='/visits/sites/{esc(facility)}/live'>返回列表 Back to the list</a></p>"
            + WATCH_SCRIPTS
        )
        return self.c._page("监看 Watch", body, account, sess)

    def routes(self, guard) -> list[web.RouteDef]:
        return [
            web.get("/visits/sites/{site}/live", guard(self.live_list)),
            web.get("/visits/live/{session}/watch", guard(self.watch)),
            web.post("/visits/live/{session}/warn", guard(self.warn)),
            web.post("/visits/live/{session}/end", guard(self.end)),
            web.post("/visits/live/{session}/mute", guard(self.mute)),
        ]
