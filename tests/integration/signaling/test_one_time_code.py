"""One-time identity codes through a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import socket

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from rooms.commands import decode_command
from server import DESK, Config, create_app
from signaling.namespace import NAMESPACE
from tests.integration.signaling.conftest import Running, until


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope.rcpt_tos, msg.get_content()))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def with_smtp(tmp_path):
    inbox = Inbox()
    port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    config = Config(
        data_dir=tmp_path / "data",
        demo=False,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        smtp_from="mediation@example.org",
    )
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    run = Running(app, runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")
    yield run, inbox
    for c in run.clients:
        if c.connected:
            await c.disconnect()
    await runner.cleanup()
    smtp.stop()


async def test_code_by_mail_marks_identity_and_counts_for_signing(with_smtp):
    running, inbox = with_smtp
    state = running.mediation(parties=1)
    m, tok_m = running.token(state, "mediator")
    a, tok_a = running.token(state, "party")
    msio, _ = await running.client(tok_m)
    asio, a_inbox = await running.client(tok_a)
    got_code = []
    asio.on("otp_sent", lambda data=None: got_code.append(data), namespace=NAMESPACE)
    running.service.execute(
        state.id, "system", decode_command({"type": "connect", "participant": a})
    )

    async def call(sio, **payload):
        return await sio.call("otp", {"v": 1, **payload}, namespace=NAMESPACE, timeout=15)

    # A party may not send codes; a bad address is refused; the host sends one.
    assert (await call(asio, action="send", participant=a, email="a@example.org"))["error"][
        "code"
    ] == "forbidden"
    assert (await call(msio, action="send", participant=a, email="not-an-address"))["error"][
        "code"
    ] == "invalid"
    assert (await call(msio, action="send", participant=a, email="zhangsan@example.org"))["ok"]
    await until(lambda: inbox.messages and got_code)
    rcpt, body = inbox.messages[-1]
    assert rcpt == ["zhangsan@example.org"]
    code = re.search(r"\b(\d{6})\b", body).group(1)

    wrong = f"{(int(code) + 1) % 10**6:06d}"
    assert (await call(asio, action="verify", code=wrong))["error"]["code"] == "wrong_code"
    assert (await call(asio, action="verify", code="12ab56"))["error"]["code"] == "invalid_message"
    assert (await call(asio, action="verify", code=code))["ok"]
    person = running.service.state(state.id).participants[a]
    assert person.identity_checked and person.identity_method == "one_time_code"
    checks = (
        running.app[DESK]
        .attestation(running.service.state(state.id), running.signer.verify(tok_a))
        .checks
    )
    assert "one_time_code" in checks
    # The code is single-use.
    assert (await call(asio, action="verify", code=code))["error"]["code"] == "no_code"


async def test_five_wrong_codes_lock_it(with_smtp):
    running, inbox = with_smtp
    state = running.mediation(parties=1)
    _, tok_m = running.token(state, "mediator")
    a, tok_a = running.token(state, "party")
    msio, _ = await running.client(tok_m)
    asio, _ = await running.client(tok_a)
    assert (
        await msio.call(
            "otp",
            {"v": 1, "action": "send", "participant": a, "email": "x@example.org"},
            namespace=NAMESPACE,
            timeout=15,
        )
    )["ok"]
    await until(lambda: inbox.messages)
    code = re.search(r"\b(\d{6})\b", inbox.messages[-1][1]).group(1)
    wrong = f"{(int(code) + 7) % 10**6:06d}"
    codes = []
    for _ in range(5):
        r = await asio.call(
            "otp", {"v": 1, "action": "verify", "code": wrong}, namespace=NAMESPACE, timeout=5
        )
        codes.append(r["error"]["code"])
    assert codes == ["wrong_code"] * 4 + ["locked"]
    r = await asio.call(
        "otp", {"v": 1, "action": "verify", "code": code}, namespace=NAMESPACE, timeout=5
    )
    assert r["error"]["code"] == "no_code"
    assert not running.service.state(state.id).participants[a].identity_checked
    await asyncio.sleep(0)


async def test_without_smtp_codes_are_unavailable(running):
    state = running.mediation(parties=1)
    _, tok_m = running.token(state, "mediator")
    msio, _ = await running.client(tok_m)
    r = await msio.call(
        "otp",
        {"v": 1, "action": "send", "participant": "p-00000000", "email": "a@b.cn"},
        namespace=NAMESPACE,
        timeout=5,
    )
    assert r["error"]["code"] == "unavailable"
