"""HTTP routes: the join page, static web client, health, readiness and metrics.

The invitation link is ``/j/<token>``: the server checks the token before serving the page, so a
person with an expired or tampered link sees a clear message instead of a broken call.
``/metrics`` (case counts, load) needs ``Authorization: Bearer <metrics token>`` when a token is
configured, and otherwise answers direct loopback clients only (docs/security.md).
"""

from __future__ import annotations

import hmac
import html
import re
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from signaling.headers import direct_loopback
from signaling.sri import IntegrityPage, static_resolver
from signaling.tokens import TokenError

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
SOCKETIO_CLIENT = WEB_DIR / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
PDFJS_DIR = WEB_DIR / "node_modules" / "pdfjs-dist"
# The pdf.js files the agreement page loads: the library, its worker, and the character maps
# and standard fonts it fetches for PDFs that need them. Nothing else of the package is served.
PDFJS_FILES = re.compile(
    r"^(build/pdf(\.worker)?\.min\.mjs|cmaps/[A-Za-z0-9_.-]+\.bcmap|"
    r"standard_fonts/[A-Za-z0-9_.-]+\.(pfb|ttf))$"
)

ERROR_TEXT = {
    "token_expired": ("此邀请链接已过期。", "This invitation link has expired."),
    "token_invalid": ("此邀请链接无效。", "This invitation link is not valid."),
    "token_missing": ("缺少邀请链接。", "The invitation link is missing."),
}


def _error_page(code: str, status: int) -> web.Response:
    zh, en = ERROR_TEXT.get(code, ("无法加入。", "You cannot join with this link."))
    body = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        "<link rel='icon' href='data:,'><link rel='stylesheet' href='/static/style.css'>"
        f"<title>Parley</title></head><body><main class='notice' data-error='{html.escape(code)}'>"
        f"<h1>{html.escape(zh)}</h1><p>{html.escape(en)}</p>"
        "<p>请联系调解员获取新链接。<br>Please ask the mediator for a new link.</p>"
        "</main></body></html>"
    )
    return web.Response(text=body, status=status, content_type="text/html")


def metrics_allowed(request: web.Request, token: str | None) -> None:
    """Raise 401 (token configured, wrong or missing) or 403 (no token, not direct loopback)."""
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise web.HTTPUnauthorized(
                text="metrics_unauthorized: send Authorization: Bearer <metrics token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
    elif not direct_loopback(request):
        raise web.HTTPForbidden(
            text="metrics_forbidden: loopback only; set PARLEY_METRICS_TOKEN to scrape remotely"
        )


def routes(signer, ready, metrics_token: str | None = None) -> web.RouteTableDef:
    """``ready`` is a callable returning (bool, dict of checks) for /readyz."""
    r = web.RouteTableDef()
    scripts = static_resolver(WEB_DIR, {"/vendor/socket.io.min.js": SOCKETIO_CLIENT})
    join_html = IntegrityPage(WEB_DIR / "join.html", scripts)
    verify_html = IntegrityPage(WEB_DIR / "verify.html", scripts)

    @r.get("/")
    async def landing(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_DIR / "landing.html")

    @r.get("/j/{token}")
    async def join_page(request: web.Request) -> web.StreamResponse:
        try:
            signer.verify(request.match_info["token"])
        except TokenError as exc:
            return _error_page(exc.code, 410 if exc.code == "token_expired" else 403)
        resp = web.Response(body=join_html.body(), content_type="text/html", charset="utf-8")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Referrer-Policy"] = "no-referrer"  # the token is in the path
        return resp

    @r.get("/verify")
    async def verify_page(request: web.Request) -> web.StreamResponse:
        """Checks a signed agreement in the browser, against a root fingerprint; no upload."""
        return web.Response(body=verify_html.body(), content_type="text/html", charset="utf-8")

    @r.get("/vendor/socket.io.min.js")
    async def socketio_client(request: web.Request) -> web.StreamResponse:
        if not SOCKETIO_CLIENT.exists():
            raise web.HTTPServiceUnavailable(text="web client not installed: run scripts/setup.sh")
        return web.FileResponse(SOCKETIO_CLIENT)

    @r.get("/vendor/pdfjs/{path:.+}")
    async def pdfjs_file(request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        if not PDFJS_FILES.match(path) or ".." in path:
            raise web.HTTPNotFound(text="no such pdf.js file")
        if not (PDFJS_DIR / "build").is_dir():
            raise web.HTTPServiceUnavailable(text="pdf.js not installed: run scripts/setup.sh")
        file = PDFJS_DIR / path
        if not file.is_file():
            raise web.HTTPNotFound(text="no such pdf.js file")
        resp = web.FileResponse(file)
        if path.endswith(".mjs"):  # module scripts need a JavaScript MIME type
            resp.content_type = "text/javascript"
        return resp

    @r.get("/healthz")
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    @r.get("/readyz")
    async def readyz(request: web.Request) -> web.Response:
        ok, checks = ready()
        return web.json_response(
            {"status": "ready" if ok else "not_ready", "checks": checks}, status=200 if ok else 503
        )

    @r.get("/metrics")
    async def metrics(request: web.Request) -> web.Response:
        metrics_allowed(request, metrics_token)
        registry = request.app[METRICS_REGISTRY]
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    r.static("/static", WEB_DIR / "static")
    return r


METRICS_REGISTRY = web.AppKey("metrics_registry", object)
