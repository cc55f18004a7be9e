"""Documents shared in a space: upload (type by content, size-limited) and download (only by
participants standing in that space). The bytes live in the data directory; the ledger records
who shared which file where, with its SHA-256.

Phones authenticate with their invitation token in ``Authorization: Bearer <token>`` (the page
fetches and shows the file itself, so the token never appears in a URL).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from urllib.parse import quote, unquote

from aiohttp import web

from rooms.commands import decode_command
from rooms.errors import CommandError
from signaling.bearer import bearer_participant
from signaling.tokens import TokenError

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
MAGIC = [
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
]
STATUS = {
    "invalid": 400,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "ended": 410,
    "duplicate": 409,
    "too_large": 413,
    "unsupported_type": 415,
}


def sniff(head: bytes) -> str | None:
    return next((mime for magic, mime in MAGIC if head.startswith(magic)), None)


def _fail(code: str, message: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error": {"code": code, "message": message}}, status=STATUS.get(code, 400)
    )


def _clean_name(name: str | None) -> str:
    """A display name: some clients percent-encode non-ASCII names, browsers send UTF-8."""
    name = unquote(name or "document")
    base = os.path.basename(name.replace("\\", "/")).strip() or "document"
    return "".join(ch for ch in base if ch.isprintable())[:120] or "document"


class Documents:
    def __init__(self, service, signer, root: Path) -> None:
        self.service, self.signer, self.root = service, signer, root

    def _who(self, request: web.Request):
        state, pid, _ = bearer_participant(request, self.signer, self.service)
        return state, pid

    def _path(self, session_id: str, document_id: str) -> Path:
        return self.root / session_id / f"{document_id}.bin"

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
            reader = await request.multipart()
            part = await reader.next()
        except (ValueError, AssertionError, KeyError):
            return _fail("invalid", "send the file as multipart/form-data field `file`")
        if part is None or getattr(part, "name", None) != "file":
            return _fail("invalid", "send the file as multipart/form-data field `file`")
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            data += chunk
            if len(data) > MAX_DOCUMENT_BYTES:
                return _fail(
                    "too_large", f"documents are limited to {MAX_DOCUMENT_BYTES // 2**20} MiB"
                )
        mime = sniff(bytes(data[:16]))
        if not data or mime is None:
            return _fail("unsupported_type", "only PDF, PNG and JPEG files can be shared")
        doc_id = "d-" + secrets.token_hex(8)
        path = self._path(state.id, doc_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        raw = {
            "type": "share_document",
            "document": doc_id,
            "name": _clean_name(part.filename),
            "mime": mime,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        try:
            events = self.service.execute(state.id, pid, decode_command(raw))
        except CommandError as exc:
            path.unlink(missing_ok=True)  # nothing half-applied: no ledger event, no file
            return _fail(exc.code, exc.message)
        return web.json_response(
            {"ok": True, "document": doc_id, "seq": events[-1].seq, "mime": mime, "size": len(data)}
        )

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
        return web.FileResponse(
            path,
            headers={
                "Content-Type": doc["mime"],
                "Content-Disposition": "attachment; filename*=UTF-8''" + quote(doc["name"]),
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
        )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/sessions/{sid}/documents", self.upload),
            web.get("/api/sessions/{sid}/documents/{doc}", self.download),
        ]
