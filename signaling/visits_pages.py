"""HTML pieces of the visitation console, server-rendered and escaped: the capacity grid, booking
rows with the actions the viewer may take, the booking form. No script: every action is a form
with the session's CSRF token, and the grid reads without colour (each cell carries a mark)."""

from __future__ import annotations

import datetime as dt
import re

from aiohttp import web

from signaling.pages import esc
from visits import booking, hours
from visits.booking import CANCEL_REASONS, REJECT_REASONS
from visits.model import VisitError
from visits.notices import REASONS

STATUS = {
    "requested": "待审核 requested",
    "approved": "已批准 approved",
    "rejected": "未批准 rejected",
    "cancelled": "已取消 cancelled",
    "rescheduled": "已改期 rescheduled",
    "no_show": "未到 no-show",
    "completed": "已完成 completed",
}
ERRORS = {
    "invalid": (400, "输入有误 Invalid input"),
    "forbidden": (403, "无此权限 Not permitted"),
    "needs_supervisor": (403, "需监所领导审批 A supervisor must approve"),
    "not_found": (404, "未找到 Not found"),
    "conflict": (409, "冲突 Conflict"),
    "quota": (409, "超出会见额度 Beyond the quota"),
    "too_late": (409, "已过时限 Too late"),
    "too_soon": (409, "时间未到 Too soon"),
    "identity_mismatch": (409, "证件号码与备案不符 The ID does not match the approved record"),
    # a visit served by another node (docs/scaling.md, "Commands and views across nodes")
    "session_moving": (
        503,
        "会见正在转移到另一台服务器，请稍后重试 The visit is moving; try again",
    ),
    "unavailable": (503, "会见所在的服务器未响应，请稍后重试 The visit's server did not answer"),
}
VISITS_STAFF = web.RequestKey("visits_staff", tuple)  # (account, session) for error pages
FIRST_HOUR, LAST_HOUR = 7, 19  # the grid's columns when no terminal opens earlier or later


_ID = re.compile(r"^[1-9][0-9]{0,11}$")


def number(value: object, field: str) -> int:
    """A posted id or count: 1 to 12 ASCII digits, no leading zero."""
    if not isinstance(value, str) or not _ID.match(value):
        raise VisitError("invalid", f"{field}: a number")
    return int(value)


def inmate_search(title: str, site, q, facilities) -> str:
    """The page's heading and the counter's search: a facility and an inmate number."""
    options = "".join(
        f"<option value='{esc(s.id)}'{' selected' if q.get('facility') == s.id else ''}>"
        f"{esc(s.name)}</option>"
        for s in facilities
    )
    return (
        f"<h1>{esc(title)} · {esc(site.name)}</h1>"
        "<form method='get' class='stack'>"
        f"<label>监所 Facility<select name='facility'>{options}</select></label>"
        "<label>服刑人员编号 Inmate number<input name='number' maxlength='32' required "
        f"value='{esc(q.get('number', ''))}'></label><button type='submit'>查找 Find</button>"
        "</form>"
    )


def relative_options(visitors) -> str:
    """The inmate's approved relatives (lawyers aside) as <option>s, told apart by their ID's
    last four characters."""
    return "".join(
        f"<option value='{v.id}'>{esc(v.name)} · {esc(v.relationship)} · ****"
        f"{esc(v.id_last4)}</option>"
        for v in visitors
        if v.relationship != "lawyer"
    )


def csrf_field(csrf: str) -> str:
    return f"<input type='hidden' name='csrf' value='{esc(csrf)}'>"


def reason_select(reasons) -> str:
    return (
        "<select name='reason'>"
        + "".join(
            f"<option value='{r}'>{esc(REASONS[r][0])} {esc(REASONS[r][1])}</option>"
            for r in reasons
        )
        + "</select>"
    )


def grid(terminals, maintenance, held, day: dt.date) -> str:
    """Terminals × 15-minute cells of one day. ``maintenance``: terminal -> [(start, end)];
    ``held``: (terminal, cell) -> (booking id, status)."""
    schedules = {t.id: hours.parse(t.hours) if t.active else {} for t in terminals}
    spans = [s for sch in schedules.values() for s in sch.get(day.isoweekday(), ())]
    first = min([FIRST_HOUR * 60] + [a for a, _ in spans])
    last = max([LAST_HOUR * 60] + [b for _, b in spans])
    starts = [
        dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=m)
        for m in range(first - first % 15, last, booking.CELL)
    ]
    head = "".join(
        f"<th scope='col'>{s:%H:%M}</th>" if s.minute == 0 else "<th scope='col'></th>"
        for s in starts
    )
    rows = []
    for t in terminals:
        cells = []
        for s in starts:
            got = held.get((t.id, booking.cell(s)))
            if got:
                bid, status = got
                cells.append(
                    f"<td class='cell {esc(status)}' title='{esc(STATUS.get(status, status))}'>"
                    f"<a href='#b{bid}'>{bid}</a></td>"
                )
            elif any(a <= s < b for a, b in maintenance.get(t.id, ())):
                cells.append("<td class='cell maintenance' title='维护 maintenance'>▲</td>")
            elif hours.is_open(schedules[t.id], s, booking.CELL):
                cells.append(f"<td class='cell free' title='空闲 free {s:%H:%M}'>·</td>")
            else:
                cells.append("<td class='cell closed' title='关闭 closed'>×</td>")
        rows.append(
            f"<tr><th scope='row'>{esc(t.name)} <small>{esc(t.id)}</small></th>{''.join(cells)}</tr>"
        )
    legend = (
        "<p class='legend'>· 空闲 free　× 关闭 closed　▲ 维护 maintenance　"
        "数字 number: 预约编号 booking</p>"
    )
    return (
        f"<table class='grid'><tr><th scope='col'>终端 Terminal</th>{head}</tr>"
        f"{''.join(rows) or '<tr><td>—</td></tr>'}</table>{legend}"
    )


def booking_row(b, inmate, actions: set[str], csrf: str) -> str:
    """One booking with the forms the viewer may use (``actions`` from visits/access.py)."""
    forms = []
    base = f"/visits/bookings/{b.id}"
    if b.status == "requested" and "decide" in actions:
        forms.append(
            f"<form method='post' action='{base}/decide' class='inline'>{csrf_field(csrf)}"
            "<button name='decision' value='approve' type='submit'>批准 Approve</button>"
            f"{reason_select(REJECT_REASONS)}"
            "<button name='decision' value='reject' type='submit'>驳回 Reject</button></form>"
        )
    if b.status in booking.ACTIVE and "cancel" in actions:
        forms.append(
            f"<form method='post' action='{base}/cancel' class='inline'>{csrf_field(csrf)}"
            f"{reason_select(CANCEL_REASONS)}"
            "<button type='submit'>取消 Cancel</button></form>"
        )
    if b.status == "approved" and "checkin" in actions:
        forms.append(f"<a class='button' href='{base}/checkin'>到场核验 Check in</a>")
    if b.status == "approved" and "no_show" in actions:
        forms.append(
            f"<form method='post' action='{base}/no-show' class='inline'>{csrf_field(csrf)}"
            "<button type='submit'>标记未到 Mark no-show</button></form>"
        )
    exception = (
        f"<br><small>例外 exception: {esc(b.exception_reason)}"
        f"{' · ' + esc(b.exception_by) if b.exception_by else ''}</small>"
        if b.exception_reason
        else ""
    )
    who = f"{esc(inmate.name)} ({esc(inmate.facility)} {esc(inmate.number)})" if inmate else "—"
    return (
        f"<tr id='b{b.id}' data-booking='{b.id}'><td>{b.id}</td><td>{b.start:%Y-%m-%d %H:%M}"
        f" · {b.minutes}′{' · 律师会见 lawyer' if b.kind == 'privileged' else ''}</td><td>{who}</td><td>{esc(b.bureau_terminal)} ↔ "
        f"{esc(b.facility_terminal)}</td><td>{esc(STATUS.get(b.status, b.status))}"
        f"{' · ' + esc(b.reason_code) if b.reason_code else ''}{exception}</td>"
        f"<td>{''.join(forms)}</td></tr>"
    )


def bookings_table(rows: list[str]) -> str:
    return (
        "<table class='list bookings'><tr><th>编号 No.</th><th>时间 Time</th>"
        "<th>服刑人员 Inmate</th><th>终端 Terminals</th><th>状态 Status</th><th></th></tr>"
        f"{''.join(rows) or '<tr><td colspan=6>—</td></tr>'}</table>"
    )


def book_form(site: str, csrf: str, inmate, visitors, proposals, fields: dict, workers=()) -> str:
    """Step 2 of booking at the counter: who comes (relatives, help-education workers eligible
    for the inmate, visits/reservations.py ``workers_for``), which proposed slot, how to tell
    them."""
    people = "".join(
        f"<label class='inline'><input type='checkbox' name='visitor' value='{v.id}'>"
        f"{esc(v.name)} · {esc(v.relationship)} · ****{esc(v.id_last4)} · "
        f"至 until {esc(v.expires)}</label>"
        for v in visitors
    )
    helpers = "".join(
        f"<label class='inline'><input type='checkbox' name='worker' value='{w[0]}'>"
        f"{esc(w[1])} · {esc(w[3])}</label>"
        for w in workers
    )
    if helpers:
        people += f"</fieldset><fieldset><legend>帮教人员 Help-education workers</legend>{helpers}"
    slots = "".join(
        f"<label class='inline'><input type='radio' name='slot' required value='"
        f"{booking.cell(p.start)}|{esc(p.bureau_terminal)}|{esc(p.facility_terminal)}'>"
        f"{p.start:%Y-%m-%d %H:%M} · {p.minutes}′ · {esc(p.bureau_terminal)} ↔ "
        f"{esc(p.facility_terminal)}</label>"
        for p in proposals
    )
    return (
        f"<h2>{esc(inmate.name)} · {esc(inmate.facility)} {esc(inmate.number)}</h2>"
        f"<form method='post' action='/visits/sites/{esc(site)}/bookings' class='stack'>"
        f"{csrf_field(csrf)}<input type='hidden' name='inmate' value='{inmate.id}'>"
        f"<input type='hidden' name='minutes' value='{esc(fields.get('minutes', '30'))}'>"
        f"<fieldset><legend>会见人 Visitors</legend>{people or '—'}</fieldset>"
        f"<fieldset><legend>可选时段 Proposed times</legend>"
        f"{slots or '<p>所选日期无可用时段 No free time on those dates</p>'}</fieldset>"
        "<label>通知邮箱 Notice e-mail<input name='contact' maxlength='200' type='email'></label>"
        "<label>会见类型 Kind<select name='kind'><option value='visitation'>亲属会见 Family visit"
        "</option><option value='privileged'>律师会见（不录音录像、不监听，仅限备案律师）Lawyer visit"
        " (never recorded or observed; registered lawyers only)</option></select></label>"
        "<label>语言 Language<select name='lang'><option value='zh'>中文</option>"
        "<option value='en'>English</option></select></label>"
        "<label>超额例外理由（需监所领导审批）Exception beyond quota (a supervisor approves)"
        "<input name='exception_reason' maxlength='200'></label>"
        "<button class='primary big' type='submit'>提交预约 Request the visit</button></form>"
        "<p>亲属也可用备案的手机号码在手机上自助预约、点餐、查看教育改造表现："
        "<a href='/family'>/family</a>. Approved relatives can also do this on their phone.</p>"
    )
