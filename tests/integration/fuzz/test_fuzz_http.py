"""Fuzz of every HTTP route of the app (``app.router.routes()``), with raw HTTP/1.1 requests.

Requests are written byte for byte on a TCP connection (``Connection: close``), so that the
garbage the client libraries refuse to send gets through: invalid UTF-8 and surrogates encoded
in paths, NULs in filenames, broken multipart, bad JSON, bad tokens and cookies, wrong methods.
Each route's path parameters are filled with real ids (a live session, a participant, a valid
bearer token, a staff session cookie and its CSRF token) or junk.

Oracle (conftest.py): no 5xx, no ERROR record or traceback from the server, the ledger changes
only with a 2xx/3xx answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import secrets
import sys
import time
import urllib.parse

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from server import CONFIG
from signaling import staff

from .conftest import Findings, Ledger, junk, text, unexpected

SEED = 20261130
BATCH = 100
EXAMPLES = int(os.environ.get("PARLEY_FUZZ_HTTP_EXAMPLES", "30"))  # default: 3,000 requests
SLOW_EXAMPLES = 300
MIB = 1024 * 1024


def _pct(value: str) -> str:
    """Percent-encode any string, lone surrogates as the (invalid) UTF-8 bytes they would be."""
    return urllib.parse.quote(value.encode("utf-8", "surrogatepass"), safe="")


class World:
    """The real ids the fuzz mixes into its garbage."""

    def __init__(self, running, *, staff_account: bool = True) -> None:
        state = running.mediation(parties=2)
        other = running.mediation(parties=1)
        self.sid, self.other_sid = state.id, other.id
        self.pid, party_token = running.token(state, "party", 0)
        self.mid, med_token = running.token(state, "mediator", staff="fuzz")
        self.tokens = [party_token, med_token, running.token(other, "party", 0)[1]]
        self.cookie = self.csrf = "none"
        if staff_account:  # an Argon2 hash: made once per server
            accounts = running.app[staff.ACCOUNTS]
            accounts.add("fuzz", "Fuzz Mediator", ["mediator"], "fuzz-password-1234")
            sess = accounts.open_session("fuzz")
            self.cookie, self.csrf = sess.id, sess.csrf
        self.routes = sorted(
            {(r.method, r.resource.canonical) for r in running.app.router.routes()}
        )

    def param(self, rnd: random.Random, name: str) -> str:
        real = {
            "sid": [self.sid, self.other_sid],
            "pid": [self.pid, self.mid],
            "token": self.tokens,
            "doc": ["d-0123456789abcdef"],
            "path": ["pdf.min.mjs", "../../server.py", "%2e%2e/%2e%2e/secret.key", "x/" * 50],
            "name": ["root", "intermediate", "../x"],
        }.get(name, [])
        if real and rnd.random() < 0.5:
            return _pct(rnd.choice(real)) if rnd.random() < 0.2 else rnd.choice(real)
        if rnd.random() < 0.1:
            return rnd.choice(["%00", "%ff%fe", "%ed%a0%80", "..", "%2F", "a" * 5000])
        return _pct(text(rnd)) or "x"


def _headers(rnd: random.Random, world: World) -> list[tuple[str, str]]:
    out = []
    pick = rnd.random()
    if pick < 0.45:
        out.append(("Authorization", "Bearer " + rnd.choice(world.tokens)))
    elif pick < 0.7:
        junk_token = rnd.choice(
            [text(rnd), world.tokens[0][:-3] + "AAA", "a.b", ".", "x" * 9000, ""]
        )
        scheme = rnd.choice(["Bearer ", "bearer ", "Basic ", ""])
        out.append(("Authorization", scheme + junk_token))
    pick = rnd.random()
    if pick < 0.4:
        out.append(("Cookie", f"{staff.COOKIE}={world.cookie}"))
    elif pick < 0.6:
        out.append(("Cookie", f"{staff.COOKIE}={_pct(text(rnd))}; {staff.LOGIN_CSRF_COOKIE}=x"))
    elif pick < 0.7:
        out.append(("Cookie", rnd.choice(["=", ";;;", "a=\x7f", f"{staff.COOKIE}=" + "c" * 5000])))
    if rnd.random() < 0.05:
        out.append(
            ("Accept-Language", text(rnd)[:200].encode("utf-8", "replace").decode("latin-1"))
        )
    return out


def _multipart(rnd: random.Random) -> tuple[str, bytes]:
    boundary = rnd.choice(["b0undary", "x" * 70, "", "a b", '"q"', "\x00"])
    payload = rnd.choice(
        [
            b"%PDF-1.4\n" + secrets.token_bytes(rnd.choice([0, 100, 5000])),
            b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(64),
            b"\xff\xd8\xff\xe0" + secrets.token_bytes(64),
            b"",
            b"<html>",
            secrets.token_bytes(200),
        ]
    )
    filename = rnd.choice(
        [
            "doc.pdf",
            "a\x00b.pdf",
            "\x00",
            "../../etc/passwd",
            "名字.pdf",
            "\ud800.pdf",
            "",
            "x" * 500,
        ]
    )
    field = rnd.choice(["file", "file", "file", "other", "", "fi\x00le"])
    fname = filename.encode("utf-8", "surrogatepass")
    head = (
        b"--" + boundary.encode("utf-8", "surrogatepass") + b"\r\n"
        b'Content-Disposition: form-data; name="'
        + field.encode()
        + b'"; filename="'
        + fname
        + b'"\r\n'
        b"Content-Type: "
        + rnd.choice([b"application/pdf", b"text/plain", b"\x00", b""])
        + b"\r\n\r\n"
    )
    tail = b"\r\n--" + boundary.encode("utf-8", "surrogatepass") + b"--\r\n"
    body = head + payload + tail
    shape = rnd.random()
    if shape < 0.15:
        body = body[: rnd.randint(0, len(body))]  # truncated
    elif shape < 0.25:
        body = head + payload  # no closing boundary
    elif shape < 0.3:
        body = b"--" + boundary.encode("utf-8", "surrogatepass") + b"\r\n\r\n" * 3
    ctype = rnd.choice(
        [
            f"multipart/form-data; boundary={boundary}",
            f'multipart/form-data; boundary="{boundary}"',
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/mixed; boundary=other",
        ]
    )
    return ctype, body


def _body(rnd: random.Random, world: World) -> tuple[str | None, bytes]:
    pick = rnd.random()
    if pick < 0.2:
        return None, b""
    if pick < 0.45:
        return _multipart(rnd)
    if pick < 0.7:  # urlencoded forms: login, logout, console forms
        fields = {}
        for name in rnd.sample(
            [
                "csrf",
                "username",
                "password",
                "title",
                "case_number",
                "kind",
                "name",
                "role",
                "side",
                "participants",
                text(rnd),
            ],
            rnd.randint(0, 6),
        ):
            if name == "csrf" and rnd.random() < 0.6:
                fields[name] = world.csrf
            elif name == "username" and rnd.random() < 0.3:
                fields[name] = "fuzz"
            else:
                fields[name] = text(rnd)
        raw = urllib.parse.urlencode(
            {
                k.encode("utf-8", "surrogatepass"): v.encode("utf-8", "surrogatepass")
                for k, v in fields.items()
            }
        ).encode()
        return rnd.choice(["application/x-www-form-urlencoded", "text/plain"]), raw
    if pick < 0.9:  # JSON text, NaN and all
        raw = json.dumps(junk(rnd, binary=False)).encode("utf-8", "surrogatepass")
        if rnd.random() < 0.2:
            raw = raw[: rnd.randint(0, len(raw))]
        return "application/json", raw
    if pick < 0.995:
        return rnd.choice(["application/octet-stream", "application/pdf", "\x00"]), (
            secrets.token_bytes(rnd.randint(0, 4096))
        )
    return "application/pdf", b"%PDF-" + b"\0" * (10 * MIB + 100)  # over the document limit


# Escapes this fuzz found that are still open. While listed, a finding that matches is counted,
# not failed; each has an exact repro in test_http_escape_repro, xfail(strict=True): when the
# fix lands the repro passes, fails the suite, and the entry must go. (None open now: aiohttp's
# and engine.io's ERROR records for a client's malformed request are one WARNING line each,
# signaling.guard.ClientErrorFilter.)
OPEN_ESCAPES: dict = {}
REPROS = [
    (
        "header char",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: a=\x7f\r\nConnection: close\r\n\r\n",
        None,
    ),
    (
        "line too long",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        None,
    ),
    (
        "engine.io sid",
        b"POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n",
        None,
    ),
    (
        "engine.io version",
        b"GET /socket.io/?EIO=1&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        None,
    ),
    ("NUL filename", None, None),
]


def _known(line: str) -> bool:
    return any(rx.search(line) for rx, _ in OPEN_ESCAPES.values())


LOGIN_ARGON2_SHARE = 0.03  # requests that reach the password check (slow by design): a few


def request(rnd: random.Random, world: World) -> tuple[str, bytes]:
    """(a one-line description, the raw request)."""
    method, canonical = rnd.choice(world.routes)
    if rnd.random() < 0.05:
        method = rnd.choice(["PUT", "DELETE", "PATCH", "TRACE", "GET", "POST", "FOO", "G\x00T"])
    path = re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: world.param(rnd, m.group(1)), canonical)
    if rnd.random() < 0.3:
        path += "?" + "&".join(
            f"{_pct(text(rnd))}={_pct(text(rnd))}" for _ in range(rnd.randint(1, 3))
        )
    if canonical.startswith("/socket.io") and rnd.random() < 0.6:
        path += "?" + rnd.choice(
            [
                "EIO=4&transport=polling",
                "EIO=3&transport=websocket",
                "EIO=4&transport=polling&sid=x",
            ]
        )
    headers = [("Host", "127.0.0.1"), ("Connection", "close")] + _headers(rnd, world)
    ctype, body = (
        _body(rnd, world) if method not in ("GET", "HEAD") or rnd.random() < 0.1 else (None, b"")
    )
    if canonical == "/login" and method == "POST" and rnd.random() > LOGIN_ARGON2_SHARE:
        body = body.replace(world.csrf.encode(), b"stale")  # refused at CSRF, before Argon2
    elif canonical == "/login" and method == "POST":
        headers.append(("Cookie", f"{staff.LOGIN_CSRF_COOKIE}={world.csrf}"))
    if ctype is not None:
        headers.append(("Content-Type", ctype))
    if body or method == "POST":
        length = len(body)
        if rnd.random() < 0.05:
            length = rnd.choice([0, length + 10, 2**40, -1])
        headers.append(("Content-Length", str(length)))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    raw = head.encode("utf-8", "surrogatepass") + body
    desc = f"{method} {path[:200]} headers={[h for h in headers[2:]]!r:.300} body={body[:160]!r}"
    if body or method == "POST":
        if length == len(body) + 10:
            desc = TRUNCATED + desc
    return desc, raw


# A body shorter than its Content-Length: the server rightly waits for the rest, until the body
# deadline cuts it with 408 (signaling/guard.py, tested in test_connection_guard.py); the fuzz does
# not wait that long, so silence within its own 20 s is not a finding for such a request.
TRUNCATED = "[body shorter than its Content-Length] "


async def _read_body(reader: asyncio.StreamReader) -> None:
    """Read one answer to its end by its own framing (a kept-alive connection is not closed by
    the server, so reading to EOF would wait for its idle timeout)."""
    length, chunked = None, False
    while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        elif name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if length is not None:
        await reader.readexactly(length)
    elif chunked:
        await reader.readuntil(b"\r\n0\r\n\r\n")
    else:
        await reader.read()


async def send(url: str, raw: bytes) -> int | None:
    """Write the request, read the answer's status (None if the server just closed)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        try:
            line = await asyncio.wait_for(reader.readline(), 20)
        except ConnectionError:
            return None
        if not line:
            return None
        status = int(line.split()[1])
        try:
            await asyncio.wait_for(_read_body(reader), 20)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        return status
    finally:
        writer.close()


_SETTINGS = dict(
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
_STATE: dict[int, tuple[World, Ledger]] = {}


async def _example(running, server_errors, batch_seed: int) -> None:
    if id(running) not in _STATE:
        _STATE.clear()
        _STATE[id(running)] = (
            World(running),
            Ledger(running.app[CONFIG].data_dir / "ledger.sqlite3"),
        )
    world, ledger = _STATE[id(running)]
    rnd = random.Random(batch_seed)
    findings = Findings()
    ledger.changes()
    for _ in range(BATCH):
        desc, raw = request(rnd, world)
        findings.cases += 1
        started = time.perf_counter()
        try:
            status = await send(running.url, raw)
        except TimeoutError:
            if not desc.startswith(TRUNCATED):
                findings.add(desc, "no answer within 20 s")
            continue
        if TRACE and time.perf_counter() - started > 0.5:
            print(f"{time.perf_counter() - started:.1f}s {status} {desc[:300]}", file=sys.stderr)
        if status is not None and status >= 500:
            findings.add(desc, f"HTTP {status}")
        for record in server_errors.take():
            findings.add(desc, f"server logged {record}")
        bad = unexpected(ledger.changes(), status is not None and status < 400)
        if bad:
            findings.add(desc, f"ledger changed with HTTP {status}: {bad}")
    findings.known = sum(map(_known, findings.lines))
    findings.lines = [line for line in findings.lines if not _known(line)]
    if SURVEY:
        _append(SURVEY, findings.lines)
        return
    findings.check()


SURVEY = os.environ.get("PARLEY_FUZZ_SURVEY")
TRACE = bool(os.environ.get("PARLEY_FUZZ_TRACE"))


def _append(path: str, lines: list[str]) -> None:
    with open(path, "a", encoding="utf-8", errors="backslashreplace") as out:
        out.writelines(line + "\n" for line in lines)


@seed(SEED)
@settings(max_examples=EXAMPLES, **_SETTINGS)
@given(batch_seed=st.integers(0, 2**64))
async def test_fuzz_every_http_route(running, server_errors, batch_seed):
    await _example(running, server_errors, batch_seed)


@pytest.mark.slow
@seed(SEED + 1)
@settings(max_examples=SLOW_EXAMPLES, **_SETTINGS)
@given(batch_seed=st.integers(0, 2**64))
async def test_fuzz_every_http_route_long(running, server_errors, batch_seed):
    await _example(running, server_errors, batch_seed)


def _nul_filename_upload(world: World) -> bytes:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a\x00b.pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\n%PDF-1.4 x\r\n--b--\r\n"
    )
    return (
        f"POST /api/sessions/{world.sid}/documents HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {world.tokens[0]}\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@pytest.mark.parametrize(
    "name,raw",
    [
        pytest.param(
            r[0],
            r[1],
            id=r[0],
            marks=[pytest.mark.xfail(strict=True, reason=OPEN_ESCAPES[r[2]][1])] if r[2] else [],
        )
        for r in REPROS
    ],
)
async def test_http_escape_repro(running, server_errors, name, raw):
    """Each escape the fuzz found, as one exact request through the same oracle."""
    world = World(running, staff_account=False)
    ledger = Ledger(running.app[CONFIG].data_dir / "ledger.sqlite3")
    status = await send(running.url, raw if raw is not None else _nul_filename_upload(world))
    problems = [f"HTTP {status}"] if status is not None and status >= 500 else []
    problems += server_errors.take()
    problems += [str(c) for c in unexpected(ledger.changes(), status is not None and status < 400)]
    ledger.close()
    assert not problems, f"{name}: {problems}"
