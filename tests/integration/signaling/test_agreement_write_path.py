"""One write path for agreements: the ledger decides, then the PDF is promoted, under the
session service's lock. A session ended while a signature is being embedded leaves the PDF the
ledger recorded; a crash between the append and the promotion is finished at the restart; a
party without a side cannot be put on an agreement."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import threading

import msgspec
import pytest
from aiohttp import web

from esign import pdfsign
from esign.protocol import SignatureRequest
from rooms.commands import decode_command
from rooms.errors import CommandError
from rooms.service import ParticipantSpec
from server import CONFIG, DESK, Config, create_app
from tests.integration.signaling.conftest import Running
from tests.integration.signaling.test_agreement_session import (
    TERMS,
    Signer,
    session_with_signers,
)
from tests.support.server_proc import ROOT

pytestmark = pytest.mark.slow


def pdf_files(data_dir, session_id):
    return sorted(p.name for p in (data_dir / "agreements" / session_id).iterdir())


async def draft_and_freeze(med):
    r = await med.call(
        "agreement", {"action": "draft", "case_type": "debt", "language": "zh-CN", "terms": TERMS}
    )
    assert r["ok"], r
    r = await med.call("agreement", {"action": "freeze"})
    assert r["ok"], r


async def test_session_ended_while_a_signature_is_embedded(running):
    """The mediator ends the session while party A's signature is being embedded (the
    timestamp request is where it happens): the step is refused and the PDF on disk stays the
    revision the ledger recorded — before, the desk had already replaced the file."""
    state, (med, a, b) = await session_with_signers(running)
    await draft_and_freeze(med)
    await a.enrol()
    a.phone.review(await a.pdf())
    r = await a.call("esign", {"action": "prepare"})
    assert r["ok"], r
    reply = a.phone.sign(msgspec.convert(r["request"], SignatureRequest))

    loop, service = asyncio.get_running_loop(), running.service
    stamper = running.app[DESK]._timestamper
    original = stamper.async_request_tsa_response
    ended = threading.Event()

    def end_session() -> None:
        service.execute(state.id, med.pid, decode_command({"type": "end_session"}))
        ended.set()

    async def timestamp_after_the_session_ended(req):
        if threading.current_thread() is threading.main_thread():
            end_session()  # the step runs on the server's loop: end it right here
        else:  # the step runs off the loop: the end comes from the loop meanwhile
            loop.call_soon_threadsafe(end_session)
            assert ended.wait(10)
        return await original(req)

    stamper.async_request_tsa_response = timestamp_after_the_session_ended
    desk, inv = running.app[DESK], running.signer.verify(a.token)
    body = {"reply": msgspec.to_builtins(reply)}
    try:  # the desk itself: the session's end disconnects A's socket
        with pytest.raises(CommandError) as refused:
            await desk.esign(state.id, a.pid, inv, "sign", body)
    finally:
        del stamper.async_request_tsa_response
    assert ended.is_set()
    assert refused.value.code == "ended"
    recorded = service.state(state.id).agreement
    assert recorded["signed"] == []
    data_dir = running.app[CONFIG].data_dir
    assert pdf_files(data_dir, state.id) == ["T-1-v1.pdf"]  # nothing staged is left behind
    on_disk = (data_dir / "agreements" / state.id / "T-1-v1.pdf").read_bytes()
    assert hashlib.sha256(on_disk).hexdigest() == recorded["pdf_sha256"]
    assert hashlib.sha256(await desk.pdf(state.id)).hexdigest() == recorded["pdf_sha256"]


async def test_a_party_without_a_side_is_refused_at_freeze(running):
    """A party whose side is neither A nor B used to become a respondent silently (and one
    without a side an applicant)."""
    specs = [
        ParticipantSpec(name="Mediator M", role="mediator"),
        ParticipantSpec(name="Party A", role="party", side="A"),
        ParticipantSpec(name="Party B", role="party", side="B"),
        ParticipantSpec(name="Party X", role="party", side="C"),
    ]
    state = running.service.create_session(
        "mediation", actor="staff:test", title="T", case_number="T-2", participants=specs
    )
    med_id, med_tok = running.token(state, "mediator", staff="wang")
    sio, _ = await running.client(med_tok)
    med = Signer(running, state, med_id, med_tok, sio)
    r = await med.call(
        "agreement", {"action": "draft", "case_type": "debt", "language": "en", "terms": ["x"]}
    )
    assert r["ok"], r
    before = len(running.service.events(state.id))
    r = await med.call("agreement", {"action": "freeze"})
    assert r.get("error", {}).get("code") == "invalid", r
    assert "side" in r["error"]["message"]
    assert len(running.service.events(state.id)) == before
    assert not (running.app[CONFIG].data_dir / "agreements" / state.id).exists()


# A real server process (same composition root, no HTTP) that records party A's signature and
# is killed with SIGKILL at the given point: when the ledger is about to append the signature
# ("append"), or between the append and the promotion of the signed PDF ("promote").
CHILD = r"""
import asyncio, json, os, signal, sys
from pathlib import Path
import msgspec
from esign import pdfstore
from esign.phone import PythonPhone
from esign.protocol import EnrolChallenge, Enrolment, SignatureRequest
from rooms.commands import decode_command
from rooms.service import ParticipantSpec
from server import DESK, SERVICE, SIGNER, Config, create_app

async def main(data_dir):
    app = create_app(Config(data_dir=Path(data_dir), demo=False, log_format="text"))
    service, desk, signer = app[SERVICE], app[DESK], app[SIGNER]
    specs = [ParticipantSpec("Mediator M", "mediator"), ParticipantSpec("Party A", "party", "A"),
             ParticipantSpec("Party B", "party", "B")]
    state = service.create_session("mediation", actor="staff:test", title="Crash",
                                   case_number="T-9", participants=specs)
    ids = {p.name: p.id for p in state.participants.values()}
    med, a, b = ids["Mediator M"], ids["Party A"], ids["Party B"]
    run = lambda actor, **c: service.execute(state.id, actor, decode_command(c))
    tokens = {pid: signer.issue(state.id, pid, state.participants[pid].role, ttl=600,
                                **({"staff": "wang"} if pid == med else {}))
              for pid in (med, a, b)}
    for pid in (med, a, b):
        run("system", type="connect", participant=pid)
    for pid in (a, b):
        for topic in ("online_mediation", "session_rules"):
            run(pid, type="record_consent", topic=topic, given=True)
        run(med, type="admit", participant=pid)
        run(med, type="mark_identity_checked", participant=pid, method="video")
    raw = {"case_type": "debt", "language": "en", "terms": ["Pay 100."]}
    assert (await desk.draft(state.id, med, raw))["ok"]
    assert (await desk.freeze(state.id, med))["ok"]
    inv, phone = signer.verify(tokens[a]), PythonPhone(a)
    r = await desk.esign(state.id, a, inv, "challenge", {})
    req = phone.enrol_request(msgspec.convert(r["challenge"], EnrolChallenge))
    r = await desk.esign(state.id, a, inv, "enrol", {"request": msgspec.to_builtins(req)})
    phone.accept(msgspec.convert(r["enrolment"], Enrolment))
    phone.review(await desk.pdf(state.id))
    r = await desk.esign(state.id, a, inv, "prepare", {})
    reply = phone.sign(msgspec.convert(r["request"], SignatureRequest))
    print(json.dumps({"session": state.id, "ids": [med, a, b], "tokens": tokens}), flush=True)
    kill = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
    if sys.argv[2] == "promote":
        pdfstore.promote = kill
    else:
        append = service._store.append
        service._store.append = lambda sid, drafts, **kw: (
            kill() if any(d.type == "signature.embedded" for d in drafts)
            else append(sid, drafts, **kw))
    await desk.esign(state.id, a, inv, "sign", {"reply": msgspec.to_builtins(reply)})
    print("not killed", flush=True)

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.parametrize("point", ["append", "promote"])
async def test_a_crash_in_a_signing_step_is_resolved_at_restart(tmp_path, point):
    """Killed before the append, the step never happened (A signs again); killed after it,
    the ledger decided and the restart promotes the staged PDF. Before, the desk replaced the
    PDF first: a crash before the append left a file the ledger did not name, and the
    restart answered ``document_modified``."""
    data_dir = tmp_path / "data"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(data_dir),
        point,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), 180)
    assert child.returncode == -signal.SIGKILL, (out.decode(), err.decode()[-2000:])
    made = msgspec.json.decode(out.splitlines()[0])
    sid, (med_id, a_id, b_id) = made["session"], made["ids"]
    store = data_dir / "agreements" / sid

    app = create_app(Config(data_dir=data_dir, demo=False, log_format="text"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    again = Running(app, runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")
    try:
        state = again.service.state(sid)
        signed_before = [a_id] if point == "promote" else []
        assert state.agreement["signed"] == signed_before  # what the ledger decided
        on_disk = (store / "T-9-v1.pdf").read_bytes()
        if point == "promote":  # the signed revision is staged, not yet current
            assert len([n for n in os.listdir(store) if n.endswith(".staged")]) == 1
            assert hashlib.sha256(on_disk).hexdigest() != state.agreement["pdf_sha256"]
        people = []
        for pid in (a_id, b_id, med_id):
            token = made["tokens"][pid]
            sio, _ = await again.client(token)
            again.service.execute(
                sid, "system", decode_command({"type": "connect", "participant": pid})
            )
            people.append(Signer(again, state, pid, token, sio))
        a, b, med = people
        await b.enrol()  # the first open resolves the staged file; no document_modified
        assert pdf_files(data_dir, sid) == ["T-9-v1.pdf"]
        for signer in (a, b, med):
            if signer.pid not in signed_before:
                await signer.enrol()
                await signer.sign()
        assert (await med.call("agreement", {"action": "seal"}))["ok"]
        pdf = await b.pdf()
        assert hashlib.sha256(pdf).hexdigest() == again.service.state(sid).agreement["pdf_sha256"]
        desk = app[DESK]
        fields = [f for _, f in desk._ceremonies[sid].order]
        await pdfsign.check_document(
            pdf, desk.pki().root, fields, desk._ceremonies[sid].clock(), True
        )
    finally:
        for c in again.clients:
            if c.connected:
                await c.disconnect()
        await runner.cleanup()
