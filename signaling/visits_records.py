"""The education/reform record pages (visits/records.py), site-scoped like every visits page.

``/visits/sites/<site>/records``: at a prison or centre (``records.publish``) find one of its
inmates, publish or withdraw entries, and see who read the record; at a bureau
(``records.read``) find an inmate of any facility, choose the approved relative who asks, and
**open** the record — a POST, because opening is logged before anything is shown.
"""

from __future__ import annotations

from aiohttp import web

from signaling.pages import esc
from signaling.visits_pages import csrf_field, inmate_search, number, relative_options
from visits.model import VisitError
from visits.records import KINDS, Records

KIND_TEXT = {
    "course": "课程 Course",
    "work": "劳动 Work",
    "assessment": "考核 Assessment",
    "points": "计分 Points",
}


class RecordPages:
    def __init__(self, console) -> None:
        self.c = console
        self.records = Records(console.res.store)

    @staticmethod
    def _table(entries) -> str:
        rows = "".join(
            f"<tr data-entry='{e.id}'><td>{esc(e.period)}</td><td>{esc(KIND_TEXT[e.kind])}</td>"
            f"<td>{esc(e.title)}</td><td>{esc(e.detail)}</td></tr>"
            for e in entries
        )
        return (
            "<table class='list records'><tr><th>月份 Month</th><th>类别 Kind</th>"
            "<th>项目 Title</th><th>说明 Detail</th></tr>"
            + (rows or "<tr><td colspan=4>暂无公开记录 Nothing published</td></tr>")
            + "</table>"
        )

    async def page(self, request: web.Request) -> web.Response:
        account, sess, grants = self.c._staff(request)
        site_id = request.match_info["site"]
        known = self.c.directory.site(site_id) if len(site_id) <= 40 else None
        q = request.query
        if known is not None and known.facility:
            site = self.c._site(grants, "records.publish", site_id)
            body = self._facility(site, q, sess.csrf)
        else:
            site = self.c._site(grants, "records.read", site_id)
            body = self._counter(site, q, sess.csrf)
        return self.c._page("教育改造表现 Education record", body, account, sess)

    @staticmethod
    def _find(site, q, facilities) -> str:
        return inmate_search("教育改造表现 Education record", site, q, facilities)

    def _facility(self, site, q, csrf: str) -> str:
        find = self._find(site, q, [site])
        if not q.get("number"):
            return find
        inmate = self.c._inmate_by_number(site.id, q.get("number"))
        kinds = "".join(f"<option value='{k}'>{esc(KIND_TEXT[k])}</option>" for k in KINDS)
        base = f"/visits/sites/{esc(site.id)}/records/{inmate.id}"
        withdraw = "".join(
            f"<form method='post' action='{base}/{e.id}/withdraw' class='inline'>"
            f"{csrf_field(csrf)}<button type='submit'>撤回 Withdraw {esc(e.period)} "
            f"{esc(e.title)}</button></form>"
            for e in self.records.entries(inmate.id)
        )
        names = {v.id: v.name for v in self.c.directory.visitors(inmate.id)}
        reads = "".join(
            f"<tr><td>{esc(r.at)}</td><td>{esc(names.get(r.visitor, r.visitor))}</td>"
            f"<td>{esc(r.read_by)}</td><td>{r.entries}</td></tr>"
            for r in self.records.reads(inmate.id)
        )
        return (
            find
            + f"<h2>{esc(inmate.name)} · {esc(inmate.number)}</h2>"
            + self._table(self.records.entries(inmate.id))
            + withdraw
            + f"<form method='post' action='{base}' class='stack'>{csrf_field(csrf)}"
            f"<label>类别 Kind<select name='kind'>{kinds}</select></label>"
            "<label>月份 Month<input name='period' placeholder='2030-01' maxlength='7' required>"
            "</label><label>项目 Title<input name='title' maxlength='100' required></label>"
            "<label>说明 Detail<input name='detail' maxlength='500'></label>"
            "<button type='submit'>公开给亲属 Publish to relatives</button></form>"
            "<h2>查阅记录 Who read it</h2><table class='list'><tr><th>时间 Time</th>"
            "<th>亲属 Relative</th><th>经办 By</th><th>条数 Entries</th></tr>"
            + (reads or "<tr><td colspan=4>—</td></tr>")
            + "</table>"
        )

    def _counter(self, site, q, csrf: str) -> str:
        find = self._find(site, q, [s for s in self.c.directory.sites() if s.facility])
        if not q.get("number"):
            return find
        inmate = self.c._inmate_by_number(q.get("facility"), q.get("number"))
        relatives = relative_options(self.c.directory.visitors(inmate.id))
        return (
            find
            + f"<h2>{esc(inmate.name)} · {esc(inmate.facility)} {esc(inmate.number)}</h2>"
            + f"<form method='post' action='/visits/sites/{esc(site.id)}/records/read' "
            f"class='stack'>{csrf_field(csrf)}<input type='hidden' name='inmate' "
            f"value='{inmate.id}'><label>查阅亲属（已核验身份）Relative asking (identity checked)"
            f"<select name='visitor'>{relatives}</select></label>"
            "<p>每次查阅都会记录。Every read is logged.</p>"
            "<button type='submit' class='primary'>查阅 Open the record</button></form>"
        )

    async def read(self, request: web.Request) -> web.Response:
        account, sess, grants, fields = await self.c._form(request)
        site = self.c._site(grants, "records.read", request.match_info["site"])
        inmate_id = number(fields.get("inmate"), "inmate")
        inmate = self.c.directory.inmate(inmate_id)
        if inmate is None:
            raise VisitError("not_found", "no such inmate")
        entries = self.records.read(
            f"staff:{account.username}",
            inmate_id,
            number(fields.get("visitor"), "visitor"),
            self.c.now(),
        )
        body = (
            f"<h1>教育改造表现 Education record · {esc(inmate.name)}</h1>"
            f"<p>{esc(inmate.facility)} {esc(inmate.number)} · "
            "本次查阅已记录 This read is logged</p>"
            + self._table(entries)
            + f"<p><a href='/visits/sites/{esc(site.id)}/records'>返回 Back</a></p>"
        )
        return self.c._page("教育改造表现 Education record", body, account, sess)

    def _facility_inmate(self, request, grants):
        site = self.c._site(grants, "records.publish", request.match_info["site"])
        inmate = self.c.directory.inmate(number(request.match_info["inmate"], "inmate"))
        if inmate is None or inmate.facility != site.id:
            raise VisitError("not_found", "no such inmate at this facility")
        return site, inmate

    async def publish(self, request: web.Request) -> web.Response:
        account, sess, grants, fields = await self.c._form(request)
        site, inmate = self._facility_inmate(request, grants)
        self.records.publish(f"staff:{account.username}", inmate.id, fields, self.c.now())
        raise web.HTTPSeeOther(
            f"/visits/sites/{site.id}/records?facility={site.id}&number={inmate.number}"
        )

    async def withdraw(self, request: web.Request) -> web.Response:
        account, sess, grants, fields = await self.c._form(request)
        site, inmate = self._facility_inmate(request, grants)
        self.records.withdraw(inmate.id, number(request.match_info["entry"], "entry"))
        raise web.HTTPSeeOther(
            f"/visits/sites/{site.id}/records?facility={site.id}&number={inmate.number}"
        )

    def routes(self, guard) -> list[web.RouteDef]:
        return [
            web.get("/visits/sites/{site}/records", guard(self.page)),
            web.post("/visits/sites/{site}/records/read", guard(self.read)),
            web.post("/visits/sites/{site}/records/{inmate}", guard(self.publish)),
            web.post(
                "/visits/sites/{site}/records/{inmate}/{entry}/withdraw", guard(self.withdraw)
            ),
        ]
