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

Clustered, a visit may be served by another node than this console's (it took the session over
after a crash): the console reads it from the ledger (``SessionService.peek``) and sends its
commands through the cluster's relay (cluster/relay.py) to that node, where rooms decides them
as it would here; ``session_moving`` / ``unavailable`` when that node cannot be reached. The
grid's thumbnails and link figures come from this node's media engine: a visit served elsewhere
shows neither (its status and time left are the ledger's).

The list is the facility's **grid** (V3): ``live.json`` refreshes every visit's status,
remaining time and both ends' connection quality (good/fair/poor from the media engine's own
figures: round trip, loss reported by the end's receiver, its uplink bitrate, the age of its
last frame, holes, NACKs). An officer holding ``visit.observe`` at the facility also gets a
**thumbnail** of each end of every non-privileged visit: the grid page opens receive-only
connections (``grid/offer``, one per 8 visits: Chromium's offer for 32 slots is over the 64 KiB
the server reads) whose edges are ``rooms.plan.thumbnails`` (keyframes only, about one
per ``GRID_INTERVAL``), so the page decodes a picture every two seconds per end instead of 32
full-rate videos. Full rate (and sound) only on the watch page, one visit at a time. The grid
is not an observer of the sessions (no ledger entry, not "watched" for the review queue).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from aiohttp import web

from media.errors import MediaError
from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.plan import thumbnails
from rooms.state import GONE
from signaling.conductor import media_key
from signaling.guard import refusal
from signaling.pages import esc
from signaling.staff import current
from signaling.visits_pages import ERRORS, csrf_field
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
GRID_INTERVAL = 2.0  # seconds between two thumbnails of one end
GRID_SLOTS = 16  # slots of one grid connection: 8 visits x 2 ends
GRID_PARTS = 2  # connections of one grid page: 16 visits
GRID_IDLE = 30.0  # a grid nobody polled for this long is dropped (the page was closed)
QUALITY = {
    "good": "良好 good",
    "fair": "一般 fair",
    "poor": "较差 poor",
    "offline": "离线 offline",
}
WATCH_SCRIPTS = (
    "<script src='/vendor/socket.io.min.js'></script><script src='/static/call.js'></script>"
    "<script src='/static/follow.js'></script><script src='/static/officer.js'></script>"
)


def _select(name: str, options: dict[str, str]) -> str:
    return (
        f"<select name='{name}'>"
        + "".join(f"<option value='{k}'>{esc(v)}</option>" for k, v in options.items())
        + "</select>"
    )


def rate_link(q: dict | None) -> str:
    """good / fair / poor / offline from the engine's figures (media.MediaEngine.quality).
    Why these bounds: below 3 % loss and 250 ms round trip a call is not impaired; from 10 % loss,
    500 ms, or no frame for 1.5 s (a camera sends 15 a second) it visibly is."""
    if not q or q.get("state") != "connected":
        return "offline"
    ages = [x["age"] for x in (q.get("audio"), q.get("video")) if x and x.get("age") is not None]
    age = min(ages) if ages else None
    loss, rtt = q.get("loss") or 0.0, q.get("rtt") or 0.0
    if age is None or age > 1.5 or loss >= 0.10 or rtt >= 0.5:
        return "poor"
    if age > 0.5 or loss >= 0.03 or rtt >= 0.25:
        return "fair"
    return "good"


def link_figures(q: dict | None) -> dict:
    """The figures behind the rating, plain numbers for the hover text."""
    if not q:
        return {}
    video, audio = q.get("video") or {}, q.get("audio") or {}
    ages = [x["age"] for x in (audio, video) if x.get("age") is not None]
    return {
        "rtt_ms": None if q.get("rtt") is None else round(q["rtt"] * 1000),
        "loss_pct": None if q.get("loss") is None else round(q["loss"] * 100, 1),
        "kbps": round(sum((x.get("bitrate") or 0) for x in (audio, video)) / 1000),
        "last_media_s": round(min(ages), 1) if ages else None,
        "nacks": video.get("nacks", 0),
        "holes": video.get("holes", 0),
    }


@dataclass
class Grid:
    """One officer's grid page at one site: its connections (parts) and the visits it may see;
    part i shows the visits i*8 .. i*8+7 in the order of their session ids."""

    username: str
    site: str
    polled: float
    parts: set[int] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)
    edges: dict[int, frozenset] = field(default_factory=dict)

    def key(self, part: int) -> str:
        return f"grid:{self.site}:{self.username}:{part}"


def _mmss(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = max(0, int(seconds + 0.999))
    return f"{s // 60:02d}:{s % 60:02d}"


class OfficerConsole:
    def __init__(self, console, service, signer) -> None:
        self.c = console
        self.service, self.signer = service, signer
        self.engine = self.conductor = None  # attach_media: without them, no grid pictures
        # clustered, commands go through the cluster's relay (cluster/relay.py) to whichever
        # node serves the visit; None: every session is here (server.py wires it)
        self.relay = None
        self._grids: dict[str, Grid] = {}
        self._closing: set[asyncio.Task] = set()
        # the session clock's time (time.time; the test clock when PARLEY_TEST_CLOCK=1 moves
        # it: signaling/visits_clock.py), so the time left shown here is the kiosks'
        self.clock = time.time

    def attach_media(self, engine, conductor) -> None:
        """The media engine (grid connection, link figures) and the conductor (grid edges)."""
        self.engine, self.conductor = engine, conductor
        self.service.subscribe(self._on_events)

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
        try:  # served here or by another node of the cluster (read from the ledger)
            state = self.service.peek(row[1])
        except CommandError:
            raise VisitError("not_found", "no such live visit") from None
        return row, b, state, bureau, facility

    async def _run(self, state, actor: str, **raw):
        """The command on the visit's session wherever it is served (the relay sends it to
        its node); returns the session's state after it. A refusal: VisitError, same code."""
        try:
            if self.relay is None:
                self.service.execute(state.id, actor, decode_command(raw))
            else:
                await self.relay.execute(state.id, actor, raw)
            return self.service.peek(state.id)
        except CommandError as exc:
            raise VisitError(exc.code, exc.message) from None

    # -- the list ---------------------------------------------------------------------------
    async def live_list(self, request: web.Request) -> web.Response:
        account, sess, grants = self.c._staff(request)
        site = self.c._site(grants, "visit.live", request.match_info["site"])
        now = self.clock()
        rows = []
        for row, b, state, bureau, facility in self._open_visits(site.id):
            rows.append(self._row(row, b, state, grants, bureau, facility, sess.csrf, now))
        pictures = self.engine is not None and allowed(grants, "visit.observe", site.id)
        body = (
            f"<h1>实时会见 Live visits · {esc(site.name)}</h1>"
            f"<table class='list' id='live-list' data-site='{esc(site.id)}'"
            f" data-pictures='{int(pictures)}' data-csrf='{esc(sess.csrf)}'>"
            "<tr><th>编号 No.</th><th>类型 Kind</th>"
            "<th>服刑人员 Inmate</th><th>终端 Terminals</th><th>画面 Pictures</th>"
            "<th>状态 Status</th><th>剩余 Left</th><th></th></tr>"
            + ("".join(rows) or "<tr><td colspan=8>当前没有会见 No visit is open now</td></tr>")
            + "</table><span id='grid-status' role='status'></span>"
            "<script src='/static/call.js'></script><script src='/static/officer.js'></script>"
        )
        return self.c._page("实时会见 Live visits", body, account, sess)

    def _open_visits(self, site_id: str):
        """The open visits one end of which is at ``site_id``, with their booking and state."""
        for row in self.c.live.open_rows():
            b = self.c.res.get(row[0])
            bureau, facility = self.c._sites_of(b)
            if site_id not in (bureau, facility):
                continue
            try:  # wherever it is served: a mirror of the ledger when not here
                state = self.service.peek(row[1])
            except CommandError:
                continue
            yield row, b, state, bureau, facility

    def _row(self, row, b, state, grants, bureau, facility, csrf, now) -> str:
        inmate = self.c.directory.inmate(b.inmate)
        family, held = state.participants[row[3]], state.participants[row[4]]
        privileged = state.policy.privileged
        status = self._status(state)
        remaining = state.remaining(now)
        ends = "".join(
            f"<li data-end='{side}'>{esc(p.name)}: "
            f"<span class='online'>{'在线 online' if p.connected else '离线 offline'}</span> "
            f"<span class='quality'></span></li>"
            for side, p in (("family", family), ("inmate", held))
        )
        thumbs = (
            ""
            if privileged
            else "".join(
                f"<video class='thumb' muted playsinline autoplay data-end='{side}'"
                f" data-media='{esc(media_key(state.id, p.id))}'></video>"
                for side, p in (("family", family), ("inmate", held))
            )
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
            f"<td class='thumbs'>{thumbs}</td>"
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
        state = await self._run(state, f"staff:{account.username}", type="warn", reason=reason)
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
        state = await self._run(
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
        state = await self._run(
            state, f"staff:{account.username}", type="end_session", reason=f"terminated:{reason}"
        )
        await self.c.live.tick()  # the booking completes now, not at the next beat
        raise web.HTTPSeeOther(self._back(request, grants, bureau, facility, state))

    @staticmethod
    def _back(request, grants, bureau, facility, state) -> str:
        if request.query.get("from") == "watch" and not state.ended:
            return f"/visits/live/{state.id}/watch"
        site = facility if allowed(grants, "visit.live", facility) else bureau
        return f"/visits/sites/{site}/live"

    # -- the grid: figures and thumbnails ----------------------------------------------------
    @staticmethod
    def _json_refusal(exc: VisitError) -> web.Response:
        status = 401 if exc.code == "unauthenticated" else ERRORS.get(exc.code, (400,))[0]
        return refusal(exc.code, exc.message, status)

    def _json_staff(self, request, action: str):
        """(account, session, site) for a JSON route; VisitError (or unauthenticated)."""
        if current(request) is None:
            raise VisitError("unauthenticated", "log in first")
        account, sess, grants = self.c._staff(request)
        return account, sess, grants, self.c._site(grants, action, request.match_info["site"])

    async def live_json(self, request: web.Request) -> web.Response:
        """Every open visit of the site: status, time left, both ends' link (rated, with the
        figures); and which slot of this officer's grid connection carries which end."""
        try:
            account, sess, grants, site = self._json_staff(request, "visit.live")
        except VisitError as exc:
            return self._json_refusal(exc)
        now = self.clock()
        visits, observable = [], set()
        for row, b, state, _bureau, facility in self._open_visits(site.id):
            privileged = state.policy.privileged
            if (
                not privileged
                and not state.ended
                and facility == site.id
                and allowed(grants, "visit.observe", facility)
            ):
                observable.add(state.id)
            remaining = state.remaining(now)
            status = self._status(state)
            visits.append(
                {
                    "session": state.id,
                    "booking": b.id,
                    "privileged": privileged,
                    "status": {"code": status[0], "label": status[1]},
                    "remaining": None if remaining is None else round(remaining, 1),
                    "running": state.clock_since is not None,
                    "ends": [
                        self._end(state, side, state.participants[pid])
                        for side, pid in (("family", row[3]), ("inmate", row[4]))
                    ],
                }
            )
        grid = self._grids.get(self._grid_key(account.username, site.id))
        slots = []
        if grid is not None:
            grid.polled, grid.sessions = time.monotonic(), observable
            self._refresh(grid)
            slots = [
                {"part": part, "slot": x["slot"], "media": x["participant"]}
                for part in sorted(grid.parts)
                for x in self.engine.slot_map(grid.key(part))
            ]
        self._prune()
        return web.json_response({"ok": True, "visits": visits, "grid": slots})

    def _end(self, state, side: str, person) -> dict:
        q = self.engine.quality(media_key(state.id, person.id)) if self.engine else None
        rating = rate_link(q) if person.connected else "offline"
        return {
            "side": side,
            "name": person.name,
            "online": person.connected,
            "media": media_key(state.id, person.id),
            "quality": {"rating": rating, "label": QUALITY[rating], **link_figures(q)},
        }

    @staticmethod
    def _grid_key(username: str, site: str) -> str:
        return f"{site}:{username}"

    async def grid_offer(self, request: web.Request) -> web.Response:
        """One receive-only connection of the grid page: ``{"csrf", "part", "sdp"}`` →
        ``{"sdp"}``. Per officer, site and part (a newer one replaces it); pictures come with the
        next ``live.json``."""
        try:
            account, sess, grants, site = self._json_staff(request, "visit.observe")
        except VisitError as exc:
            return self._json_refusal(exc)
        if self.engine is None:
            return refusal("unavailable", "no media engine on this server", 503)
        if request.content_length is None or request.content_length > 96 * 1024:
            return refusal("invalid", "a JSON body of at most 96 KiB", 400)
        try:
            body = json.loads(await request.text())
        except (ValueError, UnicodeDecodeError):
            return refusal("invalid", "the body is not JSON", 400)
        if not isinstance(body, dict) or not isinstance(body.get("sdp"), str):
            return refusal("invalid", "sdp: the offer as a string", 400)
        part = body.get("part", 0)
        if type(part) is not int or not 0 <= part < GRID_PARTS:
            return refusal("invalid", f"part: an integer from 0 to {GRID_PARTS - 1}", 400)
        csrf = body.get("csrf")
        if not isinstance(csrf, str) or csrf != sess.csrf:
            return refusal("csrf", "the page expired; reload it", 403)
        name = self._grid_key(account.username, site.id)
        grid = self._grids.get(name) or Grid(account.username, site.id, time.monotonic())
        try:
            answer = await self.engine.accept_offer(
                grid.key(part), body["sdp"], max_slots=GRID_SLOTS
            )
        except MediaError as exc:
            return refusal(exc.code, exc.message, 400)
        grid = self._grids.setdefault(name, grid)
        grid.parts.add(part)
        return web.json_response({"ok": True, "sdp": answer})

    def _refresh(self, grid: Grid) -> None:
        """Recompute the grid's edges from its visits' states; hand them over when changed."""
        per_part = GRID_SLOTS // 2
        ordered = sorted(grid.sessions)
        for part in grid.parts:
            edges = set()
            for sid in ordered[part * per_part : (part + 1) * per_part]:
                try:
                    state = self.service.state(sid)
                except CommandError:
                    continue
                for e in thumbnails(state, grid.key(part), GRID_INTERVAL):
                    edges.add(e._replace(publisher=media_key(sid, e.publisher)))
            edges = frozenset(edges)
            if edges != grid.edges.get(part, frozenset()):
                grid.edges[part] = edges
                self.conductor.set_extra_edges(grid.key(part), edges)

    def _on_events(self, state, events) -> None:
        """A visit changed (someone connected, left, was held): its thumbnails follow at once."""
        for grid in list(self._grids.values()):
            if state.id in grid.sessions:
                self._refresh(grid)

    def _prune(self) -> None:
        """Grids nobody polled for GRID_IDLE (the page was closed): edges and connection go."""
        now = time.monotonic()
        for name, grid in list(self._grids.items()):
            if now - grid.polled <= GRID_IDLE:
                continue
            del self._grids[name]
            for part in grid.parts:
                self.conductor.set_extra_edges(grid.key(part), ())
                task = asyncio.get_running_loop().create_task(
                    self.engine.close_peer(grid.key(part), "grid closed")
                )
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

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
            state = await self._run(
                state, f"staff:{account.username}", type="add_observer", name=name, role=role
            )
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
            # enabled by its script (web/static/officer.js): a press before it ran did nothing
            "<button id='watch-start' type='button' class='primary big' disabled>"
            "开始监看 Start watching"
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
            web.get("/visits/sites/{site}/live.json", self.live_json),
            web.post("/visits/sites/{site}/grid/offer", self.grid_offer),
            web.get("/visits/live/{session}/watch", guard(self.watch)),
            web.post("/visits/live/{session}/warn", guard(self.warn)),
            web.post("/visits/live/{session}/end", guard(self.end)),
            web.post("/visits/live/{session}/mute", guard(self.mute)),
        ]
