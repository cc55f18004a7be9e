"""The citizen's side of the desk: ``/consult`` (the points), ``/consult/<point>`` (the page a
QR poster opens) and its JSON API. No login: a verified phone number queues, and the ticket's
secret (in the page's address) is the citizen's only credential afterwards."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from signaling.desk import ConsultDesk
from signaling.desk_http import (
    CallbackRequest,
    CodeRequest,
    JoinRequest,
    RatingRequest,
    answers,
    body,
    client_address,
)
from signaling.pages import esc

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def _page(request: web.Request) -> web.StreamResponse:
    resp = web.FileResponse(WEB_DIR / "consult.html")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"  # a ticket's address carries its secret
    return resp


def routes(desk: ConsultDesk) -> list[web.RouteDef]:
    async def points(request: web.Request) -> web.Response:
        items = "".join(
            f"<li><a class='button big' href='/consult/{esc(p.id)}'>{esc(p.name)}</a></li>"
            for p in desk.store.points()
        )
        html = (
            "<!doctype html><html lang='zh'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            "<link rel='icon' href='data:,'><link rel='stylesheet' href='/static/style.css'>"
            "<link rel='stylesheet' href='/static/desk.css'>"
            "<title>法律咨询 Legal consultation · Parley</title></head><body>"
            "<header class='bar'><span class='brand'>Parley</span>"
            "<span class='title'>法律咨询 Legal consultation</span></header><main class='consult'>"
            "<h1>选择服务点 Choose your service point</h1>"
            f"<ul class='points'>{items or '<li>—</li>'}</ul></main></body></html>"
        )
        return web.Response(text=html, content_type="text/html")

    async def point_page(request: web.Request) -> web.StreamResponse:
        if desk.store.point(request.match_info["point"]) is None:
            raise web.HTTPNotFound(text="not_found: no such service point")
        return _page(request)

    async def ticket_page(request: web.Request) -> web.StreamResponse:
        return _page(request)  # the script asks the API; an unknown secret gets not_found there

    @answers
    async def info(request: web.Request) -> web.Response:
        return web.json_response(
            {"ok": True, "point": desk.point_info(request.match_info["point"])}
        )

    @answers
    async def code(request: web.Request) -> web.Response:
        req = await body(request, CodeRequest)
        await desk.send_code(request.match_info["point"], req.phone, client_address(request))
        return web.json_response({"ok": True})

    @answers
    async def join(request: web.Request) -> web.Response:
        req = await body(request, JoinRequest)
        secret = desk.join(request.match_info["point"], req, client_address(request))
        return web.json_response({"ok": True, "ticket": secret})

    @answers
    async def callback(request: web.Request) -> web.Response:
        req = await body(request, CallbackRequest)
        secret = desk.callback(request.match_info["point"], req, client_address(request))
        return web.json_response({"ok": True, "ticket": secret})

    @answers
    async def status(request: web.Request) -> web.Response:
        out = desk.status(request.match_info["secret"])
        return web.json_response({"ok": True, "ticket": out}, headers={"Cache-Control": "no-store"})

    @answers
    async def leave(request: web.Request) -> web.Response:
        desk.leave(request.match_info["secret"])
        return web.json_response({"ok": True})

    @answers
    async def rate(request: web.Request) -> web.Response:
        req = await body(request, RatingRequest)
        desk.rate(request.match_info["secret"], req.stars, req.comment)
        return web.json_response({"ok": True})

    return [
        web.get("/consult", points),
        web.get("/consult/t/{secret}", ticket_page),
        web.get("/consult/{point}", point_page),
        web.get("/consult/api/points/{point}", info),
        web.post("/consult/api/points/{point}/code", code),
        web.post("/consult/api/points/{point}/join", join),
        web.post("/consult/api/points/{point}/callback", callback),
        web.get("/consult/api/tickets/{secret}", status),
        web.post("/consult/api/tickets/{secret}/leave", leave),
        web.post("/consult/api/tickets/{secret}/rating", rate),
    ]
