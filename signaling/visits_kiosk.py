"""Terminals in kiosk mode: a visit room's machine authenticates with its own device token.

A terminal is not a person: it has no staff login and no invitation link. It holds the device
token a directory admin issued for it (``pvt_…``, docs/visitation.md) and sends it as a bearer
token; ``POST /kiosk/state`` answers what the terminal should show — its next approved visit and,
once that visit's session is open, a short-lived invitation for the terminal's place in it (the
bureau terminal is the family, the facility terminal the inmate). A revoked, unknown or inactive
token gets ``401 terminal_unauthorized`` and nothing else, so a stolen page learns nothing.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from aiohttp import web

from signaling.guard import refusal
from signaling.http import WEB_DIR
from visits.directory import Directory
from visits.reservations import Reservations

MAX_BODY = 1024


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

    async def page(self, request: web.Request) -> web.StreamResponse:
        resp = web.FileResponse(WEB_DIR / "kiosk.html")
        resp.headers["Cache-Control"] = "no-store"
        return resp

    async def state(self, request: web.Request) -> web.Response:
        if request.content_length and request.content_length > MAX_BODY:
            return refusal("too_large", "the kiosk sends no body", 413)
        terminal = self.terminal(request)
        if terminal is None:
            return refusal(
                "terminal_unauthorized", "this terminal's device token is not valid", 401
            )
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
        inmate's room sees who comes. Neither sees the custody grade or the officers."""
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
            "other_site": other_site.name if other_site else "",
        }

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/kiosk", self.page), web.post("/kiosk/state", self.state)]
