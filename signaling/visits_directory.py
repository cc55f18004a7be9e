"""The directory's console pages: a site's terminals (device credentials issued once, revoked at
once), its inmates, and the CSV import with its per-line dry run (visits/importer.py).

A terminal's token is shown once, on the page that issued it, and never again: only its digest is
stored. Import touches many sites in one file, so it needs the directory-admin grant for the whole
province (``*``); the command line (``server.py visits import``) is the same code.
"""

from __future__ import annotations

import datetime as dt
import hmac

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from signaling.pages import esc
from signaling.visits_pages import csrf_field
from visits import importer
from visits.access import ALL_SITES, allowed, require
from visits.model import VisitError


class DirectoryPages:
    def __init__(self, console) -> None:
        self.c = console
        self.directory = console.directory

    def _terminal(self, grants, request):
        site = self.c._site(grants, "terminal.credential", request.match_info["site"])
        terminal = self.directory.terminal(request.match_info["tid"])
        if terminal is None or terminal.site != site.id:
            raise VisitError("not_found", "no such terminal at this site")
        return site, terminal

    async def view(self, request: web.Request) -> web.Response:
        account, sess, grants = self.c._staff(request)
        site = self.c._site(grants, "directory.view", request.match_info["site"])
        may_issue = allowed(grants, "terminal.credential", site.id)
        rows = []
        for t in self.directory.terminals(site.id):
            actions = ""
            if may_issue:
                base = f"/visits/sites/{esc(site.id)}/terminals/{esc(t.id)}"
                actions = (
                    f"<form method='post' action='{base}/credential' class='inline'>"
                    f"{csrf_field(sess.csrf)}<button type='submit'>签发凭证 Issue credential"
                    "</button></form>"
                    f"<form method='post' action='{base}/revoke' class='inline'>"
                    f"{csrf_field(sess.csrf)}<button type='submit'>吊销 Revoke</button></form>"
                )
            state = "有 yes" if self.directory.has_credential(t.id) else "无 none"
            rows.append(
                f"<tr data-terminal='{esc(t.id)}'><td>{esc(t.id)}</td><td>{esc(t.name)}</td>"
                f"<td>{esc(t.kind)}</td><td>{esc(t.hours)}</td><td>{state}</td>"
                f"<td>{actions}</td></tr>"
            )
        inmates = "".join(
            f"<tr><td>{esc(i.number)}</td><td>{esc(i.name)}</td><td>{esc(i.grade)}</td>"
            f"<td>{esc(i.status)}</td><td>{len(self.directory.visitors(i.id))}</td></tr>"
            for i in (self.directory.inmates(site.id) if site.facility else [])
        )
        body = (
            f"<h1>{esc(site.name)} · 名录 Directory</h1>"
            "<h2>终端 Terminals</h2><table class='list'><tr><th>编号 Id</th><th>名称 Name</th>"
            "<th>类型 Kind</th><th>开放时间 Hours</th><th>凭证 Credential</th><th></th></tr>"
            f"{''.join(rows) or '<tr><td colspan=6>—</td></tr>'}</table>"
            + (
                "<h2>服刑人员 Inmates</h2><table class='list'><tr><th>编号 Number</th>"
                "<th>姓名 Name</th><th>等级 Grade</th><th>状态 Status</th>"
                f"<th>批准会见人 Approved visitors</th></tr>{inmates or '<tr><td colspan=5>—</td></tr>'}</table>"
                if site.facility
                else ""
            )
        )
        return self.c._page(site.name, body, account, sess)

    async def issue(self, request: web.Request) -> web.Response:
        account, sess, grants, _ = await self.c._form(request)
        site, terminal = self._terminal(grants, request)
        token = self.directory.issue_credential(terminal.id, dt.datetime.now().timestamp())
        body = (
            f"<h1>{esc(terminal.name)} · 终端凭证 Terminal credential</h1>"
            "<p class='hint'>只显示这一次：请立即在终端上配置，旧凭证已失效。"
            "Shown this once: enter it on the terminal now; the previous credential no longer "
            "works.</p>"
            f"<p><code class='token' data-token>{esc(token)}</code></p>"
            f"<p><a href='/visits/sites/{esc(site.id)}/directory'>返回 Back</a></p>"
        )
        return self.c._page("凭证 Credential", body, account, sess)

    async def revoke(self, request: web.Request) -> web.Response:
        account, sess, grants, _ = await self.c._form(request)
        site, terminal = self._terminal(grants, request)
        self.directory.revoke_credential(terminal.id)
        raise web.HTTPSeeOther(f"/visits/sites/{site.id}/directory")

    def _import_form(self, sess, report=None) -> str:
        kinds = "".join(f"<option value='{k}'>{k}</option>" for k in importer.KINDS)
        out = (
            "<h1>批量导入 CSV import</h1>"
            "<p class='hint'>UTF-8 或 GB18030；第一行为列名。全部无误才会导入，试运行不做任何修改。"
            "UTF-8 or GB18030, the first line names the columns. Nothing is imported unless every "
            "line is good; a dry run changes nothing.</p>"
            "<form method='post' action='/visits/import' enctype='multipart/form-data' class='stack'>"
            f"{csrf_field(sess.csrf)}<label>类型 Kind<select name='kind'>{kinds}</select></label>"
            "<label>文件 File<input type='file' name='file' accept='.csv,text/csv' required></label>"
            "<label class='inline'><input type='checkbox' name='dry_run' value='1' checked>"
            "试运行 Dry run</label><button class='primary' type='submit'>导入 Import</button></form>"
        )
        if report is not None:
            lines = "".join(
                f"<tr><td>{e.line}</td><td>{esc(e.code)}</td><td>{esc(e.message)}</td></tr>"
                for e in report.errors
            )
            state = "已导入 applied" if report.applied else "未修改 nothing changed"
            out += (
                f"<h2 data-applied='{int(report.applied)}'>{esc(report.kind)}: {report.rows} 行 rows,"
                f" {len(report.errors)} 错误 errors · {state}</h2>"
                "<table class='list report'><tr><th>行 Line</th><th>代码 Code</th><th>说明 Message"
                f"</th></tr>{lines or '<tr><td colspan=3>—</td></tr>'}</table>"
            )
        return out

    async def import_form(self, request: web.Request) -> web.Response:
        account, sess, grants = self.c._staff(request)
        require(grants, "directory.edit", ALL_SITES)
        return self.c._page("导入 Import", self._import_form(sess), account, sess)

    async def import_run(self, request: web.Request) -> web.Response:
        account, sess, grants = self.c._staff(request)
        require(grants, "directory.edit", ALL_SITES)
        fields, data = await read_upload(request, sess.csrf)
        report = importer.run(
            self.directory.store,
            fields.get("kind", ""),
            importer.decode(data),
            dry_run=fields.get("dry_run") == "1",
        )
        status = 200 if not report.errors else 400
        return self.c._page("导入 Import", self._import_form(sess, report), account, sess, status)

    def routes(self, guard) -> list[web.RouteDef]:
        return [
            web.get("/visits/sites/{site}/directory", guard(self.view)),
            web.post("/visits/sites/{site}/terminals/{tid}/credential", guard(self.issue)),
            web.post("/visits/sites/{site}/terminals/{tid}/revoke", guard(self.revoke)),
            web.get("/visits/import", guard(self.import_form)),
            web.post("/visits/import", guard(self.import_run)),
        ]


async def read_upload(request: web.Request, csrf: str) -> tuple[dict, bytes]:
    """A multipart CSV upload (bounded by the app's body limit), CSRF checked."""
    try:
        data = await request.post()
    except (ValueError, HttpProcessingError):
        raise VisitError("invalid", "the form could not be read") from None
    upload = data.get("file")
    fields = {k: v for k, v in data.items() if isinstance(v, str) and len(v) < 200}
    if not hmac.compare_digest(fields.get("csrf", ""), csrf):
        raise web.HTTPForbidden(text="csrf: the form expired; reload the page")
    if upload is None or isinstance(upload, str):
        raise VisitError("invalid", "file: choose a CSV file")
    return fields, upload.file.read(importer.MAX_BYTES + 1)
