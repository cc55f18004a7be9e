"""Uploads under load and abuse: streamed to disk, quotas and a rate per participant, nothing left
behind by a failed or aborted upload, and a clear code for every malformed request."""

from __future__ import annotations

import asyncio
import dataclasses
import tracemalloc

import aiohttp
import pytest

from server import CONFIG
from signaling import documents
from tests.integration.signaling.conftest import until
from tests.integration.signaling.test_documents import PDF, PNG, setup_room, upload

MiB = 1024 * 1024


def doc_dir(running, state):
    return running.app[CONFIG].data_dir / "documents" / state.id


def files_in(running, state) -> list[str]:
    d = doc_dir(running, state)
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def limits(monkeypatch, **changes) -> None:
    monkeypatch.setattr(documents, "LIMITS", dataclasses.replace(documents.LIMITS, **changes))


async def raw_post(running, sid, token, head: bytes, body: bytes, *, content_type: str) -> tuple:
    """POST a hand-built body over a raw socket; (status, first 2 KiB of the reply)."""
    host, port = running.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"POST /api/sessions/{sid}/documents HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(head) + len(body)}\r\nConnection: close\r\n\r\n".encode()
            + head
            + body
        )
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(2048), 10)
    finally:
        writer.close()
    return int(reply.split(b" ", 2)[1]), reply


async def test_concurrent_large_uploads_are_streamed_not_held_in_memory(running, monkeypatch):
    limits(monkeypatch, per_participant_bytes=200 * MiB, per_session_bytes=200 * MiB)
    limits(monkeypatch, per_participant_count=50, concurrent_per_participant=8, burst=50)
    state, _, (a, tok_a), _, _ = setup_room(running)
    size, n = 8 * MiB, 6
    zeros = b"0" * (64 * 1024)

    async def body():  # streamed by the client too, so that only the server's memory is seen
        yield PDF[:16]
        for _ in range(size // len(zeros)):
            yield zeros

    def content():
        return aiohttp.payload.AsyncIterablePayload(body())

    tracemalloc.start()
    try:
        async with aiohttp.ClientSession() as http:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            replies = await asyncio.gather(
                *(upload(http, running, state.id, tok_a, content()) for _ in range(n))
            )
            peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert [status for status, _ in replies] == [200] * n, replies
    assert len(files_in(running, state)) == n
    # Held in memory, the bodies alone would be n * size = 48 MiB.
    assert peak < n * size / 4, f"peak {peak / MiB:.1f} MiB for {n * size / MiB:.0f} MiB uploaded"


async def test_quotas_refuse_with_clear_codes_and_change_nothing(running, monkeypatch):
    limits(monkeypatch, per_participant_count=2, per_session_count=3)
    state, (m, tok_m), (a, tok_a), _, _ = setup_room(running)
    async with aiohttp.ClientSession() as http:
        assert (await upload(http, running, state.id, tok_a, PDF))[0] == 200
        assert (await upload(http, running, state.id, tok_a, PNG, "x.png"))[0] == 200
        seq, files = running.service.state(state.id).seq, files_in(running, state)
        status, reply = await upload(http, running, state.id, tok_a, PDF)
        assert (status, reply["error"]["code"]) == (409, "too_many_documents")
        assert (await upload(http, running, state.id, tok_m, PDF))[0] == 200  # session: 3 of 3
        seq, files = running.service.state(state.id).seq, files_in(running, state)
        status, reply = await upload(http, running, state.id, tok_m, PDF)
        assert (status, reply["error"]["code"]) == (409, "too_many_documents")
        assert running.service.state(state.id).seq == seq and files_in(running, state) == files

        limits(monkeypatch, per_participant_count=10, per_session_count=10)
        limits(monkeypatch, per_participant_bytes=len(PDF) * 3 + 10)
        status, reply = await upload(http, running, state.id, tok_a, PDF + b"0" * 20)
        assert (status, reply["error"]["code"]) == (413, "quota_exceeded")
        assert running.service.state(state.id).seq == seq and files_in(running, state) == files


async def test_uploads_are_rate_limited_per_participant(running, monkeypatch):
    limits(monkeypatch, burst=2, per_minute=0.001)
    state, (m, tok_m), (a, tok_a), _, _ = setup_room(running)
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            assert (await upload(http, running, state.id, tok_a, PDF))[0] == 200
        status, reply = await upload(http, running, state.id, tok_a, PDF)
        assert (status, reply["error"]["code"]) == (429, "rate_limited")
        assert (await upload(http, running, state.id, tok_m, PDF))[0] == 200  # others unaffected


async def test_aborted_upload_streams_to_a_temp_file_and_leaves_nothing(running):
    state, _, (a, tok_a), _, _ = setup_room(running)
    seq = running.service.state(state.id).seq
    host, port = running.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="x.pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\n"
    )
    writer.write(
        f"POST /api/sessions/{state.id}/documents HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {tok_a}\r\nContent-Type: multipart/form-data; boundary=B\r\n"
        f"Content-Length: {5 * MiB}\r\n\r\n".encode()
        + head
        + PDF[:16]
        + b"0" * MiB
    )
    await writer.drain()
    # The bytes received so far are on disk, in a temp file, not in memory.
    await until(lambda: any(n.endswith(".part") for n in files_in(running, state)))
    writer.close()
    await until(lambda: files_in(running, state) == [])
    assert running.service.state(state.id).seq == seq


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("multipart/form-data", b"--B\r\n\r\n"),  # no boundary
        ("multipart/form-data; boundary=B", b"--B\r\nnot a header line\r\n\r\n%PDF-\r\n--B--\r\n"),
        ("multipart/form-data; boundary=B", b"--B\r\nContent-Disposition: \x00\r\n\r\n%PDF-\r\n"),
        (
            "multipart/form-data; boundary=B",
            b'--B\r\nContent-Disposition: form-data; name="file"; filename="a\x00b.pdf"\r\n\r\n'
            + PDF
            + b"\r\n--B--\r\n",
        ),
        ("multipart/form-data; boundary=B", b"garbage without any boundary"),
        ("application/json", b'{"file": "x"}'),
        ("text/plain", b"\xff\xfe\x00"),
    ],
)
async def test_malformed_requests_get_400_with_a_code(running, content_type, body):
    state, _, (a, tok_a), _, _ = setup_room(running)
    seq = running.service.state(state.id).seq
    status, reply = await raw_post(running, state.id, tok_a, b"", body, content_type=content_type)
    assert status == 400, reply
    assert b'"ok": false' in reply and b'"code": "invalid"' in reply
    assert running.service.state(state.id).seq == seq and files_in(running, state) == []


async def test_a_trickling_upload_is_cut_at_its_deadline_and_leaves_nothing(running, monkeypatch):
    limits(monkeypatch, deadline_s=0.5)
    state, _, (a, tok_a), _, _ = setup_room(running)
    seq = running.service.state(state.id).seq
    host, port = running.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /api/sessions/{state.id}/documents HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {tok_a}\r\nContent-Type: multipart/form-data; boundary=B\r\n"
        f"Content-Length: {MiB}\r\n\r\n".encode()
        + b'--B\r\nContent-Disposition: form-data; name="file"; filename="x.pdf"\r\n\r\n'
        + PDF[:16]
    )
    reply = asyncio.ensure_future(reader.read(2048))
    for _ in range(100):  # a byte every 0.05 s: the body would take hours
        if reply.done():
            break
        writer.write(b"0")
        await asyncio.sleep(0.05)
    data = await asyncio.wait_for(reply, 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 408") and b'"too_slow"' in data
    await until(lambda: files_in(running, state) == [])
    assert running.service.state(state.id).seq == seq
