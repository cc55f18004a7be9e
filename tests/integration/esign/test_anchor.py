"""An anchor the server does not control: after the seal each party receives the signed PDF and
its check code by e-mail (a real SMTP server on loopback), and can verify the attachment later
offline against the root fingerprint the message and the invitation carry."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import re
import sys

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from server import DESK, Config, create_app
from signaling.otp import SmtpNotifier
from tests.integration.signaling.conftest import Running, until
from tests.integration.signaling.test_agreement_session import TERMS, session_with_signers
from tests.integration.signaling.test_one_time_code import free_port
from tests.support.server_proc import ROOT

pytestmark = pytest.mark.slow


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope.rcpt_tos, msg))
        return "250 OK"


@pytest.fixture
async def mailed(tmp_path):
    inbox, port = Inbox(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    app = create_app(Config(data_dir=tmp_path / "data", demo=False, log_format="text"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    run = Running(app, runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")
    yield run, inbox, port
    for c in run.clients:
        if c.connected:
            await c.disconnect()
    await runner.cleanup()
    smtp.stop()


async def sealed_session(running, addresses: dict):
    """Signed and sealed in a live session; the mediator typed both parties' addresses."""
    state, (med, a, b) = await session_with_signers(running)
    addresses.update({a.pid: "zhang@example.org", b.pid: "li@example.org"})
    draft = {"action": "draft", "case_type": "debt", "language": "zh-CN", "terms": TERMS}
    assert (await med.call("agreement", draft))["ok"]
    assert (await med.call("agreement", {"action": "freeze"}))["ok"]
    for signer in (a, b, med):
        await signer.enrol()
    for signer in (a, b, med):
        await signer.sign()
    reply = await med.call("agreement", {"action": "seal"})
    assert reply["ok"], reply
    return state, (med, a, b), reply


async def test_each_party_receives_the_sealed_pdf_and_can_verify_it(mailed, tmp_path):
    running, inbox, port = mailed
    desk = running.app[DESK]
    addresses = {}
    desk.notifier = SmtpNotifier("127.0.0.1", port, sender="m@example.org", starttls=False)
    desk.contact = lambda session, pid: addresses.get(pid)
    state, (med, a, b), reply = await sealed_session(running, addresses)
    assert sorted(reply["delivered"]) == sorted([a.pid, b.pid])
    await until(lambda: len(inbox.messages) == 2)
    sealed = await a.pdf()
    root_fp = hashlib.sha256(desk.pki().root.public_bytes(_der())).hexdigest()
    for rcpt, msg in inbox.messages:
        assert rcpt[0] in ("zhang@example.org", "li@example.org")
        text = msg.get_body(("plain",)).get_content()
        (part,) = [p for p in msg.iter_attachments() if p.get_filename() == "agreement.pdf"]
        attached = part.get_content()
        assert attached == sealed
        assert (
            re.search(r"Check code \(SHA-256\): ([0-9a-f]{64})", text).group(1)
            == hashlib.sha256(attached).hexdigest()
        )
        assert f"根证书指纹：{root_fp}" in text and "/verify" in text
    path = tmp_path / "attached.pdf"
    path.write_bytes(attached)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "server.py"),
        "verify",
        str(path),
        "--root",
        root_fp,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()


def _der():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def test_the_server_wires_the_anchor_to_its_configured_notifier(tmp_path):
    """With SMTP configured, the desk delivers the sealed PDF through the same notifier as the
    one-time codes, to the address the mediator typed for each party; without it, nothing."""
    plain = create_app(Config(data_dir=tmp_path / "a", demo=False, log_format="text"))
    assert plain[DESK].notifier is None
    app = create_app(
        Config(
            data_dir=tmp_path / "b",
            demo=False,
            log_format="text",
            smtp_host="127.0.0.1",
            smtp_port=free_port(),
            smtp_starttls=False,
        )
    )
    desk = app[DESK]
    assert isinstance(desk.notifier, SmtpNotifier)
    assert desk.contact("s-unknown", "p-unknown") is None
