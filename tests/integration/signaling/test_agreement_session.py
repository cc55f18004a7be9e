"""The agreement signed inside a live session over socket.io, with the Python phone stand-in
(same protocol and checks as the browser page): draft, freeze, enrol, sign in turn, seal,
download, evidence, offline verify — and the bad paths."""

from __future__ import annotations

import asyncio
import hashlib
import io
import sys
import zipfile

import aiohttp
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization

from esign.phone import PythonPhone
from esign.protocol import EnrolChallenge, Enrolment, SignatureRequest
from rooms.commands import decode_command
from server import DESK
from signaling.namespace import NAMESPACE
from tests.support.server_proc import ROOT

pytestmark = pytest.mark.slow
TERMS = ["李四于2026年12月31日前向张三支付人民币5000元。", "双方就本纠纷再无其他争议。"]


class Signer:
    """One participant's socket plus its phone-held key."""

    def __init__(self, running, state, pid, token, sio) -> None:
        self.running, self.state, self.pid, self.token, self.sio = running, state, pid, token, sio
        self.phone = PythonPhone(pid)

    async def call(self, event, payload):
        return await self.sio.call(event, {"v": 1, **payload}, namespace=NAMESPACE, timeout=30)

    async def pdf(self) -> bytes:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{self.running.url}/api/sessions/{self.state.id}/agreement.pdf",
                headers={"Authorization": f"Bearer {self.token}"},
            ) as r,
        ):
            assert r.status == 200, await r.text()
            return await r.read()

    async def enrol(self):
        r = await self.call("esign", {"action": "challenge"})
        assert r["ok"], r
        req = self.phone.enrol_request(msgspec.convert(r["challenge"], EnrolChallenge))
        r = await self.call("esign", {"action": "enrol", "request": msgspec.to_builtins(req)})
        assert r["ok"], r
        self.phone.accept(msgspec.convert(r["enrolment"], Enrolment))

    async def sign(self):
        self.phone.review(await self.pdf())
        r = await self.call("esign", {"action": "prepare"})
        assert r["ok"], r
        request = msgspec.convert(r["request"], SignatureRequest)
        reply = self.phone.sign(request)
        r = await self.call("esign", {"action": "sign", "reply": msgspec.to_builtins(reply)})
        assert r["ok"], r
        return r["receipt"]


async def session_with_signers(running):
    state = running.mediation(parties=2)
    med_id, med_tok = running.token(state, "mediator", staff="wang")
    ids = [running.token(state, "party", i) for i in range(2)]
    run = lambda actor, **c: running.service.execute(state.id, actor, decode_command(c))  # noqa: E731
    people = []
    for pid, tok in [(med_id, med_tok), *ids]:
        sio, _ = await running.client(tok)
        run("system", type="connect", participant=pid)
        people.append(Signer(running, state, pid, tok, sio))
    for pid, _ in ids:
        for topic in ("online_mediation", "session_rules"):
            run(pid, type="record_consent", topic=topic, given=True)
        run(med_id, type="admit", participant=pid)
        run(med_id, type="mark_identity_checked", participant=pid, method="video")
    return state, people


async def test_whole_ceremony_in_session(running, tmp_path):
    state, (med, a, b) = await session_with_signers(running)
    # A party may not draft or freeze; the mediator drafts and freezes.
    r = await a.call(
        "agreement", {"action": "draft", "case_type": "debt", "language": "zh-CN", "terms": TERMS}
    )
    assert r["error"]["code"] == "forbidden"
    r = await med.call(
        "agreement", {"action": "draft", "case_type": "debt", "language": "zh-CN", "terms": TERMS}
    )
    assert r["ok"], r
    assert running.service.state(state.id).view_for(a.pid)["agreement"]["terms"] == TERMS
    r = await med.call("agreement", {"action": "freeze"})
    assert r["ok"], r
    view = running.service.state(state.id).view_for(a.pid)["agreement"]
    assert view["status"] == "signing" and view["next"] == a.pid

    for s in (med, a, b):
        await s.enrol()
    # Not B's turn yet.
    b.phone.review(await b.pdf())
    r = await b.call("esign", {"action": "prepare"})
    assert r["error"]["code"] == "not_your_turn"

    receipts = [await a.sign(), await b.sign(), await med.sign()]
    assert [x["participant_id"] for x in receipts] == [a.pid, b.pid, med.pid]
    assert running.service.state(state.id).agreement_view()["status"] == "complete"
    r = await a.call("agreement", {"action": "seal"})
    assert r["error"]["code"] == "forbidden"
    r = await med.call("agreement", {"action": "seal"})
    assert r["ok"], r

    pdf = await a.pdf()  # every participant can download the sealed agreement
    sealed = running.service.state(state.id).agreement
    assert sealed["status"] == "sealed" and hashlib.sha256(pdf).hexdigest() == sealed["pdf_sha256"]
    types = [e.type for e in running.service.events(state.id)]
    for t in (
        "agreement.drafted",
        "agreement.frozen",
        "cert.issued",
        "signature.embedded",
        "agreement.sealed",
    ):
        assert t in types
    # Each signature names the actor who signed in the ledger.
    embedded = [e for e in running.service.events(state.id) if e.type == "signature.embedded"]
    assert [e.actor for e in embedded] == [a.pid, b.pid, med.pid]

    async with aiohttp.ClientSession() as http:
        url = f"{running.url}/api/sessions/{state.id}/evidence.zip"
        async with http.get(url, headers={"Authorization": f"Bearer {a.token}"}) as r:
            assert r.status == 403
        async with http.get(url, headers={"Authorization": f"Bearer {med.token}"}) as r:
            assert r.status == 200
            bundle = await r.read()
    names = zipfile.ZipFile(io.BytesIO(bundle)).namelist()
    assert any(n.endswith(".pdf") for n in names)
    (tmp_path / "evidence.zip").write_bytes(bundle)
    (tmp_path / "agreement.pdf").write_bytes(pdf)
    root = running.app[DESK].pki().root
    root_fp = hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).hexdigest()
    for name in ("agreement.pdf", "evidence.zip"):  # the real CLI, offline
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "server.py"),
            "verify",
            str(tmp_path / name),
            "--root",
            root_fp,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=ROOT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, out.decode()


async def test_edit_after_a_signature_makes_a_new_version(running):
    state, (med, a, b) = await session_with_signers(running)
    await med.call(
        "agreement",
        {"action": "draft", "case_type": "debt", "language": "en", "terms": ["Pay 100."]},
    )
    assert (await med.call("agreement", {"action": "freeze"}))["ok"]
    await a.enrol()
    await a.sign()
    r = await med.call(
        "agreement",
        {"action": "draft", "case_type": "debt", "language": "en", "terms": ["Pay 90."]},
    )
    assert r["ok"] and r["version"] == 2
    view = running.service.state(state.id).agreement_view()
    assert view["version"] == 2 and view["signed"] == [] and view["next"] == a.pid
    a.phone.review(await a.pdf())
    assert "agreement.superseded" in [e.type for e in running.service.events(state.id)]


async def test_bad_signing_input(running):
    state, (med, a, b) = await session_with_signers(running)
    r = await a.call("esign", {"action": "challenge"})
    assert r["error"]["code"] == "conflict"  # nothing frozen yet: nothing to sign
    await med.call(
        "agreement", {"action": "draft", "case_type": "marriage", "language": "en", "terms": ["x"]}
    )
    r = await med.call("agreement", {"action": "freeze"})
    assert r["error"]["code"] == "case_type_excluded"
    assert "agreement.frozen" not in [e.type for e in running.service.events(state.id)]
    await med.call(
        "agreement",
        {"action": "draft", "case_type": "debt", "language": "en", "terms": ["Pay 100."]},
    )
    assert (await med.call("agreement", {"action": "freeze"}))["ok"]
    await a.enrol()
    # Malformed messages, someone else's enrolment, a garbage signature: clear errors.
    assert (await a.call("esign", {"action": "sign", "reply": {"type": "esign.signature"}}))[
        "error"
    ]["code"] == "invalid_message"
    assert (await a.call("esign", {"action": "dance"}))["error"]["code"] == "invalid_message"
    r = await b.call("esign", {"action": "challenge"})
    stolen = b.phone.enrol_request(msgspec.convert(r["challenge"], EnrolChallenge))
    forged = {**msgspec.to_builtins(stolen), "participant_id": a.pid}
    assert (await b.call("esign", {"action": "enrol", "request": forged}))["error"][
        "code"
    ] == "forbidden"
    a.phone.review(await a.pdf())
    r = await a.call("esign", {"action": "prepare"})
    token = r["request"]["token"]
    r = await a.call(
        "esign",
        {
            "action": "sign",
            "reply": {"type": "esign.signature", "token": token, "signature_p1363": "AAAA"},
        },
    )
    assert r["error"]["code"] in ("malformed_signature", "bad_signature")
    before = running.service.state(state.id).agreement_view()
    assert before["signed"] == []
    # The phone vanishes mid-signature: its prepared revision is dropped, nothing signed is lost.
    await a.call("esign", {"action": "prepare"})
    await a.sio.disconnect()
    await asyncio.sleep(0.5)
    aborted = [e for e in running.service.events(state.id) if e.type == "signature.aborted"]
    assert aborted and aborted[-1].data["reason"] == "phone_gone"
    # B declines: recorded under B's name; this version can no longer complete or be sealed.
    r = await b.call("esign", {"action": "decline", "reason": "我不同意 I do not agree"})
    assert r["ok"], r
    declined = [e for e in running.service.events(state.id) if e.type == "signature.declined"]
    assert [e.actor for e in declined] == [b.pid]
    assert running.service.state(state.id).agreement_view()["status"] == "declined"
    assert (await med.call("agreement", {"action": "seal"}))["error"]["code"] == "conflict"
    assert (await med.call("agreement", {"action": "draft", "case_type": "debt"}))["error"][
        "code"
    ] == "invalid"


async def test_a_restart_mid_signing_keeps_what_was_signed(running, tmp_path):
    """The server stops after party A signed; a new server on the same data directory resumes
    the ceremony from the PDF (checked against the ledger), and the others finish."""
    from aiohttp import web

    from server import CONFIG, create_app
    from tests.integration.signaling.conftest import Running

    state, (med, a, b) = await session_with_signers(running)
    await med.call(
        "agreement", {"action": "draft", "case_type": "labour", "language": "zh-CN", "terms": TERMS}
    )
    assert (await med.call("agreement", {"action": "freeze"}))["ok"]
    await a.enrol()
    await a.sign()
    for c in running.clients:
        await c.disconnect()
    await running.runner.cleanup()

    app = create_app(running.app[CONFIG])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    again = Running(app, runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")
    try:
        view = again.service.state(state.id).agreement_view()
        assert view["signed"] == [a.pid] and view["next"] == b.pid
        people = []
        for old in (med, b):
            sio, _ = await again.client(old.token)
            again.service.execute(
                state.id, "system", decode_command({"type": "connect", "participant": old.pid})
            )
            people.append(Signer(again, state, old.pid, old.token, sio))
        med2, b2 = people
        for s in (b2, med2):
            await s.enrol()  # new key, new certificate: enrolments do not survive a restart
        await b2.sign()
        await med2.sign()
        assert (await med2.call("agreement", {"action": "seal"}))["ok"]
        assert again.service.state(state.id).agreement["status"] == "sealed"
    finally:
        for c in again.clients:
            if c.connected:
                await c.disconnect()
        await runner.cleanup()
        running.clients.clear()


async def test_a_tampered_agreement_file_is_refused_after_restart(running):
    from aiohttp import web

    from server import CONFIG, create_app
    from tests.integration.signaling.conftest import Running

    state, (med, a, b) = await session_with_signers(running)
    await med.call(
        "agreement",
        {"action": "draft", "case_type": "debt", "language": "en", "terms": ["Pay 100."]},
    )
    assert (await med.call("agreement", {"action": "freeze"}))["ok"]
    for c in running.clients:
        await c.disconnect()
    await running.runner.cleanup()
    config = running.app[CONFIG]
    pdf = next((config.data_dir / "agreements" / state.id).glob("*-v1.pdf"))
    data = bytearray(pdf.read_bytes())
    data[-10] ^= 1
    pdf.write_bytes(bytes(data))
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    again = Running(app, runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")
    try:
        sio, _ = await again.client(a.token)
        r = await sio.call(
            "esign", {"v": 1, "action": "challenge"}, namespace=NAMESPACE, timeout=20
        )
        assert r["error"]["code"] == "document_modified"
    finally:
        for c in again.clients:
            if c.connected:
                await c.disconnect()
        await runner.cleanup()
        running.clients.clear()
