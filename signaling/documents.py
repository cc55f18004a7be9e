"""Documents shared in a space: upload (type by content, size-limited) and download (only by
participants standing in that space). The bytes live in the data directory; the ledger records
who shared which file where, with its SHA-256.

Phones authenticate with their invitation token in ``Authorization: Bearer <token>`` (the page
fetches and shows the file itself, so the token never appears in a URL).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import secrets
from pathlib import Path
from urllib.parse import quote, unquote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from rooms.commands import decode_command
from rooms.errors import CommandError
from signaling.bearer import bearer_participant
from signaling.guard import refusal, streams_body
from signaling.ratelimit import RateLimiter
from signaling.tokens import TokenError

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
CHUNK_BYTES = 64 * 1024  # one write of this size takes ~20 us: cheap enough for the event loop


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one participant and one session may upload. Uploads in flight count as shared."""

    per_participant_count: int = 20
    per_participant_bytes: int = 60 * 1024 * 1024
    per_session_count: int = 60
    per_session_bytes: int = 200 * 1024 * 1024
    concurrent_per_participant: int = 2
    per_minute: float = 6.0  # token bucket per participant: this rate ...
    burst: float = 6.0  # ... after a burst of this many
    deadline_s: float = 300.0  # the whole body must arrive within this (a 3G phone: 10 MiB/3 min)


LIMITS = Limits()
MAGIC = [
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
]
SNIFF_BYTES = 8
STATUS = {
    "invalid": 400,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "ended": 410,
    "duplicate": 409,
    "too_many_documents": 409,
    "too_slow": 408,
    "too_large": 413,
    "quota_exceeded": 413,
    "unsupported_type": 415,
    "rate_limited": 429,
    "busy": 429,
}
NOT_MULTIPART = "send the file as multipart/form-data field `file`"


def sniff(head: bytes) -> str | None:
    return next((mime for magic, mime in MAGIC if head.startswith(magic)), None)


def _fail(code: str, message: str) -> web.Response:
    return refusal(code, message, STATUS.get(code, 400))


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _clean_name(name: str | None) -> str:
    """A display name: some clients percent-encode non-ASCII names, browsers send UTF-8."""
    name = unquote(name or "document")
    base = os.path.basename(name.replace("\\", "/")).strip() or "document"
    return "".join(ch for ch in base if ch.isprintable())[:120] or "document"


@dataclasses.dataclass
class _InFlight:
    """An upload being received: it counts towards the quotas before it reaches the ledger."""

    session: str
    participant: str
    size: int = 0


def document_response(path: Path, mime: str, name: str) -> web.FileResponse:
    """A stored document as a download: its sniffed type, never rendered inline, never cached."""
    return web.FileResponse(
        path,
        headers={
            "Content-Type": mime,
            "Content-Disposition": "attachment; filename*=UTF-8''" + quote(name),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


def close_synced(file) -> None:
    """Flush, fsync and close: run in a thread, the fsync can take milliseconds."""
    try:
        file.flush()
        os.fsync(file.fileno())
    finally:
        file.close()


class Documents:
    def __init__(self, service, signer, root: Path) -> None:
        self.service, self.signer, self.root = service, signer, root
        self._flight: list[_InFlight] = []
        self._rates: dict[tuple[str, str], RateLimiter] = {}

    def _who(self, request: web.Request):
        state, pid, _ = bearer_participant(request, self.signer, self.service)
        return state, pid

    def _path(self, session_id: str, document_id: str) -> Path:
        return self.root / session_id / f"{document_id}.bin"

    def _usage(self, state, pid: str | None) -> tuple[int, int]:
        """(count, bytes) shared so far plus in flight, by one participant or (None) everyone."""
        shared = [
            d for docs in state.documents.values() for d in docs if pid in (None, d.get("from"))
        ]
        flying = [f for f in self._flight if f.session == state.id and pid in (None, f.participant)]
        return len(shared) + len(flying), sum(d["size"] for d in shared) + sum(
            f.size for f in flying
        )

    def _admit(self, state, pid: str) -> _InFlight:
        """Refuse an upload over a count quota, the rate or the concurrency; else reserve it."""
        lim = LIMITS
        mine = [f for f in self._flight if (f.session, f.participant) == (state.id, pid)]
        if len(mine) >= lim.concurrent_per_participant:
            raise _Refused("busy", "wait for your other uploads to finish")
        if self._usage(state, pid)[0] >= lim.per_participant_count:
            raise _Refused("too_many_documents", "you have shared as many documents as allowed")
        if self._usage(state, None)[0] >= lim.per_session_count:
            raise _Refused("too_many_documents", "this session has as many documents as allowed")
        rate = self._rates.setdefault((state.id, pid), RateLimiter(lim.per_minute / 60, lim.burst))
        if not rate.allow():
            raise _Refused("rate_limited", "too many uploads; wait a minute")
        flight = _InFlight(state.id, pid)
        self._flight.append(flight)
        return flight

    def _grow(self, state, flight: _InFlight, size: int) -> None:
        """Account a received chunk; refuse once the file or a byte quota would be exceeded."""
        flight.size += size
        if flight.size > MAX_DOCUMENT_BYTES:
            raise _Refused(
                "too_large", f"documents are limited to {MAX_DOCUMENT_BYTES // 2**20} MiB"
            )
        if self._usage(state, flight.participant)[1] > LIMITS.per_participant_bytes:
            raise _Refused("quota_exceeded", "you have shared as many bytes as allowed")
        if self._usage(state, None)[1] > LIMITS.per_session_bytes:
            raise _Refused("quota_exceeded", "this session has as many bytes as allowed")

    @streams_body(lambda: LIMITS.deadline_s)
    async def upload(self, request: web.Request) -> web.Response:
        try:
            state, pid = self._who(request)
        except TokenError as exc:
            return _fail("forbidden" if exc.code != "token_expired" else "ended", exc.message)
        except CommandError as exc:
            return _fail(exc.code, exc.message)
        if request.content_length and request.content_length > MAX_DOCUMENT_BYTES + 64 * 1024:
            return _fail("too_large", f"documents are limited to {MAX_DOCUMENT_BYTES // 2**20} MiB")
        try:
            flight = self._admit(state, pid)
        except _Refused as exc:
            return _fail(exc.code, exc.message)
        try:
            return await self._receive(request, state, pid, flight)
        except _Refused as exc:
            return _fail(exc.code, exc.message)
        finally:
            self._flight.remove(flight)

    async def _receive(self, request: web.Request, state, pid: str, flight) -> web.Response:
        """Stream the part to a temp file beside its final name; rename it only once the type,
        the size and the ledger append are all good, and remove it on any failure."""
        try:
            reader = await request.multipart()
            part = await reader.next()
        except (ValueError, AssertionError, KeyError, HttpProcessingError):
            raise _Refused("invalid", NOT_MULTIPART) from None
        if not isinstance(part, BodyPartReader) or part.name != "file":
            raise _Refused("invalid", NOT_MULTIPART)
        doc_id = "d-" + secrets.token_hex(8)
        path = self._path(state.id, doc_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{doc_id}.part")
        file = await asyncio.to_thread(open, tmp, "xb")
        digest, head, committed = hashlib.sha256(), b"", False
        try:
            while chunk := await self._chunk(part):
                self._grow(state, flight, len(chunk))
                if len(head) < SNIFF_BYTES:
                    head += chunk[: SNIFF_BYTES - len(head)]
                    if len(head) == SNIFF_BYTES and sniff(head) is None:
                        break
                digest.update(chunk)
                file.write(chunk)
            mime = sniff(head)
            if mime is None:
                raise _Refused("unsupported_type", "only PDF, PNG and JPEG files can be shared")
            closing, file = file, None
            await asyncio.to_thread(close_synced, closing)
            raw = {
                "type": "share_document",
                "document": doc_id,
                "name": _clean_name(part.filename),
                "mime": mime,
                "size": flight.size,
                "sha256": digest.hexdigest(),
            }
            try:
                events = self.service.execute(state.id, pid, decode_command(raw))
            except CommandError as exc:
                raise _Refused(exc.code, exc.message) from None
            os.replace(tmp, path)
            committed = True
        finally:
            if file is not None:
                file.close()
            if not committed:
                tmp.unlink(missing_ok=True)
        return web.json_response(
            {
                "ok": True,
                "document": doc_id,
                "seq": events[-1].seq,
                "mime": mime,
                "size": flight.size,
            }
        )

    @staticmethod
    async def _chunk(part: BodyPartReader) -> bytes:
        try:
            return await part.read_chunk(CHUNK_BYTES)
        except (ValueError, AssertionError, HttpProcessingError):
            raise _Refused("invalid", NOT_MULTIPART) from None
        except ConnectionError:  # the phone went away: nobody reads the answer
            raise _Refused("aborted", "the upload was interrupted") from None

    async def download(self, request: web.Request) -> web.StreamResponse:
        try:
            state, pid = self._who(request)
        except TokenError as exc:
            return _fail("forbidden", exc.message)
        except CommandError as exc:
            return _fail(exc.code, exc.message)
        doc = state.document_for(pid, request.match_info["doc"])
        if doc is None:
            return _fail("not_found", "no such document in your room")
        path = self._path(state.id, doc["document"])
        if not path.exists():
            return _fail("not_found", "the document's file is missing")
        return document_response(path, doc["mime"], doc["name"])

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/sessions/{sid}/documents", self.upload),
            web.get("/api/sessions/{sid}/documents/{doc}", self.download),
        ]
