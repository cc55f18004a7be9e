"""Files one node keeps on its own disk, fetched by another node of the cluster: a document a
citizen attached to a desk ticket through one machine, opened by a lawyer on another
(docs/scaling.md, "The desk on Redis").

The records (which files a ticket has, their size and SHA-256) are shared in Redis; the bytes
stay where they were received. A node that lacks a file asks the other live nodes for it, by
their heartbeat URL, with a request signed under a key derived from the cluster's secret (a
path and an expiry, HMAC-SHA-256: nobody outside the cluster can fetch a file this way, and a
signed request is good for 30 seconds and for that one file). What comes back is kept only if
its SHA-256 is the record's, so a wrong or tampered answer is never shown; the fetching node
then keeps a copy and serves it from its own disk next time. TLS to the other node is checked
as a browser would: with ``--tls self-signed`` the fetch fails and the file is ``not_found`` on
the other machines, as before this existed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from pathlib import Path

import aiohttp

log = logging.getLogger("parley.cluster")

HEADER = "X-Parley-Node"
VALID_S = 30.0
FETCH_TIMEOUT_S = 10.0


def signature(key: bytes, path: str, expires: int) -> str:
    return hmac.new(key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()


def allowed(key: bytes, path: str, header: str | None, now: float | None = None) -> bool:
    """A request for ``path`` carries a valid, unexpired signature (``<expires>.<hex>``)."""
    if not header or len(header) > 100 or "." not in header:
        return False
    expires, _, given = header.partition(".")
    if not expires.isdigit():
        return False
    now = time.time() if now is None else now
    if not now <= int(expires) <= now + VALID_S:
        return False
    return hmac.compare_digest(given, signature(key, path, int(expires)))


def _keep(data: bytes, into: Path) -> None:
    into.parent.mkdir(parents=True, exist_ok=True)
    tmp = into.with_name(f".{into.name}.peer")
    tmp.write_bytes(data)
    tmp.replace(into)


class PeerFiles:
    """Fetch a file by its path on the other live nodes (``registry``), checked by digest."""

    def __init__(self, registry, key: bytes) -> None:
        self.registry, self.key = registry, key
        self._http: aiohttp.ClientSession | None = None

    def allows(self, path: str, headers) -> bool:
        """Whether a request for ``path`` with ``headers`` comes from a node of the cluster."""
        return allowed(self.key, path, headers.get(HEADER))

    async def fetch(self, path: str, sha256: str, limit: int, into: Path) -> bool:
        """Ask each other live node for ``path`` (a URL path); the first answer of at most
        ``limit`` bytes whose SHA-256 is ``sha256`` is written to ``into`` (atomically). True
        when ``into`` holds it."""
        try:
            nodes, _ = await self.registry.nodes()
        except Exception as exc:  # noqa: BLE001 - Redis away: nothing to ask
            log.warning("peer files: no node list (%s)", exc)
            return False
        for node in nodes:
            if node.id == self.registry.node_id or not node.url:
                continue
            data = await self._get(node.url.rstrip("/") + path, path, limit)
            if data is not None and hashlib.sha256(data).hexdigest() == sha256:
                await asyncio.to_thread(_keep, data, into)
                return True
            if data is not None:
                log.warning("peer files: %s from node %s differs from its record", path, node.id)
        return False

    async def _get(self, url: str, path: str, limit: int) -> bytes | None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S))
        expires = int(time.time() + VALID_S)
        headers = {HEADER: f"{expires}.{signature(self.key, path, expires)}"}
        try:
            async with self._http.get(url, headers=headers, allow_redirects=False) as r:
                if r.status != 200:
                    return None
                data = await r.content.read(limit + 1)
                return data if len(data) <= limit else None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("peer files: %s did not answer (%s)", url, exc)
            return None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
