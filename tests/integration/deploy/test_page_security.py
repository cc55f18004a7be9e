"""What a deployment promises about its pages (docs/security.md): the signing and verification
pages carry Subresource Integrity for every script, with digests of the bytes actually served;
the web client's code is revalidated rather than reused stale; no page has inline code the CSP
would have to allow; and the server's output never contains the deployment's secrets."""

from __future__ import annotations

import base64
import hashlib
import re

import aiohttp
import pytest
from aiohttp import web

from rooms.service import ParticipantSpec
from server import SERVICE, SIGNER, Config, create_app
from signaling.sri import IntegrityPage, static_resolver
from tests.support.server_proc import ROOT, ServerProcess

SCRIPT = re.compile(r"<script\b([^>]*)>")


@pytest.fixture
async def app_url(tmp_path):
    config = Config(data_dir=tmp_path / "data", demo=False, log_format="text")
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield app, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    await runner.cleanup()


def join_token(app) -> str:
    state = app[SERVICE].create_session(
        "mediation",
        actor="staff:test",
        title="SRI",
        case_number="S-1",
        participants=[ParticipantSpec(name="Mediator M", role="mediator")],
    )
    person = next(iter(state.participants.values()))
    return app[SIGNER].issue(state.id, person.id, person.role, ttl=600)


async def test_signing_and_verify_pages_pin_every_script_to_the_served_bytes(app_url):
    app, url = app_url
    async with aiohttp.ClientSession() as http:
        for page in (f"/j/{join_token(app)}", "/verify"):
            async with http.get(url + page) as r:
                assert r.status == 200 and r.content_type == "text/html", page
                html = await r.text()
            tags = SCRIPT.findall(html)
            assert len(tags) >= 2, page
            for attrs in tags:
                src = re.search(r'src="([^"]+)"', attrs).group(1)
                integrity = re.search(r'integrity="(sha384-[A-Za-z0-9+/=]+)"', attrs)
                assert integrity, (page, attrs)
                async with http.get(url + src) as r:
                    assert r.status == 200, src
                    body = await r.read()
                    assert r.headers["Cache-Control"] == "no-cache", src
                    etag = r.headers.get("ETag")
                want = "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()
                assert integrity.group(1) == want, src
                assert etag, src  # revalidation is cheap: unchanged code answers 304
                async with http.get(url + src, headers={"If-None-Match": etag}) as r:
                    assert r.status == 304, src


def test_integrity_follows_the_file_and_leaves_what_it_cannot_pin(tmp_path):
    web_dir = tmp_path / "web"
    (web_dir / "static").mkdir(parents=True)
    (web_dir / "static" / "a.js").write_text("console.log(1)\n")
    page = web_dir / "p.html"
    page.write_text(
        '<script src="/static/a.js"></script>'
        "<script src='/static/gone.js'></script>"
        '<script src="/static/../secret.js"></script>'
        '<script src="/elsewhere/b.js"></script>'
    )
    sri = IntegrityPage(page, static_resolver(web_dir, {}))
    first = sri.body().decode()
    assert first.count("integrity=") == 1
    assert "<script src='/static/gone.js'>" in first  # missing: 404 at its own URL
    assert '<script src="/static/../secret.js">' in first
    assert '<script src="/elsewhere/b.js">' in first
    (web_dir / "static" / "a.js").write_text("console.log(22)\n")  # an upgrade in place
    second = sri.body().decode()
    assert second.count("integrity=") == 1 and second != first
    digest = hashlib.sha384(b"console.log(22)\n").digest()
    assert "sha384-" + base64.b64encode(digest).decode() in second


INLINE = {
    "inline script": re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I),
    "event handler attribute": re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I),
    "javascript: URL": re.compile(r"javascript:", re.I),
    "style attribute": re.compile(r"<[a-z][^>]*\sstyle\s*=", re.I),
    "style element": re.compile(r"<style\b", re.I),
}


def test_no_page_needs_unsafe_inline():
    """The CSP allows scripts and styles from this origin only: the pages and every module that
    renders HTML hold none of what that would block."""
    sources = [*ROOT.glob("web/*.html")]
    sources += [p for d in ("signaling", "desk", "visits") for p in (ROOT / d).glob("*.py")]
    sources.append(ROOT / "server.py")
    found = []
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for what, pattern in INLINE.items():
            found += [f"{path.relative_to(ROOT)}: {what}" for _ in pattern.finditer(text)]
    assert len(sources) > 20 and not found, found


async def test_served_pages_have_no_inline_code(app_url):
    app, url = app_url
    pages = ["/", "/login", "/verify", f"/j/{join_token(app)}", "/j/not-a-token"]
    async with aiohttp.ClientSession() as http:
        for page in pages:
            async with http.get(url + page, allow_redirects=False) as r:
                html = await r.text()
                assert "'unsafe-inline'" not in r.headers["Content-Security-Policy"]
            for what, pattern in INLINE.items():
                assert not pattern.search(html), (page, what)


SECRETS = {
    "PARLEY_SECRET": "7f3a" * 16,  # hex, as the server wants it
    "PARLEY_TURN_SECRET": "turn-secret-value-never-printed",
    "PARLEY_METRICS_TOKEN": "metrics-token-never-printed",
    "PARLEY_ESIGN_PASSPHRASE": "esign-passphrase-never-printed",
}


def test_the_server_never_prints_its_secrets(tmp_path):
    """A server started with every secret set, asked for /metrics with the right and a wrong
    token, prints none of them, nor writes them to a log file (the demo's one-time staff
    password and join links are printed by design: that is how the operator gets them)."""
    import urllib.request

    server = ServerProcess(
        tmp_path / "data",
        env={**SECRETS, "PARLEY_TURN_URLS": "turn:127.0.0.1:3478?transport=udp"},
    )
    server.start(timeout=60)
    try:
        token = SECRETS["PARLEY_METRICS_TOKEN"]
        req = urllib.request.Request(
            server.url + "/metrics", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
        req = urllib.request.Request(
            server.url + "/metrics", headers={"Authorization": "Bearer wrong-token"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=10)
        assert refused.value.code == 401
    finally:
        server.stop()
    output = "\n".join(server.lines)
    assert "LISTENING" in output
    files = [p for p in (tmp_path / "data").rglob("*.log") if p.is_file()]
    for name, value in SECRETS.items():
        assert value not in output, name
        for f in files:
            assert value not in f.read_text(errors="replace"), (name, f)
