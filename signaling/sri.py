"""Subresource Integrity for the pages where agreements are signed and verified.

The phone page (web/join.html: agreement.js signs with a one-time key) and the verification
page (web/verify.html) are served with ``integrity="sha384-…"`` on each of their scripts, the
digest of the very file this server serves. A browser then runs a script only if it has exactly
those bytes: a cache, CDN or TLS-inspecting middlebox that alters or serves an old copy of
agreement.js cannot make the page sign something else, and a version mix after an upgrade fails
closed instead of half-working. The digests are recomputed when a file changes (by mtime and
size), so an upgrade in place needs no restart to stay consistent.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

# <script src="/static/x.js"></script> as the pages write them (either quote)
SCRIPT = re.compile(r"""<script src=(["'])(?P<src>/[^"'?#]+)\1>""")


def digest(path: Path) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()


class IntegrityPage:
    """One HTML page with the SRI digest of each local script it loads. ``resolve`` maps a
    script's URL path to the file served there (None: not a local file, left as it is)."""

    def __init__(self, page: Path, resolve: Callable[[str], Path | None]) -> None:
        self.page = page
        self.resolve = resolve
        self._key: tuple | None = None
        self._body = b""
        self._page_stamp: tuple[int, int] | None = None
        self._html = ""
        self._scripts: list[Path] = []

    def _files(self, html: str) -> list[Path]:
        return [p for m in SCRIPT.finditer(html) if (p := self.resolve(m["src"])) is not None]

    def body(self) -> bytes:
        """The page with its digests: the page is read again only when it changed, its scripts
        are hashed again only when one of them changed (a stat of each per request)."""
        stamp = _stamp(self.page)
        if stamp != self._page_stamp:
            self._html = self.page.read_text(encoding="utf-8")
            self._scripts = self._files(self._html)
            self._page_stamp = stamp
        key = (stamp, *(_stamp(f) for f in self._scripts))
        if key != self._key:
            self._body = self._render(self._html).encode("utf-8")
            self._key = key
        return self._body

    def _render(self, html: str) -> str:
        def tag(m: re.Match) -> str:
            path = self.resolve(m["src"])
            if path is None or not path.is_file():
                return m[0]  # a missing file answers 503/404 at its own URL
            q = m[1]
            return f"<script src={q}{m['src']}{q} integrity={q}{digest(path)}{q}>"

        return SCRIPT.sub(tag, html)


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return (0, -1)
    return (st.st_mtime_ns, st.st_size)


def static_resolver(web_dir: Path, vendor: dict[str, Path]) -> Callable[[str], Path | None]:
    """``/static/<name>`` -> ``web_dir/static/<name>`` (one path segment, no traversal);
    ``vendor`` maps other exact URL paths (``/vendor/socket.io.min.js``) to their files."""
    static = web_dir / "static"

    def resolve(src: str) -> Path | None:
        if src in vendor:
            return vendor[src]
        name = src.removeprefix("/static/")
        if name != src and re.fullmatch(r"[A-Za-z0-9_.-]+", name) and ".." not in name:
            return static / name
        return None

    return resolve
