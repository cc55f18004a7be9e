"""Documents a citizen attaches to a desk ticket from the consult page, and the lawyer on shift
at that point opening them from the desk console.

The file checks are those of the session documents (signaling/documents.py): the type read from
the content (PDF, PNG, JPEG), the same size limit and display-name cleaning. The bytes live in
``<data>/desk-documents/<ticket>/<id>.bin``; the list is in ``desk.sqlite3``; every upload and
every read is a row of the desk log, as the lawyers' history reads are. When clustered the list
is in Redis and the bytes stay on the node that received them: a lawyer on another node gets
them through ``peers`` (cluster/peer_files.py), checked against the list's SHA-256.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from pathlib import Path

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from desk.errors import DeskError
from desk.roster import points_on_shift
from signaling.desk import ConsultDesk
from signaling.desk_console import _lawyer
from signaling.desk_http import answers
from signaling.documents import (
    CHUNK_BYTES,
    MAX_DOCUMENT_BYTES,
    NOT_MULTIPART,
    SNIFF_BYTES,
    _clean_name,
    close_synced,
    document_response,
    sniff,
)
from signaling.guard import streams_body

MAX_PER_TICKET = 3  # a few papers: a contract, a notice, a photo of a letter
OPEN_STATES = ("waiting", "callback", "serving")
UPLOAD_DEADLINE_S = 300.0  # as the session documents: 10 MiB over a slow phone line
DOC_ID = re.compile(r"cd-[0-9a-f]{16}")


def _receive_error() -> DeskError:
    return DeskError("invalid", NOT_MULTIPART)


class DeskDocuments:
    def __init__(self, desk: ConsultDesk, root: Path) -> None:
        self.desk, self.root = desk, root
        self._flight: dict[int, int] = {}  # ticket -> uploads being received (count as attached)
        # clustered (server.py): the other nodes, for a file received by one of them
        # (cluster/peer_files.PeerFiles); None on one node
        self.peers = None

    def _path(self, ticket_id: int, doc_id: str) -> Path:
        return self.root / str(ticket_id) / f"{doc_id}.bin"

    @streams_body(lambda: UPLOAD_DEADLINE_S)
    @answers
    async def upload(self, request: web.Request) -> web.Response:
        """The ticket's holder attaches one file (multipart field ``file``)."""
        ticket = self.desk.ticket_for(request.match_info["secret"])
        if ticket.state not in OPEN_STATES:
            raise DeskError("closed", "this consultation has ended")
        if request.content_length and request.content_length > MAX_DOCUMENT_BYTES + 64 * 1024:
            raise DeskError("too_large", f"files are limited to {MAX_DOCUMENT_BYTES // 2**20} MiB")
        attached = len(self.desk.store.documents(ticket.id)) + self._flight.get(ticket.id, 0)
        if attached >= MAX_PER_TICKET:
            raise DeskError("too_many_documents", f"at most {MAX_PER_TICKET} files per request")
        self._flight[ticket.id] = self._flight.get(ticket.id, 0) + 1
        try:
            doc = await self._receive(request, ticket.id)
        finally:
            self._flight[ticket.id] -= 1
            if not self._flight[ticket.id]:
                del self._flight[ticket.id]
        return web.json_response({"ok": True, "document": doc})

    async def _receive(self, request: web.Request, ticket_id: int) -> dict:
        """Stream the part to a temporary file; keep it only when type and size are good."""
        try:
            reader = await request.multipart()
            part = await reader.next()
        except (ValueError, AssertionError, KeyError, HttpProcessingError):
            raise _receive_error() from None
        if not isinstance(part, BodyPartReader) or part.name != "file":
            raise _receive_error()
        doc_id = "cd-" + secrets.token_hex(8)
        path = self._path(ticket_id, doc_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{doc_id}.part")
        digest, head, size, kept = hashlib.sha256(), b"", 0, False
        file = await asyncio.to_thread(open, tmp, "xb")
        try:
            while True:
                try:
                    chunk = await part.read_chunk(CHUNK_BYTES)
                except (ValueError, AssertionError, HttpProcessingError):
                    raise _receive_error() from None
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_DOCUMENT_BYTES:
                    limit = MAX_DOCUMENT_BYTES // 2**20
                    raise DeskError("too_large", f"files are limited to {limit} MiB")
                if len(head) < SNIFF_BYTES:
                    head += chunk[: SNIFF_BYTES - len(head)]
                    if len(head) == SNIFF_BYTES and sniff(head) is None:
                        break
                digest.update(chunk)
                file.write(chunk)
            mime = sniff(head)
            if mime is None:
                raise DeskError("unsupported_type", "only PDF, PNG and JPEG files can be attached")
            await asyncio.to_thread(close_synced, file)
            file = None
            doc = {
                "id": doc_id,
                "name": _clean_name(part.filename),
                "mime": mime,
                "size": size,
                "sha256": digest.hexdigest(),
            }
            ticket = self.desk.store.ticket(ticket_id)
            if ticket is None or ticket.state not in OPEN_STATES:  # ended while it arrived
                raise DeskError("closed", "this consultation has ended")
            os.replace(tmp, path)
            kept = True
            self.desk.store.add_document(ticket_id, doc, self.desk.clock())
        finally:
            if file is not None:
                file.close()
            if not kept:
                tmp.unlink(missing_ok=True)
        return doc

    @answers
    async def read(self, request: web.Request) -> web.StreamResponse:
        """A lawyer on shift at the ticket's point opens one of its files; logged."""
        account = _lawyer(request)
        try:
            ticket_id = int(request.match_info["ticket"])
        except ValueError:
            raise DeskError("invalid", "ticket: a number") from None
        ticket = self.desk.store.ticket(ticket_id)
        if ticket is None or ticket.kind != "citizen":
            raise DeskError("not_found", "no such ticket")
        now = self.desk.clock()
        if ticket.point not in points_on_shift(self.desk.store.shifts(now), account.username, now):
            raise DeskError("not_on_shift", "only lawyers on shift at this point may open it")
        doc = next(
            (
                d
                for d in self.desk.store.documents(ticket.id)
                if d["id"] == request.match_info["doc"]
            ),
            None,
        )
        path = self._path(ticket.id, doc["id"]) if doc else None
        if path is not None and not path.exists() and self.peers is not None:
            await self.peers.fetch(
                self._peer_path(ticket.id, doc["id"]), doc["sha256"], MAX_DOCUMENT_BYTES, path
            )
        if path is None or not path.exists():
            raise DeskError("not_found", "no such document on this ticket")
        self.desk.store.log(
            ticket.id, f"staff:{account.username}", "document_read", now, document=doc["id"]
        )
        return document_response(path, doc["mime"], doc["name"])

    @staticmethod
    def _peer_path(ticket_id: int, doc_id: str) -> str:
        return f"/cluster/desk-documents/{ticket_id}/{doc_id}"

    @answers
    async def peer_copy(self, request: web.Request) -> web.StreamResponse:
        """Another node of the cluster fetching a file this node received (its request signed
        under the cluster's key; cluster/peer_files.py). Not logged as a read: the lawyer's
        read is logged on the node they asked."""
        if self.peers is None or not self.peers.allows(request.path, request.headers):
            raise DeskError("forbidden", "for the cluster's own nodes")
        ticket, doc = request.match_info["ticket"], request.match_info["doc"]
        if not ticket.isdigit() or len(ticket) > 12 or not DOC_ID.fullmatch(doc):
            raise DeskError("invalid", "ticket: a number; doc: a document id")
        path = self._path(int(ticket), doc)
        if not path.is_file():
            raise DeskError("not_found", "no such document on this node")
        return web.FileResponse(path, headers={"Cache-Control": "no-store"})

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/consult/api/tickets/{secret}/documents", self.upload),
            web.get("/desk/api/tickets/{ticket}/documents/{doc}", self.read),
            web.get(self._peer_path("{ticket}", "{doc}"), self.peer_copy),
        ]
