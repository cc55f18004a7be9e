"""One-time codes: an identity check for signing that does not depend on the video.

The mediator sends a 6-digit code to the contact in the case file (the address is typed by the
mediator, never by the phone); the party types it on the phone; the server compares and, on
success, records ``participant.identity_checked`` with method ``one_time_code``. Codes are kept
hashed, expire after 10 minutes and allow 5 attempts.

``Notifier`` is the interface; ``SmtpNotifier`` is the real implementation (the standard
library's smtplib, run off the event loop). SMS gateways plug in behind the same interface.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import smtplib
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

CODE_TTL = 600.0
MAX_ATTEMPTS = 5
EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}$")


class OtpError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Notifier(Protocol):
    async def send(self, to: str, subject: str, text: str) -> None: ...


# (file name, MIME type, bytes): e.g. the sealed agreement sent to each party.
Attachment = tuple[str, str, bytes]


@dataclass
class SmtpNotifier:
    host: str
    port: int = 587
    sender: str = "parley@localhost"
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    timeout: float = 15.0

    async def send(
        self, to: str, subject: str, text: str, attachments: tuple[Attachment, ...] = ()
    ) -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.sender, to, subject
        msg.set_content(text)
        for name, mime, data in attachments:
            maintype, _, subtype = mime.partition("/")
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
        await asyncio.to_thread(self._deliver, msg)

    def _deliver(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(msg)


@dataclass
class _Pending:
    digest: bytes
    expires: float
    attempts: int = 0


class OneTimeCodes:
    def __init__(self, notifier: Notifier | None, *, clock=time.time) -> None:
        self._notifier = notifier
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._contacts: dict[tuple[str, str], str] = {}

    def contact(self, session: str, pid: str) -> str | None:
        """The address the mediator sent this participant's code to (the case file's), for
        the sealed agreement's delivery (signaling.agreements.AgreementDesk.deliver_sealed)."""
        return self._contacts.get((session, pid))

    @property
    def available(self) -> bool:
        return self._notifier is not None

    def _digest(self, session: str, pid: str, code: str) -> bytes:
        return hmac.new(self._key, f"{session}/{pid}/{code}".encode(), hashlib.sha256).digest()

    async def send(self, session: str, pid: str, name: str, to: str, title: str) -> None:
        if self._notifier is None:
            raise OtpError("unavailable", "no notifier (SMTP) is configured on this server")
        if not EMAIL.match(to or ""):
            raise OtpError("invalid", "that is not an e-mail address")
        code = f"{secrets.randbelow(10**6):06d}"
        text = (
            f"{name}，您好：\n您参加的调解（{title}）的身份验证码是 {code}，10分钟内有效。"
            "请只在调解页面输入，不要告诉任何人。\n\n"
            f'Hello {name},\nyour identity code for the mediation "{title}" is {code}. '
            "It is valid for 10 minutes. Enter it only on the mediation page; tell nobody.\n"
        )
        await self._notifier.send(to, "调解身份验证码 Mediation identity code", text)
        self._contacts[(session, pid)] = to
        self._pending[(session, pid)] = _Pending(
            self._digest(session, pid, code), self._clock() + CODE_TTL
        )

    def verify(self, session: str, pid: str, code: str) -> None:
        pending = self._pending.get((session, pid))
        if pending is None or pending.expires < self._clock():
            self._pending.pop((session, pid), None)
            raise OtpError("no_code", "no valid code was sent to you; ask the mediator for one")
        pending.attempts += 1
        if not hmac.compare_digest(pending.digest, self._digest(session, pid, str(code).strip())):
            if pending.attempts >= MAX_ATTEMPTS:
                del self._pending[(session, pid)]
                raise OtpError("locked", "too many wrong codes; ask the mediator for a new one")
            raise OtpError("wrong_code", "that code is not right")
        del self._pending[(session, pid)]
