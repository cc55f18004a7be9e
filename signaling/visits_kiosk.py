"""Terminals in kiosk mode: a visit room's machine authenticates with its own device token.

A terminal is not a person: it has no staff login and no invitation link. It holds the device
token a directory admin issued for it (``pvt_…``, docs/visitation.md) and sends it as a bearer
token; ``POST /kiosk/state`` answers what the terminal should show — its next approved visit and,
once that visit's session is open, a short-lived invitation for the terminal's place in it (the
bureau terminal is the family, the facility terminal the inmate). A revoked, unknown or inactive
token gets ``401 terminal_unauthorized`` and nothing else, so a stolen page learns nothing.

A privileged visit's bureau terminal (the lawyer's side) also gets the lawyer's signed statement
(``POST /kiosk/statement``, R2: no recorder, no observer; signaling/visits_statement.py) during
the visit and for ``STATEMENT_MINUTES`` after it, with a download code for the lawyer's phone
(``GET /kiosk/statement/<code>``, and its QR code ``…/qr.svg``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from zoneinfo import ZoneInfo

from aiohttp import web

from rooms.errors import CommandError
from signaling.guard import refusal
from signaling.http import WEB_DIR
from visits.directory import Directory
from visits.privilege import PrivilegeError, file_bytes
from visits.reservations import Reservations

MAX_BODY = 1024
STATEMENT_MINUTES = 15  # the bureau terminal shows the statement this long after the end
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_STATEMENT_REFUSALS = {
    "not_found": 404,
    "unavailable": 503,
    "privilege_breach": 409,
    "not_privileged": 409,
}


class Kiosk:
    def __init__(self, directory: Directory, res: Reservations, timezone: str, live=None) -> None:
        self.directory, self.res = directory, res
        self.zone = ZoneInfo(timezone)
        self.live = live  # signaling.visits_live.LiveVisits: the terminal's place in a session

    def now(self) -> dt.datetime:
        return dt.datetime.now(self.zone).replace(tzinfo=None, microsecond=0)

    def terminal(self, request: web.Request):
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        return self.directory.terminal_for_token(token)

    def _caller(self, request: web.Request, body: str):
        """The calling terminal, or the answer that refuses the call: a body over ``MAX_BODY``
        (``body`` says what the route takes), a device token that is not valid."""
        if request.content_length and request.content_length > MAX_BODY:
            return None, refusal("too_large", body, 413)
        terminal = self.terminal(request)
        if terminal is None:
            return None, refusal(
                "terminal_unauthorized", "this terminal's device token is not valid", 401
            )
        return terminal, None

    async def page(self, request: web.Request) -> web.StreamResponse:
        resp = web.FileResponse(WEB_DIR / "kiosk.html")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    async def state(self, request: web.Request) -> web.Response:
        terminal, refused = self._caller(request, "the kiosk sends no body")
        if refused is not None:
            return refused
        site = self.directory.site(terminal.site)
        now = self.now()
        b = self.res.next_for_terminal(terminal.id, now)
        answer = {
            "ok": True,
            "now": now.isoformat(timespec="seconds"),
            "terminal": {
                "id": terminal.id,
                "name": terminal.name,
                "kind": terminal.kind,
                "site": site.name if site else terminal.site,
            },
            "next": self._describe(terminal, b) if b else None,
            "live": self.live.for_terminal(terminal, b) if (b and self.live) else None,
        }
        return web.json_response(answer, headers={"Cache-Control": "no-store"})

    def _describe(self, terminal, b) -> dict:
        """What the room may read on its screen: the family sees whom they visit and where; the
        inmate's room sees who comes — the relatives and the help-education workers (name and
        organisation). Neither sees the custody grade or the officers."""
        inmate = self.directory.inmate(b.inmate)
        bureau = self.directory.terminal(b.bureau_terminal)
        facility = self.directory.terminal(b.facility_terminal)
        names = {v.id: v for v in self.directory.visitors(b.inmate)}
        visitors = [names[v].name for v in b.visitors if v in names]
        other = facility if terminal.kind == "visitor_room" else bureau
        other_site = self.directory.site(other.site) if other else None
        return {
            "booking": b.id,
            "kind": b.kind,
            "start": b.start.isoformat(timespec="minutes"),
            "minutes": b.minutes,
            "inmate": inmate.name if inmate else "",
            "visitors": visitors,
            "workers": [
                {"name": name, "org": org} for _, name, org in self.directory.workers(b.workers)
            ],
            "other_site": other_site.name if other_site else "",
        }

    # -- the lawyer's statement (R2) --------------------------------------------------------
    async def statement(self, request: web.Request) -> web.Response:
        """The signed statement of the privileged visit this bureau terminal took part in."""
        terminal, refused = self._caller(request, "the body is one session id")
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.read())
            session = body["session"]
            if not isinstance(session, str) or not SESSION_ID.fullmatch(session):
                raise ValueError(session)
        except (ValueError, KeyError, TypeError):
            return refusal("invalid", 'send {"session": "<the visit\'s session id>"}', 400)
        row = self.live.row(session=session) if self.live else None
        b = self.res.get(row[0]) if row else None
        if b is None:
            return refusal("not_found", "no such visit", 404)
        if terminal.id != b.bureau_terminal:  # the lawyer's side only; never the inmate's room
            return refusal("forbidden", "this terminal did not hold the lawyer's side", 403)
        if row[2] != "privileged":
            return refusal("not_privileged", "only a lawyer visit has this statement", 409)
        try:  # wherever it is served: the statement is made from the ledger
            state = self.live.service.peek(session)
        except CommandError:
            return refusal("not_found", "no such visit", 404)
        statements = self.live.statements
        if state.ended and statements.clock() - state.last_ts > STATEMENT_MINUTES * 60:
            return refusal("expired", "the statement is shown for a while after the end", 410)
        try:
            envelope = await statements.issue(session)
        except PrivilegeError as exc:
            return refusal(exc.code, exc.message, _STATEMENT_REFUSALS.get(exc.code, 409))
        code = statements.code_for(session)
        root = base64.b64decode(envelope["signature"]["chain"][-1])
        answer = {
            "ok": True,
            "statement": envelope,
            "download": f"/kiosk/statement/{code}",
            "root_sha256": hashlib.sha256(root).hexdigest(),  # for `server.py verify --root`
        }
        return web.json_response(answer, headers={"Cache-Control": "no-store"})

    async def statement_file(self, request: web.Request) -> web.StreamResponse:
        """The file itself, for the lawyer's phone: the code (128 random bits) is the key."""
        statements = self.live.statements if self.live else None
        session = statements.session_of(request.match_info["code"]) if statements else None
        if session is None:
            return refusal("not_found", "no such statement, or its code expired", 404)
        try:
            envelope = await statements.issue(session)
        except PrivilegeError as exc:
            return refusal(exc.code, exc.message, _STATEMENT_REFUSALS.get(exc.code, 409))
        return web.Response(
            body=file_bytes(envelope),
            content_type="application/json",
            headers={
                "Cache-Control": "no-store",
                "Content-Disposition": f'attachment; filename="statement-{session}.json"',
            },
        )

    async def statement_qr(self, request: web.Request) -> web.Response:
        """The download address as a QR code (SVG) for the terminal's end screen."""
        code = request.match_info["code"]
        statements = self.live.statements if self.live else None
        if statements is None or statements.session_of(code) is None:
            return refusal("not_found", "no such statement, or its code expired", 404)
        import qrcode.image.svg  # on first use: most servers never draw one

        url = f"{request.scheme}://{request.host}/kiosk/statement/{code}"
        img = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage)
        return web.Response(
            body=img.to_string(),
            content_type="image/svg+xml",
            headers={"Cache-Control": "no-store"},
        )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/kiosk", self.page),
            web.post("/kiosk/state", self.state),
            web.post("/kiosk/statement", self.statement),
            web.get("/kiosk/statement/{code}", self.statement_file),
            web.get("/kiosk/statement/{code}/qr.svg", self.statement_qr),
        ]
