"""Tiny server-rendered HTML for staff pages (login, console): escaped, bilingual, printable."""

from __future__ import annotations

import html

from aiohttp import web


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(
    title: str, body: str, *, status: int = 200, user: str | None = None, csrf: str = ""
) -> web.Response:
    nav = ""
    if user:
        nav = (
            f"<form method='post' action='/logout' class='inline'><span>{esc(user)}</span>"
            f"<input type='hidden' name='csrf' value='{esc(csrf)}'>"
            "<button class='small' type='submit'>退出 Log out</button></form>"
        )
    text = (
        "<!doctype html><html lang='zh'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        "<link rel='icon' href='data:,'><link rel='stylesheet' href='/static/style.css'>"
        "<link rel='stylesheet' href='/static/console.css'>"
        f"<title>{esc(title)} · Parley</title></head><body class='staff'>"
        f"<header class='bar'><a class='brand' href='/console'>Parley</a>"
        f"<span class='title'>{esc(title)}</span>{nav}</header>"
        f"<main class='console'>{body}</main></body></html>"
    )
    resp = web.Response(text=text, status=status, content_type="text/html")
    resp.headers["Cache-Control"] = "no-store"
    return resp  # security headers for every response: signaling/headers.py
