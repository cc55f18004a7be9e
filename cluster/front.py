"""The one public port of ``server.py serve --workers N`` (docs/scaling.md, "Workers").

A TCP splice, nothing more: each connection accepted on the public host:port is connected to
one worker's own port and the bytes are copied both ways until either side closes. With TLS the
bytes pass through untouched: every worker terminates TLS itself (it must anyway, because pages
are redirected to its own port), so the front holds no key and does no crypto.

Which worker: ``pick(client_ip)`` (the supervisor's: the client's previous worker while it is
up, else the least-loaded live one). Routing by session is not the front's job: a worker that
does not serve a page's session answers ``redirect`` with the owner's own URL (docs/scaling.md,
"Routing: redirect"), and the page goes there directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger("parley.front")

CHUNK = 64 * 1024
CONNECT_TIMEOUT = 5.0


class Front:
    def __init__(
        self,
        pick: Callable[[str, set[int]], tuple[int, str, int] | None],
        on_unreachable: Callable[[int], None] = lambda index: None,
    ) -> None:
        """``pick(client_ip, tried)`` returns (worker index, host, port) or None (no worker
        up); ``on_unreachable(index)``: a worker refused a connection."""
        self._pick = pick
        self._unreachable = on_unreachable
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task] = set()
        self.spliced = 0  # connections handed to a worker (tests, logs)

    async def start(self, host: str, port: int, *, sock=None) -> tuple[str, int]:
        if sock is not None:
            self._server = await asyncio.start_server(self._handle, sock=sock, limit=CHUNK)
        else:
            self._server = await asyncio.start_server(
                self._handle, host, port, limit=CHUNK, reuse_address=True
            )
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def close(self) -> None:
        """Stop accepting and end the connections still spliced."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for task in list(self._conns):
            task.cancel()
        for task in list(self._conns):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            await self._splice(reader, writer)
        except asyncio.CancelledError:
            pass
        except Exception:  # noqa: BLE001 - one connection must never stop the front
            log.exception("front connection failed")
        finally:
            if task is not None:
                self._conns.discard(task)
            _close(writer)

    async def _splice(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = peer[0] if isinstance(peer, tuple) else "?"
        tried: set[int] = set()
        while True:
            chosen = self._pick(client, tried)
            if chosen is None:
                return  # no worker up: the client sees the connection closed and retries
            index, host, port = chosen
            tried.add(index)
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, limit=CHUNK), CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError):
                self._unreachable(index)
                continue
            break
        self.spliced += 1
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            _close(up_writer)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        _close(writer)


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
