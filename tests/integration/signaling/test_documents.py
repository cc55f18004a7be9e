"""Documents per space: type by content, size limit, visible only in the space, no half-apply."""

from __future__ import annotations

import hashlib

import aiohttp

from rooms.commands import decode_command
from server import CONFIG
from signaling.documents import MAX_DOCUMENT_BYTES

PDF = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def setup_room(running):
    state = running.mediation(parties=2)
    m, tok_m = running.token(state, "mediator")
    a, tok_a = running.token(state, "party", 0)
    b, tok_b = running.token(state, "party", 1)
    run = lambda actor, **c: running.service.execute(state.id, actor, decode_command(c))  # noqa: E731
    for pid in (m, a, b):
        run("system", type="connect", participant=pid)
    for pid in (a, b):
        for topic in ("online_mediation", "session_rules"):
            run(pid, type="record_consent", topic=topic, given=True)
    run(m, type="admit", participant=a)
    return state, (m, tok_m), (a, tok_a), (b, tok_b), run


async def upload(http, running, sid, token, content, filename="x.pdf", field="file"):
    form = aiohttp.FormData()
    form.add_field(field, content, filename=filename, content_type="application/octet-stream")
    async with http.post(
        f"{running.url}/api/sessions/{sid}/documents",
        data=form,
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        return r.status, await r.json()


async def test_upload_is_typed_by_content_and_seen_only_in_its_space(running):
    state, (m, tok_m), (a, tok_a), (b, tok_b), run = setup_room(running)
    async with aiohttp.ClientSession() as http:
        status, reply = await upload(http, running, state.id, tok_a, PDF, "协议草稿.pdf")
        assert status == 200 and reply["mime"] == "application/pdf"
        doc = reply["document"]
        shared = running.service.state(state.id).documents["joint"][0]
        assert (
            shared["sha256"] == hashlib.sha256(PDF).hexdigest() and shared["name"] == "协议草稿.pdf"
        )

        url = f"{running.url}/api/sessions/{state.id}/documents/{doc}"
        async with http.get(url, headers={"Authorization": f"Bearer {tok_m}"}) as r:
            assert r.status == 200 and await r.read() == PDF
            assert r.headers["Content-Type"] == "application/pdf"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get(url, headers={"Authorization": f"Bearer {tok_b}"}) as r:
            assert r.status == 404  # B waits outside: not in the joint room
        async with http.get(url) as r:
            assert r.status == 403  # no token

        # Renamed executable is refused by content, whatever its name says.
        status, reply = await upload(
            http, running, state.id, tok_a, b"MZ\x90\x00 evil", "photo.png"
        )
        assert status == 415 and reply["error"]["code"] == "unsupported_type"
        status, reply = await upload(http, running, state.id, tok_a, PNG, "x.png", field="other")
        assert status == 400
        big = b"%PDF-" + b"0" * (MAX_DOCUMENT_BYTES + 1)
        status, reply = await upload(http, running, state.id, tok_a, big)
        assert status == 413

        # B is in the waiting room: the command is refused and no file is left behind.
        seq = running.service.state(state.id).seq
        status, reply = await upload(http, running, state.id, tok_b, PNG, "x.png")
        assert status == 409 and reply["error"]["code"] == "conflict"
        assert running.service.state(state.id).seq == seq
        files = sorted(
            p.name for p in (running.app[CONFIG].data_dir / "documents" / state.id).iterdir()
        )
        assert files == [f"{doc}.bin"]

        # A token for another session cannot upload here.
        other = running.mediation()
        _, foreign = running.token(other, "party")
        status, reply = await upload(http, running, state.id, foreign, PDF)
        assert status == 403
