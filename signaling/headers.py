"""Security headers on every response, and the client's real scheme and address behind a proxy.

Every page and file gets the same Content-Security-Policy (scripts, styles and connections from
this origin only; the pages have no inline code), no framing, no MIME sniffing and no referrer.
HSTS is sent on HTTPS, except with the self-signed development certificate (a browser that has
seen HSTS refuses the certificate warning a phone on the LAN has to accept).

``X-Forwarded-Proto`` and ``X-Forwarded-For`` are believed only from the configured trusted
proxies; anyone else could claim any address or scheme with them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",  # data: the empty favicon; blob: pdf.js image masks
        "font-src 'self' data:",
        "connect-src 'self'",  # fetch and the socket.io WebSocket, same origin
        "worker-src 'self'",  # the pdf.js worker
        "media-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
HSTS = "max-age=31536000"
CODE_PATHS = ("/static/", "/vendor/")  # the web client's scripts, styles and libraries
FORWARDED_HTTPS = web.RequestKey("forwarded_https", bool)  # on the request as received

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(values: Iterable[str] | None) -> list[Network]:
    """Addresses or networks (``10.0.0.1``, ``10.0.0.0/8``); a bad entry is a config error."""
    nets = []
    for value in values or []:
        try:
            nets.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"bad_config: trusted_proxies: {value!r} is not an IP address or network"
            ) from None
    return nets


def _address(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address((value or "").strip())
    except ValueError:
        return None


def _trusted(address, proxies: list[Network]) -> bool:
    return address is not None and any(address in net for net in proxies)


def forwarded(proxies: list[Network]):
    """Middleware: a request from a trusted proxy takes the scheme and client address it forwards
    (the rightmost address in ``X-Forwarded-For`` that is not itself a trusted proxy)."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        if not _trusted(_address(request.remote), proxies):
            return await handler(request)
        client = request.remote
        hops = ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")
        for hop in reversed([h for h in hops if h.strip()]):
            address = _address(hop)
            if address is None:
                break
            client = str(address)
            if not _trusted(address, proxies):
                break
        changes = {"remote": client}
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            changes["scheme"] = proto
            request[FORWARDED_HTTPS] = proto == "https"
        return await handler(request.clone(**changes))

    return middleware


def connect_sources(origins: Iterable[str]) -> list[str]:
    """CSP sources for other origins a page may connect to: each ``http(s)://host:port`` origin
    and its WebSocket twin (``ws(s)://``), which browsers do not all derive from it."""
    sources = []
    for origin in origins:
        scheme, sep, rest = origin.rstrip("/").partition("://")
        if not sep or scheme not in ("http", "https") or not rest or "/" in rest or " " in rest:
            raise ValueError(f"bad_config: connect_origins: {origin!r} is not an http(s) origin")
        sources += [f"{scheme}://{rest}", f"{'wss' if scheme == 'https' else 'ws'}://{rest}"]
    return sources


def security_headers(*, hsts: bool, connect: Iterable[str] = ()):
    """``on_response_prepare`` handler: it sees every response, errors and files included.
    ``connect``: origins the pages may also open connections to (the other workers)."""
    headers = dict(HEADERS)
    extra = connect_sources(connect)
    if extra:
        headers["Content-Security-Policy"] = CSP.replace(
            "connect-src 'self'", "connect-src 'self' " + " ".join(extra)
        )

    async def on_prepare(request: web.BaseRequest, response: web.StreamResponse) -> None:
        response.headers.update(headers)
        if request.path.startswith(CODE_PATHS) and "Cache-Control" not in response.headers:
            # revalidate (a 304 when unchanged): a copy cached before an upgrade would fail the
            # pages' Subresource Integrity check (signaling/sri.py) instead of being refreshed
            response.headers["Cache-Control"] = "no-cache"
        if hsts and request.get(FORWARDED_HTTPS, request.secure):
            response.headers["Strict-Transport-Security"] = HSTS

    return on_prepare


def direct_loopback(request: web.Request) -> bool:
    """A client on this machine talking to us directly, not through any proxy."""
    address = _address(request.remote)
    forwarded_by = ("X-Forwarded-For", "X-Forwarded-Proto", "Forwarded", "X-Real-IP")
    return (
        address is not None
        and address.is_loopback
        and not any(h in request.headers for h in forwarded_by)
    )
