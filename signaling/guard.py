"""The connection guard: what a peer that has not (yet) proved who it is may cost the server.

- HTTP: request headers must be complete within ``HEADER_DEADLINE_S`` of the connection opening
  (or of the previous response), and a request body must have arrived within
  ``BODY_DEADLINE_S`` (routes that stream large bodies set their own deadline), so a client
  sending a byte a second cannot hold a connection.
- engine.io: a connection must join the ``/parley`` namespace with a valid token within
  ``AUTH_DEADLINE_S`` or it is closed; one address may hold at most ``PENDING_PER_ADDRESS``
  connections that have not; a malformed packet closes its connection and is logged once, as one
  line, instead of a traceback per packet.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger("parley.guard")

HEADER_DEADLINE_S = 10.0
BODY_DEADLINE_S = 30.0
AUTH_DEADLINE_S = 10.0
PENDING_PER_ADDRESS = 32
# On shutdown aiohttp waits this long for open handlers before it cancels them. A page's
# websocket is one: told to close (engine.io's CLOSE packet), the browser's engine.io client does
# not close it, so without a short grace a stop waited ~17 s for the socket's ping timeout.
SHUTDOWN_GRACE_S = 2.0


def runner_options() -> dict:
    """Keyword arguments for ``web.AppRunner``. aiohttp closes a connection whose next request's
    headers are not complete when the keep-alive timer fires (partial headers do not reset it),
    so its keep-alive timeout is the header deadline; a stop gives open handlers
    ``SHUTDOWN_GRACE_S``."""
    return {"keepalive_timeout": HEADER_DEADLINE_S, "shutdown_timeout": SHUTDOWN_GRACE_S}


def quiet_logger(name: str) -> logging.Logger:
    """A logger for engine.io/socket.io: through our handlers (JSON), warnings and up only; their
    default logger adds a plain-text handler of its own. A client's garbage is the client's error,
    not the server's: it is logged as one warning line, without a traceback."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.WARNING)
    _add_once(logger, ClientErrorFilter())
    return logger


class ClientErrorFilter(logging.Filter):
    """Rewrite a library's ERROR about a malformed request (aiohttp's ``Error handling request``
    for a bad request line or header, or for a client that hung up mid-answer; engine.io's unknown
    version or session) as one WARNING line
    with no traceback, so garbage from the network can neither fill the log with tracebacks nor
    look like a server fault. Real server errors keep their level and traceback."""

    ENGINEIO_CLIENT_ERRORS = ("unsupported version", "invalid session", "invalid websocket")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        client_error = isinstance(exc, ConnectionResetError) or (  # the client went away
            isinstance(exc, HttpProcessingError) and (exc.code or 400) < 500
        )
        message = record.getMessage().lower()
        if not client_error and not any(m in message for m in self.ENGINEIO_CLIENT_ERRORS):
            return True
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        if exc is not None:
            record.msg, record.args = f"bad request from a client: {type(exc).__name__}", None
        record.exc_info = record.exc_text = None
        return True


def _add_once(logger: logging.Logger, flt: logging.Filter) -> None:
    if not any(isinstance(f, type(flt)) for f in logger.filters):
        logger.addFilter(flt)


def quiet_client_errors() -> None:
    """aiohttp's server logger reports every malformed request at ERROR with a traceback."""
    _add_once(logging.getLogger("aiohttp.server"), ClientErrorFilter())


def streams_body(deadline: Callable[[], float]):
    """Mark a handler that reads a large body itself and give the seconds its body may take."""

    def mark(handler):
        handler.body_deadline = deadline
        return handler

    return mark


def refusal(code: str, message: str, status: int) -> web.Response:
    """The JSON answer every HTTP route gives when it refuses: ``{"ok": false, "error": …}``."""
    return web.json_response(
        {"ok": False, "error": {"code": code, "message": message}}, status=status
    )


@web.middleware
async def body_deadline(request: web.Request, handler):
    """Answer 408 ``too_slow`` when a request body has not fully arrived in time. A finished
    body does not limit the handler's own time (downloads, websockets)."""
    if not request.body_exists:
        return await handler(request)
    marked = getattr(request.match_info.handler, "body_deadline", None)
    seconds = marked() if marked else BODY_DEADLINE_S
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(None) as cm:

            def check() -> None:
                if not request.content.is_eof():
                    cm.reschedule(loop.time())

            timer = loop.call_later(seconds, check)
            try:
                return await handler(request)
            finally:
                timer.cancel()
    except TimeoutError:
        if not cm.expired():
            raise
        log.info("request body too slow", extra={"path": request.path, "peer": request.remote})
        return refusal("too_slow", "the request body did not arrive in time", 408)


class ConnectionGuard:
    """Wraps the engine.io events of a socket.io server (see the module docstring)."""

    def __init__(self, sio, namespace: str) -> None:
        self.sio, self.namespace = sio, namespace
        self._pending: dict[str, str] = {}  # engine.io sid -> peer address, until it joins
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._bad: set[str] = set()  # engine.io sids already logged for a malformed packet
        self._requests: dict[str, web.BaseRequest | None] = {}  # engine.io sid -> its request
        self._capped: set[str] = set()  # addresses at the cap, logged once until below it again
        self._tasks: set[asyncio.Task] = set()
        self._inner: dict[str, Callable] = {}

    def install(self) -> ConnectionGuard:
        for event, wrapper in (
            ("connect", self._connect),
            ("message", self._message),
            ("disconnect", self._disconnect),
        ):
            self._inner[event] = self.sio.eio.handlers[event]
            self.sio.eio.on(event, wrapper)
        return self

    def pending(self) -> int:
        """Connections that have not joined the namespace yet."""
        self._sweep()
        return len(self._pending)

    def _joined(self, eio_sid: str) -> bool:
        return self.sio.manager.sid_from_eio_sid(eio_sid, self.namespace) is not None

    def _sweep(self) -> None:
        for eio_sid in [s for s in self._pending if self._joined(s)]:
            self._forget(eio_sid)

    def _forget(self, eio_sid: str) -> None:
        peer = self._pending.pop(eio_sid, None)
        self._capped.discard(peer)
        timer = self._timers.pop(eio_sid, None)
        if timer is not None:
            timer.cancel()

    def _close(self, eio_sid: str) -> None:
        task = asyncio.get_running_loop().create_task(self._kick(eio_sid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _kick(self, eio_sid: str) -> None:
        """Close the engine.io session, then its TCP connection: engine.io only sends a close
        packet and waits for the peer, which a hostile peer ignores."""
        request = self._requests.get(eio_sid)
        await self.sio.eio.disconnect(eio_sid)
        if request is not None and request.transport is not None:
            request.transport.close()

    async def _connect(self, eio_sid: str, environ: dict):
        request = environ.get("aiohttp.request")
        peer = (request.remote if request is not None else None) or "unknown"
        self._sweep()
        if sum(1 for a in self._pending.values() if a == peer) >= PENDING_PER_ADDRESS:
            if peer not in self._capped:
                self._capped.add(peer)
                log.warning("too many unauthenticated connections", extra={"peer": peer})
            return False
        self._pending[eio_sid] = peer
        self._requests[eio_sid] = request
        loop = asyncio.get_running_loop()
        self._timers[eio_sid] = loop.call_later(AUTH_DEADLINE_S, self._expire, eio_sid)
        return await self._inner["connect"](eio_sid, environ)

    def _expire(self, eio_sid: str) -> None:
        self._timers.pop(eio_sid, None)
        if self._pending.pop(eio_sid, None) is not None and not self._joined(eio_sid):
            log.info("closed: no authentication in time", extra={"eio_sid": eio_sid})
            self._close(eio_sid)

    async def _message(self, eio_sid: str, data):
        try:
            return await self._inner["message"](eio_sid, data)
        except Exception as exc:  # noqa: BLE001 - a bad packet closes its connection, once
            socket = self.sio.eio.sockets.get(eio_sid)
            if eio_sid in self._bad or socket is None or socket.closing or socket.closed:
                return None  # logged already, or closing: the packets it had sent still come
            self._bad.add(eio_sid)
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            log.warning(
                "bad packet; connection closed",
                extra={
                    "eio_sid": eio_sid,
                    "peer": self._pending.get(eio_sid),
                    "error": f"{type(exc).__name__}: {exc}"[:200],
                    "where": f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}",
                },
            )
            self._close(eio_sid)
            return None

    async def _disconnect(self, eio_sid: str, reason=None):
        self._forget(eio_sid)
        self._bad.discard(eio_sid)
        self._requests.pop(eio_sid, None)
        return await self._inner["disconnect"](eio_sid, reason)
