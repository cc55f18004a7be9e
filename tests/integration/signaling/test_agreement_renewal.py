"""The archive timestamp job on a real server's ledger: an agreement sealed in a live
session gets an archive timestamp years later (simulated clock), recorded in the ledger
after the session ended, and the renewed file verifies at that time."""

from __future__ import annotations

import datetime as dt
import hashlib
import io

import pytest
from cryptography.hazmat.primitives import serialization

from esign.verify import verify
from rooms.commands import decode_command
from server import DESK
from signaling.renewal import renew_sealed
from tests.integration.signaling.test_agreement_session import TERMS, session_with_signers

pytestmark = pytest.mark.slow


async def _sealed_session(running):
    state, (med, a, b) = await session_with_signers(running)
    draft = {"action": "draft", "case_type": "debt", "language": "zh-CN", "terms": TERMS}
    assert (await med.call("agreement", draft))["ok"]
    assert (await med.call("agreement", {"action": "freeze"}))["ok"]
    for s in (med, a, b):
        await s.enrol()
    for s in (a, b, med):
        await s.sign()
    assert (await med.call("agreement", {"action": "seal"}))["ok"]
    running.service.execute(state.id, med.pid, decode_command({"type": "end_session"}))
    return state, med


async def test_renewal_is_recorded_after_the_session_ended(running, tmp_path):
    state, med = await _sealed_session(running)
    desk = running.app[DESK]
    data_dir = desk.data_dir
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2 * 365 + 1)
    before = running.service.state(state.id).agreement["pdf_sha256"]

    outcomes = await renew_sealed(running.service, data_dir, desk.pki(), clock=lambda: later)
    assert [(o.session_id, o.result) for o in outcomes] == [(state.id, "renewed")]
    events = running.service.events(state.id)
    assert [e.type for e in events][-2:] == ["session.ended", "agreement.renewed"]
    renewed = events[-1].data
    assert renewed["previous_pdf_sha256"] == before and events[-1].actor == "system"
    pdf = await med.pdf()
    assert hashlib.sha256(pdf).hexdigest() == renewed["pdf_sha256"]
    assert running.service.state(state.id).agreement["pdf_sha256"] == renewed["pdf_sha256"]

    target = tmp_path / "renewed.pdf"
    target.write_bytes(pdf)
    root = hashlib.sha256(desk.pki().root.public_bytes(serialization.Encoding.DER)).hexdigest()
    out = io.StringIO()
    assert await verify(str(target), root, later + dt.timedelta(days=1), out) == 0, out.getvalue()

    again = await renew_sealed(running.service, data_dir, desk.pki(), clock=lambda: later)
    assert [o.result for o in again] == ["not_due"]


async def test_a_tampered_file_is_not_renewed(running):
    state, _ = await _sealed_session(running)
    desk = running.app[DESK]
    path = next((desk.data_dir / "agreements" / state.id).glob("*-v1.pdf"))
    path.write_bytes(path.read_bytes() + b"\n%tampered\n")
    count = len(running.service.events(state.id))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3 * 365)
    outcomes = await renew_sealed(running.service, desk.data_dir, desk.pki(), clock=lambda: later)
    assert [o.result for o in outcomes] == ["failed"]
    assert len(running.service.events(state.id)) == count
