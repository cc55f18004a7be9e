"""Staff login, logout and the guard for staff-only routes.

Cookies: ``parley_staff`` holds a random server-side session id (HttpOnly, SameSite=Strict,
Secure on HTTPS). Every state-changing form carries the session's CSRF token; the login form
uses a double-submit cookie because there is no session yet.

Checking a password costs Argon2's ~0.1-1 s of CPU and memory: it runs on a small thread pool,
never on the event loop that forwards media (argon2-cffi releases the GIL while hashing, so
threads suffice), and the pool's size bounds the CPU and memory that login floods can take.
On Linux its threads also run at a lower priority (nice 10, inherited by Argon2's lane threads),
so the loop, when it wakes, gets a core first. The session's SQLite write goes to the same pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import secrets
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from rooms.accounts import AccountError, Accounts, StaffSession
from signaling.pages import esc, page

COOKIE = "parley_staff"
LOGIN_CSRF_COOKIE = "parley_login_csrf"
ACCOUNTS = web.AppKey("accounts", Accounts)
MAX_FORM_FIELD = 2000
LOGIN_THREADS = 2  # Argon2 checks at once (64 MiB each); more logins queue
LOGIN_NICE = 10  # measured: the loop's worst lag under 5 logins halves from nice 0 to 10


def _background_priority() -> None:
    """Linux sets nice per thread: lower this pool thread's priority, not the server's."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOGIN_NICE)


_LOGIN_POOL = ThreadPoolExecutor(
    max_workers=LOGIN_THREADS, thread_name_prefix="login", initializer=_background_priority
)
ANSWERS = {
    "throttled": (429, "尝试次数过多，请稍后再试。Too many failed attempts; try again later."),
    "bad_credentials": (401, "用户名或密码错误。Wrong username or password."),
}


def _cookie_args(request: web.Request) -> dict:
    return {"httponly": True, "samesite": "Strict", "secure": request.secure, "path": "/"}


def current(request: web.Request) -> StaffSession | None:
    return request.app[ACCOUNTS].session(request.cookies.get(COOKIE))


def require_staff(request: web.Request, role: str | None = None):
    """The logged-in account and its session, or a redirect to /login (403 on a wrong role)."""
    sess = current(request)
    if sess is None:
        raise web.HTTPSeeOther("/login")
    account = request.app[ACCOUNTS].get(sess.username)
    if account is None:
        raise web.HTTPSeeOther("/login")
    if role and role not in account.roles and "admin" not in account.roles:
        raise web.HTTPForbidden(text="forbidden: this page needs the role " + role)
    return account, sess


async def form(request: web.Request, sess: StaffSession | None = None) -> dict[str, str]:
    """Read a urlencoded form, bounded, and check CSRF against the staff session."""
    if request.content_length and request.content_length > 64 * 1024:
        raise web.HTTPRequestEntityTooLarge(max_size=64 * 1024, actual_size=request.content_length)
    try:
        data = await request.post()
    except (ValueError, HttpProcessingError):  # malformed multipart, bad encoding
        raise web.HTTPBadRequest(text="invalid: the form could not be read") from None
    fields = {k: v for k, v in data.items() if isinstance(v, str)}
    if any(len(v) > MAX_FORM_FIELD for v in fields.values()):
        raise web.HTTPBadRequest(text="invalid: a field is too long")
    # bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500)
    if sess is not None and not hmac.compare_digest(
        fields.get("csrf", "").encode(), sess.csrf.encode()
    ):
        raise web.HTTPForbidden(text="csrf: the form expired; reload the page")
    return fields


def _login_page(csrf: str, error: str = "", status: int = 200) -> web.Response:
    err = f"<p class='error' role='alert'>{esc(error)}</p>" if error else ""
    body = (
        "<h1>工作人员登录 Staff login</h1>"
        + err
        + "<form method='post' action='/login' class='stack'>"
        f"<input type='hidden' name='csrf' value='{esc(csrf)}'>"
        "<label>用户名 Username<input name='username' autocomplete='username' required></label>"
        "<label>密码 Password<input name='password' type='password' "
        "autocomplete='current-password' required></label>"
        "<button class='big primary' type='submit'>登录 Log in</button></form>"
    )
    return page("登录 Login", body, status=status)


def _login(accounts: Accounts, username: str, password: str, address: str) -> StaffSession:
    """Blocking (Argon2, SQLite): runs on the login pool."""
    account = accounts.authenticate(username, password, address)
    return accounts.open_session(account.username)


def routes() -> web.RouteTableDef:
    r = web.RouteTableDef()

    @r.get("/login")
    async def login_form(request: web.Request) -> web.Response:
        token = secrets.token_urlsafe(24)
        resp = _login_page(token)
        resp.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, **_cookie_args(request))
        return resp

    @r.post("/login")
    async def login(request: web.Request) -> web.Response:
        fields = await form(request)
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not expected or not hmac.compare_digest(
            fields.get("csrf", "").encode(), expected.encode()
        ):
            raise web.HTTPForbidden(text="csrf: the form expired; reload the page")
        try:
            sess = await asyncio.get_running_loop().run_in_executor(
                _LOGIN_POOL,
                _login,
                request.app[ACCOUNTS],
                fields.get("username", ""),
                fields.get("password", ""),
                request.remote or "",
            )
        except AccountError as exc:
            status, text = ANSWERS.get(exc.code, ANSWERS["bad_credentials"])
            return _login_page(expected, text, status=status)
        resp = web.HTTPSeeOther("/console")
        resp.set_cookie(COOKIE, sess.id, max_age=12 * 3600, **_cookie_args(request))
        resp.del_cookie(LOGIN_CSRF_COOKIE, path="/")
        raise resp

    @r.post("/logout")
    async def logout(request: web.Request) -> web.Response:
        sess = current(request)
        if sess is not None:
            await form(request, sess)
            request.app[ACCOUNTS].close_session(sess.id)
        resp = web.HTTPSeeOther("/login")
        resp.del_cookie(COOKIE, path="/")
        raise resp

    return r
