"""The review page: a session's recording, played in sync, streamed only to authorised staff.

Routes (all need a staff login; recording/review.py decides who may see which session):

    GET  /review/{sid}                      the recording's manifest, the access log, the reason form
    POST /review/{sid}/access               reason + play|download: records ``recording.accessed``,
                                            then opens a ticket -> 303 to the player
    GET  /review/{sid}/play/{ticket}        the synchronised player (static/review.js)
    GET  /review/{sid}/segment/{ticket}/{file}   one segment, decrypted on the server (Range ok)
    POST /review/{sid}/hold                 set or lift the legal hold, with a reason
    POST /review/{sid}/export               reason: queue the composite export (recording/export.py)
    GET  /review/{sid}/export/status        the export's progress, JSON (static/review.js polls it)
    GET  /review/{sid}/exported/{ticket}/{file}   the export, decrypted, as a download
    POST /review/{sid}/reviewed             R3: outcome + note, recorded as ``recording.reviewed``
    GET  /review                            R3: the review queue of the visits one may review,
                                            and the overdue reviews for supervisors

No segment is served without a ticket, and a ticket exists only after its access (who, which
segments, the stated reason) is in the ledger. A ticket belongs to one staff user and one session
and lasts ``TICKET_SECONDS``; the grant is checked again on every request, so a revoked grant
or a logout stops playback at once. Every refusal changes nothing and answers a code.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily

from recording.export import ExportError, Exports, exports, read_export
from recording.keys import MasterKey
from recording.manifest import manifest
from recording.retention import PURGE_INTERVAL, deleted_files, expires_at, purge
from recording.review import (
    GrantsOf,
    SegmentError,
    hold_grant,
    may_see_queue,
    read_segment,
    review_grant,
)
from recording.review_queue import (
    DUE,
    OVERDUE,
    REVIEWED_LATE,
    Task,
    may_need_review,
    queue,
    status,
    task_for,
)
from rooms.commands import decode_command
from rooms.errors import CommandError
from signaling.console import who_label
from signaling.pages import esc, page
from signaling.staff import form, require_staff

log = logging.getLogger("parley.recording")
TICKET_SECONDS = 2 * 3600
MAX_TICKETS = 2000
_TICKET = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
_FILE = re.compile(r"^[A-Za-z0-9._-]{1,120}$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
ACTIONS = {"play": "播放 Play", "download": "下载 Download", "export": "下载导出 Export download"}
OUTCOMES = {"no_concern": "无异常 No concern", "flagged": "有问题，已标记 Flagged"}
STATUS = {
    "due": "待审阅 To review",
    "overdue": "已逾期 Overdue",
    "reviewed": "已审阅 Reviewed",
    "reviewed_late": "逾期后审阅 Reviewed late",
}
EXPORT_STATES = {
    "queued": "排队中 Queued",
    "running": "正在导出 Exporting",
    "done": "导出完成 Done",
    "failed": "导出失败 Failed",
}
STYLE = "<link rel='stylesheet' href='/static/review.css'>"


@dataclass(frozen=True)
class Ticket:
    username: str
    session: str
    action: str
    files: frozenset[str]
    expires: float


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "—"


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Review:
    def __init__(
        self,
        service,
        root: Path,
        master: MasterKey,
        grants_of: GrantsOf,
        retention: dict | None = None,
        clock=time.time,
    ) -> None:
        self.service, self.root, self.master = service, root, master
        self.grants_of = grants_of
        self.retention = retention or {}
        self.clock = clock
        self.tickets: OrderedDict[str, Ticket] = OrderedDict()
        self.exports = Exports(
            root, master, lambda sid, actor, raw: service.execute(sid, actor, decode_command(raw))
        )

    # -- checks -------------------------------------------------------------------------------
    def _allowed(self, request, *, hold: bool = False, either: bool = False):
        """(account, sess, state, grant) or a refusal: 303 to /login, 404, 403. ``either``: the
        page itself, which a supervisor who may only set a hold also sees (without playback)."""
        account, sess = require_staff(request)
        try:
            state = self.service.state(request.match_info["sid"])
        except CommandError:
            raise web.HTTPNotFound(text="not_found: no such session") from None
        grants = list(self.grants_of(account.username))
        grant = (hold_grant if hold else review_grant)(account, grants, state)
        if grant is None and either:
            grant = hold_grant(account, grants, state)
        if grant is None:
            what = "set a legal hold on" if hold else "review"
            raise web.HTTPForbidden(text=f"forbidden: you may not {what} this recording")
        return account, sess, state, grant

    def _kept(self, session: str) -> tuple[dict, list[dict]]:
        events = self.service.events(session)
        m = manifest(events)
        gone = deleted_files(events)
        return m, [s for s in m["segments"] if s["file"] not in gone]

    def _ticket(self, request, account) -> Ticket:
        tid = request.match_info["ticket"]
        ticket = self.tickets.get(tid) if _TICKET.match(tid) else None
        if (
            ticket is None
            or ticket.username != account.username
            or ticket.session != request.match_info["sid"]
            or ticket.expires < self.clock()
        ):
            raise web.HTTPForbidden(text="forbidden: state your reason on the review page first")
        return ticket

    # -- pages --------------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        account, sess, state, grant = self._allowed(request, either=True)
        grants = list(self.grants_of(account.username))
        may_review = review_grant(account, grants, state) is not None
        events = self.service.events(state.id)
        m, kept = self._kept(state.id)
        sid = esc(state.id)
        names = {p.id: p for p in state.participants.values()}

        def person(pid):
            p = names.get(pid)
            return f"{esc(p.name)} ({esc(who_label(p))})" if p else esc(pid or "—")

        rows = "".join(
            f"<tr><td>{person(s['participant'])}</td><td>{s['index']}</td>"
            f"<td>{_clock(s['media_start'])}–{_clock(s['media_end'])}</td>"
            f"<td>{esc(', '.join(s['kinds']))}</td><td>{s['bytes']}</td>"
            f"<td><code>{esc(s['sha256'][:16])}</code></td></tr>"
            for s in kept
        )
        gaps = "".join(
            f"<li>{esc(g['reason'])}: {_when(g['wall_start'])} – {_when(g['wall_end'])}"
            f"{' · ' + person(g.get('participant')) if g.get('participant') else ''}</li>"
            for g in m["gaps"]
        )
        runs = "".join(
            f"<li>{_when(r['started'])} {esc(r['started_by'])} → {_when(r['stopped'])}</li>"
            for r in m["runs"]
        )
        log = "".join(
            f"<tr><td>{_when(e.ts)}</td><td>{esc(e.actor)}</td>"
            f"<td>{esc(ACTIONS.get(e.data['action'], e.data['action']))}</td>"
            f"<td>{len(e.data['files'])}</td><td>{esc(e.data['reason'])}</td></tr>"
            for e in events
            if e.type == "recording.accessed"
        )
        deleted = [e for e in events if e.type == "recording.deleted"]
        hold = state.legal_hold
        due = expires_at(events, self.retention.get(state.kind))
        keep = (
            f"<p>保留期限 Kept until: {_when(due)}</p>"
            if due
            else "<p>保留期限 Kept until: 会话结束后计算 counted from the session's end</p>"
        )
        hold_html = (
            f"<p class='hold on' id='hold'>法律保全中 Legal hold since {_when(hold['since'])} "
            f"({esc(hold['by'])}): {esc(hold['reason'])}</p>"
            if hold
            else "<p class='hold' id='hold'>无法律保全 No legal hold</p>"
        )
        if hold_grant(account, grants, state):
            hold_html += (
                f"<form method='post' action='/review/{sid}/hold' class='stack'>"
                f"<input type='hidden' name='csrf' value='{esc(sess.csrf)}'>"
                f"<input type='hidden' name='hold' value='{'off' if hold else 'on'}'>"
                "<label>理由 Reason<input name='reason' minlength='3' maxlength='200' required>"
                "</label><button type='submit' class='danger'>"
                + ("解除法律保全 Lift the legal hold" if hold else "设置法律保全 Set a legal hold")
                + "</button></form>"
            )
        ask = (
            (
                f"<form method='post' action='/review/{sid}/access' class='stack' id='access'>"
                f"<input type='hidden' name='csrf' value='{esc(sess.csrf)}'>"
                "<label>查看理由（将记入日志）Reason for viewing (it is logged)"
                "<input name='reason' minlength='3' maxlength='200' required></label>"
                "<p><button class='primary big' type='submit' name='action' value='play'>"
                "播放 Play</button> <button class='big' type='submit' name='action' "
                "value='download'>下载 Download</button></p></form>"
            )
            if kept and may_review
            else "<p>没有可查看的录像 No recording to review.</p>"
            if may_review
            else "<p>您只能设置法律保全 You may set a legal hold only.</p>"
        )
        body = (
            f"{STYLE}<h1>录像审阅 Recording review: {esc(state.title)}</h1>"
            f"<p>案号 Case {esc(state.case_number or '—')} · {esc(state.kind)} · "
            f"{'已结束 Ended' if state.ended else '进行中 Open'} · 授权 Access as {esc(grant)}</p>"
            f"<h2>录制 Recording runs</h2><ul>{runs or '<li>—</li>'}</ul>"
            f"<h2>片段 Segments</h2><table class='list'><tr><th>人员 Person</th><th>#</th>"
            "<th>时间 Time</th><th>轨道 Tracks</th><th>字节 Bytes</th><th>SHA-256</th></tr>"
            f"{rows or '<tr><td colspan=6>—</td></tr>'}</table>"
            + (
                f"<p>已删除 Deleted by retention: {sum(len(e.data['files']) for e in deleted)}</p>"
                if deleted
                else ""
            )
            + f"<h2>缺失 Gaps</h2><ul>{gaps or '<li>—</li>'}</ul>"
            f"<h2>保留与法律保全 Retention and legal hold</h2>{keep}{hold_html}"
            f"<h2>查看 View</h2>{ask}"
            + (self._export_html(state, sess, events, person) if kept and may_review else "")
            + self._r3_html(state, sess, events, may_review)
            + "<h2>访问记录 Access log</h2><table class='list' id='access-log'><tr><th>时间 When</th>"
            "<th>人员 Who</th><th>操作 Action</th><th>片段 Segments</th><th>理由 Reason</th></tr>"
            f"{log or '<tr><td colspan=5>—</td></tr>'}</table>"
        )
        return page("录像审阅 Review", body, user=account.display_name, csrf=sess.csrf)

    def _export_html(self, state, sess, events, person) -> str:
        """The export section: start one (reason), its progress (fed by /export/status), and the
        exports already made, each downloadable after a stated reason."""
        sid = esc(state.id)
        job = self.exports.job(state.id)
        now = job.state if job else "none"
        pct = int((job.progress if job else 0) * 100)
        labels = "".join(
            f"<span class='export-state' data-state='{k}'>{esc(v)}</span>"
            for k, v in EXPORT_STATES.items()
        )
        error = f"<span class='export-error'>{esc(job.error)}</span>" if job and job.error else ""
        progress = (  # only while this node has a job for the session: review.js polls it
            f"<div id='export' data-status='/review/{sid}/export/status' data-state='{now}'>"
            f"<progress id='export-progress' max='100' value='{pct}'></progress> "
            f"<output id='export-percent'>{pct}%</output> {labels}{error}</div>"
            "<script src='/static/review.js' defer></script>"
            if job
            else ""
        )
        start = (
            ""
            if self.exports.busy(state.id)
            else f"<form method='post' action='/review/{sid}/export' class='stack' id='export-form'>"
            f"<input type='hidden' name='csrf' value='{esc(sess.csrf)}'>"
            "<label>导出理由（将记入日志）Reason for the export (it is logged)"
            "<input name='reason' minlength='3' maxlength='200' required></label>"
            "<p><button type='submit'>开始导出 Start the export</button></p></form>"
        )
        made = exports(events)
        rows = "".join(
            f"<tr><td>{_when(x['ts'])}</td><td>{esc(x['actor'])}</td>"
            f"<td>{x['width']}×{x['height']}</td><td>{_clock(x['seconds'])}</td>"
            f"<td>{x['bytes']}</td><td><code title='{esc(x['sha256'])}'>{esc(x['sha256'][:16])}"
            "</code></td><td>"
            f"<form method='post' action='/review/{sid}/access' class='inline'>"
            f"<input type='hidden' name='csrf' value='{esc(sess.csrf)}'>"
            f"<input type='hidden' name='action' value='export'>"
            f"<input type='hidden' name='file' value='{esc(x['file'])}'>"
            "<input name='reason' minlength='3' maxlength='200' required "
            "aria-label='下载理由 Reason for the download' placeholder='理由 Reason'> "
            "<button type='submit'>下载 Download</button></form></td></tr>"
            for x in made
        )
        table = (
            "<table class='list' id='exports'><tr><th>时间 When</th><th>人员 Who</th>"
            "<th>画面 Grid</th><th>时长 Length</th><th>字节 Bytes</th><th>SHA-256</th>"
            f"<th>下载 Download</th></tr>{rows}</table>"
            if made
            else ""
        )
        return (
            "<h2>导出 Export</h2><p class='hint'>一个合成文件：所有人的画面网格和混合声音，"
            "由后台低优先级任务生成，加密保存，其 SHA-256 记入会话日志。One composite file: "
            "everyone's picture in a grid and the mixed sound, made by a low-priority background "
            "job, stored encrypted, its SHA-256 in the session's ledger.</p>"
            f"{progress}{start}{table}"
        )

    def _r3_html(self, state, sess, events, may_review: bool) -> str:
        """Rule R3 for a visit: does it need a review, by when, and the reviewer's form."""
        if state.kind != "visitation":
            return ""
        sid = esc(state.id)
        head = "<h2 id='r3'>事后审阅（规则 R3）Review after the visit (rule R3)</h2>"
        task = task_for(state, events)
        if task is None:
            if not state.ended:
                why = "会见结束后确定是否需要审阅 Decided when the visit ends."
            elif not any(e.type == "recording.segment" for e in events):
                why = "没有录像 Nothing was recorded."
            else:
                why = "会见时有工作人员实时监看，无需事后审阅 Watched live by an officer: no review needed."
            return f"{head}<p>{why}</p>"
        st = status(task, self.clock())
        text = f"<p class='r3 {st}'>{esc(STATUS[st])} · 截止 Due {_when(task.due)}</p>"
        if task.reviewed_at is not None:
            text += (
                f"<p>{esc(task.reviewed_by)} · {_when(task.reviewed_at)} · "
                f"{esc(OUTCOMES.get(task.outcome, task.outcome))}</p>"
                f"<blockquote>{esc(task.note)}</blockquote>"
            )
        elif may_review:
            options = "".join(f"<option value='{k}'>{esc(v)}</option>" for k, v in OUTCOMES.items())
            text += (
                f"<form method='post' action='/review/{sid}/reviewed' class='stack' id='reviewed'>"
                f"<input type='hidden' name='csrf' value='{esc(sess.csrf)}'>"
                f"<label>结论 Outcome<select name='outcome'>{options}</select></label>"
                "<label>审阅意见 Note<textarea name='note' minlength='3' maxlength='2000' "
                "required></textarea></label>"
                "<p><button type='submit' class='primary'>标记为已审阅 Mark as reviewed</button>"
                "</p></form>"
            )
        return head + text

    async def access(self, request: web.Request) -> web.Response:
        account, sess, state, grant = self._allowed(request)
        fields = await form(request, sess)
        action = fields.get("action", "")
        reason = fields.get("reason", "").strip()
        if action not in ACTIONS:
            raise web.HTTPBadRequest(text="invalid: action must be play or download")
        if not 3 <= len(reason) <= 200:
            raise web.HTTPBadRequest(text="invalid: state a reason (3-200 characters)")
        _, kept = self._kept(state.id)
        if not kept:
            raise web.HTTPNotFound(text="not_found: this session has no recording to review")
        files = [s["file"] for s in kept]
        if action == "export":
            name = fields.get("file", "")
            made = {x["file"] for x in exports(self.service.events(state.id))}
            if not _FILE.match(name) or name not in made:
                raise web.HTTPNotFound(text="not_found: no such export of this session")
            files = [name]
        try:
            self.service.execute(
                state.id,
                f"staff:{account.username}",
                decode_command(
                    {
                        "type": "record_access",
                        "action": action,
                        "files": files,
                        "reason": reason,
                        "grant": grant,
                    }
                ),
            )
        except CommandError as exc:
            raise web.HTTPConflict(text=f"{exc.code}: {exc.message}") from None
        tid = secrets.token_urlsafe(24)
        self.tickets[tid] = Ticket(
            account.username, state.id, action, frozenset(files), self.clock() + TICKET_SECONDS
        )
        while len(self.tickets) > MAX_TICKETS:
            self.tickets.popitem(last=False)
        if action == "export":
            raise web.HTTPSeeOther(f"/review/{state.id}/exported/{tid}/{files[0]}")
        raise web.HTTPSeeOther(f"/review/{state.id}/play/{tid}")

    async def play(self, request: web.Request) -> web.Response:
        account, sess, state, _ = self._allowed(request)
        ticket = self._ticket(request, account)
        if ticket.action == "export":
            raise web.HTTPForbidden(text="forbidden: this ticket is for the export's download")
        tid = esc(request.match_info["ticket"])
        sid = esc(state.id)
        _, kept = self._kept(state.id)
        names = {p.id: p.name for p in state.participants.values()}
        tracks: dict[str, list[dict]] = {}
        for s in kept:
            if s["file"] in ticket.files:
                tracks.setdefault(s["participant"], []).append(s)
        if ticket.action == "download":
            links = "".join(
                f"<li><a download href='/review/{sid}/segment/{tid}/{esc(s['file'])}'>"
                f"{esc(names.get(pid, pid))} #{s['index']} ({_clock(s['media_start'])})</a></li>"
                for pid, segs in tracks.items()
                for s in segs
            )
            body = (
                f"<h1>下载 Download: {esc(state.title)}</h1><p class='hint'>解密后的 WebM 片段，"
                "每次下载已记入日志。Decrypted WebM segments; the download is logged.</p>"
                f"<ul class='downloads'>{links}</ul>"
                f"<p><a class='button' href='/review/{sid}'>返回 Back</a></p>"
            )
            return page("下载 Download", body, user=account.display_name, csrf=sess.csrf)
        start = min(s["media_start"] for segs in tracks.values() for s in segs)
        end = max(s["media_end"] for segs in tracks.values() for s in segs)
        cols = "".join(
            f"<figure class='track' data-participant='{esc(pid)}'>"
            "<video muted playsinline preload='auto'></video>"
            f"<p class='idle'>此时无录像 Nothing recorded at this time</p>"
            f"<figcaption>{esc(names.get(pid, pid))}</figcaption><ol hidden>"
            + "".join(
                f"<li data-start='{s['media_start']}' data-end='{s['media_end']}' "
                f"data-src='/review/{sid}/segment/{tid}/{esc(s['file'])}'></li>"
                for s in segs
            )
            + "</ol></figure>"
            for pid, segs in tracks.items()
        )
        body = (
            f"{STYLE}<h1>播放 Playback: {esc(state.title)}</h1>"
            f"<div id='player' data-start='{start}' data-end='{end}'>"
            f"<div class='tracks'>{cols}</div><div class='controls'>"
            "<button type='button' id='toggle' class='primary'>播放 Play / 暂停 Pause</button>"
            f"<input type='range' id='seek' min='{start}' max='{end}' step='0.1' value='{start}' "
            "aria-label='时间 Time'><output id='time'>0:00:00</output>"
            "<label><input type='checkbox' id='sound' checked> 声音 Sound</label></div></div>"
            f"<p><a class='button' href='/review/{sid}'>返回 Back</a></p>"
            "<script src='/static/review.js' defer></script>"
        )
        return page("播放 Playback", body, user=account.display_name, csrf=sess.csrf)

    async def segment(self, request: web.Request) -> web.StreamResponse:
        account, _, state, _ = self._allowed(request)
        ticket = self._ticket(request, account)
        name = request.match_info["file"]
        if not _FILE.match(name) or name not in ticket.files or ticket.action == "export":
            raise web.HTTPForbidden(text="forbidden: this segment is not in your access")
        _, kept = self._kept(state.id)
        record = next((s for s in kept if s["file"] == name), None)
        if record is None:
            raise web.HTTPGone(text="gone: this segment was deleted")
        try:
            data = await asyncio.get_running_loop().run_in_executor(
                None, read_segment, self.root, self.master, state.id, record
            )
        except SegmentError as exc:
            raise web.HTTPGone(text=f"{exc.code}: {exc.message}") from None
        headers = {
            "Cache-Control": "no-store",
            "Accept-Ranges": "bytes",
            "Content-Disposition": (
                f"attachment; filename={name.removesuffix('.seg')}.webm"
                if ticket.action == "download"
                else "inline"
            ),
        }
        status, body = 200, data
        if (rng := request.headers.get("Range")) is not None:
            m = _RANGE.match(rng.strip())
            first, last = (m.group(1), m.group(2)) if m else ("", "")
            if not m or (first == "" and last == ""):
                raise web.HTTPRequestRangeNotSatisfiable(
                    headers={"Content-Range": f"bytes */{len(data)}"}
                )
            if first == "":
                a, b = max(0, len(data) - int(last)), len(data) - 1
            else:
                a, b = int(first), min(len(data) - 1, int(last) if last else len(data) - 1)
            if a > b or a >= len(data):
                raise web.HTTPRequestRangeNotSatisfiable(
                    headers={"Content-Range": f"bytes */{len(data)}"}
                )
            status, body = 206, data[a : b + 1]
            headers["Content-Range"] = f"bytes {a}-{b}/{len(data)}"
        return web.Response(status=status, body=body, content_type="video/webm", headers=headers)

    async def export_start(self, request: web.Request) -> web.Response:
        """Queue the composite export; the child process records ``recording.exported``."""
        account, sess, state, grant = self._allowed(request)
        fields = await form(request, sess)
        reason = fields.get("reason", "").strip()
        if not 3 <= len(reason) <= 200:
            raise web.HTTPBadRequest(text="invalid: state a reason (3-200 characters)")
        _, kept = self._kept(state.id)
        if not kept:
            raise web.HTTPNotFound(text="not_found: this session has no recording to export")
        if self.exports.busy(state.id):
            raise web.HTTPConflict(text="conflict: an export of this session is already running")
        index = len(exports(self.service.events(state.id)))
        self.exports.start(state.id, account.username, grant, reason, kept, index)
        raise web.HTTPSeeOther(f"/review/{state.id}#export")

    async def export_status(self, request: web.Request) -> web.Response:
        self._allowed(request)
        job = self.exports.job(request.match_info["sid"])
        body = job.public() if job else {"state": "none", "progress": 0.0, "file": "", "error": ""}
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def exported(self, request: web.Request) -> web.Response:
        """The export, decrypted and checked against its ledger record, as an attachment."""
        account, _, state, _ = self._allowed(request)
        ticket = self._ticket(request, account)
        name = request.match_info["file"]
        if ticket.action != "export" or not _FILE.match(name) or name not in ticket.files:
            raise web.HTTPForbidden(text="forbidden: this export is not in your access")
        record = next(
            (x for x in exports(self.service.events(state.id)) if x["file"] == name), None
        )
        if record is None:
            raise web.HTTPNotFound(text="not_found: no such export of this session")
        try:
            data = await asyncio.get_running_loop().run_in_executor(
                None, read_export, self.root, self.master, state.id, record
            )
        except (ExportError, ValueError) as exc:
            raise web.HTTPGone(text=f"changed: {exc}") from None
        stem = name.removesuffix(".exp")
        return web.Response(
            body=data,
            content_type="video/webm",
            headers={
                "Cache-Control": "no-store",
                "Content-Disposition": f"attachment; filename={state.id}-{stem}.webm",
            },
        )

    async def reviewed(self, request: web.Request) -> web.Response:
        """R3: the reviewer's outcome and note, recorded as ``recording.reviewed``."""
        account, sess, state, grant = self._allowed(request)
        fields = await form(request, sess)
        outcome = fields.get("outcome", "")
        note = fields.get("note", "").strip()
        if state.kind != "visitation":
            raise web.HTTPConflict(text="conflict: only visits are reviewed under rule R3")
        if outcome not in OUTCOMES:
            raise web.HTTPBadRequest(text="invalid: outcome must be no_concern or flagged")
        if not 3 <= len(note) <= 2000:
            raise web.HTTPBadRequest(text="invalid: write a note (3-2000 characters)")
        task = task_for(state, self.service.events(state.id))
        if task is None:
            raise web.HTTPConflict(text="conflict: this visit has no review task (rule R3)")
        if task.reviewed_at is not None:
            raise web.HTTPConflict(text="conflict: this visit is already reviewed")
        try:
            self.service.execute(
                state.id,
                f"staff:{account.username}",
                decode_command(
                    {"type": "review_recording", "outcome": outcome, "note": note, "grant": grant}
                ),
            )
        except CommandError as exc:
            raise web.HTTPConflict(text=f"{exc.code}: {exc.message}") from None
        raise web.HTTPSeeOther(f"/review/{state.id}#r3")

    async def queue_page(self, request: web.Request) -> web.Response:
        """R3: the visits this account may review that need a review; overdue ones apart, for
        supervisors (and admins)."""
        account, sess = require_staff(request)
        grants = list(self.grants_of(account.username))
        if not may_see_queue(account, grants):
            raise web.HTTPForbidden(text="forbidden: the review queue needs a reviewer grant")
        now = self.clock()
        tasks, supervised = [], set()
        for state in self.service.sessions():
            if not may_need_review(state):  # the ledger is read only for ended visits
                continue
            grant = review_grant(account, grants, state)
            if grant is None:
                continue
            task = task_for(state, self.service.events(state.id))
            if task is not None:
                tasks.append(task)
                if grant in ("supervisor", "admin"):
                    supervised.add(task.session)
        ordered = queue(tasks, now)

        def row(t, st):
            return (
                f"<tr class='{st}'><td><a href='/review/{esc(t.session)}#r3'>"
                f"{esc(t.case_number or t.session)}</a></td><td>{esc(t.title)}</td>"
                f"<td>{_when(t.ended_at)}</td><td>{_when(t.due)}</td><td>{esc(STATUS[st])}</td>"
                f"<td>{esc(t.reviewed_by or '—')}</td></tr>"
            )

        head = (
            "<tr><th>案号 Case</th><th>会见 Visit</th><th>结束 Ended</th><th>截止 Due</th>"
            "<th>状态 Status</th><th>审阅人 Reviewer</th></tr>"
        )
        mine = "".join(row(t, st) for t, st in ordered)
        late = [
            (t, st)
            for t, st in ordered
            if st in (OVERDUE, REVIEWED_LATE) and t.session in supervised
        ]
        body = (
            f"{STYLE}<h1>审阅队列 Review queue</h1><p class='hint'>未被实时监看的会见须在结束后"
            "两天内审阅录像（规则 R3）。A visit nobody watched live is reviewed from its recording "
            "within two days of its end (rule R3).</p>"
            f"<table class='list' id='queue'>{head}"
            f"{mine or '<tr><td colspan=6>没有待审阅的会见 Nothing to review</td></tr>'}</table>"
        )
        if supervised:
            body += (
                "<h2>逾期审阅（主管）Overdue reviews (supervisor)</h2>"
                f"<table class='list' id='overdue'>{head}"
                + (
                    "".join(row(t, st) for t, st in late)
                    or "<tr><td colspan=6>没有逾期 Nothing overdue</td></tr>"
                )
                + "</table>"
            )
        return page("审阅队列 Review queue", body, user=account.display_name, csrf=sess.csrf)

    async def hold(self, request: web.Request) -> web.Response:
        account, sess, state, _ = self._allowed(request, hold=True)
        fields = await form(request, sess)
        hold = fields.get("hold", "")
        reason = fields.get("reason", "").strip()
        if hold not in ("on", "off"):
            raise web.HTTPBadRequest(text="invalid: hold must be on or off")
        if not 3 <= len(reason) <= 200:
            raise web.HTTPBadRequest(text="invalid: state a reason (3-200 characters)")
        try:
            self.service.execute(
                state.id,
                f"staff:{account.username}",
                decode_command({"type": "set_legal_hold", "hold": hold == "on", "reason": reason}),
            )
        except CommandError as exc:
            raise web.HTTPConflict(text=f"{exc.code}: {exc.message}") from None
        raise web.HTTPSeeOther(f"/review/{state.id}#hold")

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/review", self.queue_page),
            web.get("/review/{sid}", self.index),
            web.post("/review/{sid}/export", self.export_start),
            web.get("/review/{sid}/export/status", self.export_status),
            web.get("/review/{sid}/exported/{ticket}/{file}", self.exported),
            web.post("/review/{sid}/reviewed", self.reviewed),
            web.post("/review/{sid}/access", self.access),
            web.get("/review/{sid}/play/{ticket}", self.play),
            web.get("/review/{sid}/segment/{ticket}/{file}", self.segment),
            web.post("/review/{sid}/hold", self.hold),
        ]


class ReviewMetrics:
    """R3 on ``/metrics`` (read at scrape time): the node's visits whose review is overdue, and
    those still due. An ended visit's task is kept per ledger ``seq``, so a scrape reads the
    ledger only of visits that changed since the last one."""

    def __init__(self, service, clock=time.time) -> None:
        self.service, self.clock = service, clock
        self._tasks: dict[str, tuple[int, Task | None]] = {}

    def tasks(self) -> list[Task]:
        out = []
        for state in self.service.sessions():
            if not may_need_review(state):
                continue
            seq, task = self._tasks.get(state.id, (None, None))
            if seq != state.seq:
                task = task_for(state, self.service.events(state.id))
                self._tasks[state.id] = (state.seq, task)
            if task is not None:
                out.append(task)
        return out

    def collect(self):
        now = self.clock()
        rated = [status(t, now) for t in self.tasks()]
        for name, st, help_ in (
            ("overdue", OVERDUE, "R3: visits nobody watched live, not reviewed within two days"),
            ("due", DUE, "R3: visits nobody watched live, to review (not yet overdue)"),
        ):
            yield GaugeMetricFamily(f"parley_review_{name}", help_, value=rated.count(st))


async def purge_forever(service, root: Path, days: dict, interval: float = PURGE_INTERVAL) -> None:
    """The server's retention job: a pass now and then every ``interval`` seconds, off the loop."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            await loop.run_in_executor(None, purge, service, root, days, time.time())
        except Exception:  # noqa: BLE001 - the job must keep running
            log.exception("retention pass failed")
        await asyncio.sleep(interval)
