"""The citizen attaches files to the ticket; the lawyer on shift at the point opens them; every
read is logged; wrong type, too big, too many, no ticket and another point's lawyer are refused."""

from __future__ import annotations

import hashlib
import time

import aiohttp

from signaling.documents import MAX_DOCUMENT_BYTES
from signaling.staff import ACCOUNTS
from tests.integration.desk.helpers import PASSWORD, Lawyer, call, queue_citizen, setup_desk

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def attach(http, running, secret, data: bytes, name="合同.pdf", field="file"):
    form = aiohttp.FormData()
    form.add_field(field, data, filename=name, content_type="application/octet-stream")
    url = f"{running.url}/consult/api/tickets/{secret}/documents"
    async with http.post(url, data=form) as r:
        return r.status, await r.json()


async def test_the_lawyer_on_shift_opens_what_the_citizen_attached(running):
    store = setup_desk(running)
    async with aiohttp.ClientSession() as http:
        secret = await queue_citizen(http, running, "张三", "13800138001")
        status, data = await attach(http, running, secret, PDF)
        assert status == 200, data
        doc = data["document"]
        assert doc["mime"] == "application/pdf" and doc["name"] == "合同.pdf"
        assert doc["sha256"] == hashlib.sha256(PDF).hexdigest()
        li = await Lawyer(running, "li").login()
        try:
            status, state = await li.get()
            row = state["desk"]["queue"][0]
            assert [d["id"] for d in row["documents"]] == [doc["id"]]
            url = f"{running.url}/desk/api/tickets/{row['id']}/documents/{doc['id']}"
            async with li.http.get(url) as r:
                assert r.status == 200
                assert r.headers["Content-Type"] == "application/pdf"
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                assert await r.read() == PDF
        finally:
            await li.close()
        reads = [r for r in store.log_rows(row["id"]) if r[3] == "document_read"]
        assert len(reads) == 1 and reads[0][2] == "staff:li" and doc["id"] in reads[0][4]
        assert [r[3] for r in store.log_rows(row["id"])].count("document_added") == 1


async def test_bad_files_are_refused_and_nothing_is_kept(running, tmp_path):
    store = setup_desk(running)
    async with aiohttp.ClientSession() as http:
        secret = await queue_citizen(http, running, "李四", "13800138002")
        tid = store.live()[0].id
        cases = [
            (b"MZ\x90\x00 an executable, not a paper", "a.pdf", "file", 415, "unsupported_type"),
            (b"GIF89a" + b"\x00" * 32, "a.gif", "file", 415, "unsupported_type"),
            (PDF, "a.pdf", "upload", 400, "invalid"),
            (b"%PDF-" + b"\x00" * MAX_DOCUMENT_BYTES, "big.pdf", "file", 413, "too_large"),
        ]
        for data, name, field, want_status, code in cases:
            status, answer = await attach(http, running, secret, data, name, field)
            assert (status, answer["error"]["code"]) == (want_status, code), name
        assert store.documents(tid) == []
        folder = tmp_path / "data" / "desk-documents" / str(tid)  # the server's data directory
        assert not folder.exists() or list(folder.iterdir()) == []  # nothing half-written kept
        for i in range(3):
            status, answer = await attach(http, running, secret, PNG, f"p{i}.png")
            assert status == 200, answer
        status, answer = await attach(http, running, secret, PNG, "p3.png")
        assert (status, answer["error"]["code"]) == (409, "too_many_documents")
        assert len(store.documents(tid)) == 3
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            d["id"] + ".bin" for d in store.documents(tid)
        )
        status, answer = await attach(http, running, "not-a-ticket-secret", PDF)
        assert (status, answer["error"]["code"]) == (404, "not_found")
        async with http.post(f"{running.url}/consult/api/tickets/{secret}/leave", json={}) as r:
            assert r.status == 200
        status, answer = await attach(http, running, secret, PDF)
        assert (status, answer["error"]["code"]) == (409, "closed")


async def test_only_lawyers_on_shift_at_that_point_open_them(running):
    store = setup_desk(running, lawyers=("li", "wang"), on_shift=("li",))
    store.add_point("hall-2", "第二中心 Second hall", "1-7 00:00-24:00")
    now = time.time()
    store.add_shift("wang", "hall-2", now - 60, now + 3600)
    running.app[ACCOUNTS].add("clerk", "书记员", ["mediator"], PASSWORD)
    async with aiohttp.ClientSession() as http:
        secret = await queue_citizen(http, running, "赵六", "13800138003")
        status, data = await attach(http, running, secret, PDF)
        assert status == 200
        tid, doc = store.live()[0].id, data["document"]["id"]
    url = f"{running.url}/desk/api/tickets/{tid}/documents/{doc}"
    wang = await Lawyer(running, "wang").login()
    clerk = await Lawyer(running, "clerk").login_as_other()
    li = await Lawyer(running, "li").login()
    try:
        status, answer = await call(wang.http, "GET", url)
        assert (status, answer["error"]["code"]) == (403, "not_on_shift")
        status, answer = await call(clerk.http, "GET", url)
        assert (status, answer["error"]["code"]) == (403, "forbidden")
        async with aiohttp.ClientSession() as anonymous:
            status, answer = await call(anonymous, "GET", url)
            assert (status, answer["error"]["code"]) == (403, "forbidden")
        for bad in (
            f"/desk/api/tickets/{tid}/documents/cd-0000",
            f"/desk/api/tickets/x/documents/{doc}",
        ):
            status, answer = await call(li.http, "GET", running.url + bad)
            assert status in (400, 404) and answer["error"]["code"] in ("invalid", "not_found")
    finally:
        for who in (wang, clerk, li):
            await who.close()
    assert not [r for r in store.log_rows(tid) if r[3] == "document_read"]
