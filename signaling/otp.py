"""One-time codes: an identity check for signing that does not depend on the video.

The mediator sends a 6-digit code to the contact in the case file (the address is typed by the
mediator, never by the phone); the party types it on the phone; the server compares and, on
success, records ``participant.identity_checked`` with method ``one_time_code``. Codes are kept
hashed, expire after 10 minutes and allow 5 attempts (``desk.codes``: the same rules and the same
stores as the phone codes). With a ``cluster.codes.RedisCodeStore`` and the HMAC key derived from
the server secret, a code sent by one node verifies on the node that took the session over, and
the address it went to is still known there for the sealed agreement (docs/scaling.md, "Codes
on Redis").

``Notifier`` is the interface; ``SmtpNotifier`` is the real implementation (the standard
library's smtplib, run off the event loop). SMS gateways plug in behind the same interface.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import smtplib
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from desk.codes import CODE_TTL, MAX_ATTEMPTS, CodeStore, MemoryCodeStore, StoreUnavailable

log = logging.getLogger("parley.otp")
CONTACT_TTL = 30 * 86400.0  # the address is kept for the sealed agreement, not for ever
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


class OneTimeCodes:
    """The rules; ``store`` keeps the records (memory by default), ``key`` is the HMAC key
    (``desk.codes.derive_key(secret, "otp")``; random, this process only, if not given)."""

    def __init__(
        self,
        notifier: Notifier | None,
        *,
        clock=time.time,
        store: CodeStore | None = None,
        key: bytes | None = None,
    ) -> None:
        self._notifier = notifier
        self._clock = clock
        self._key = key if key is not None else secrets.token_bytes(32)
        self._store = store if store is not None else MemoryCodeStore()

    def contact(self, session: str, pid: str) -> str | None:
        """The address the mediator sent this participant's code to (the case file's), for
        the sealed agreement's delivery (signaling.agreements.AgreementDesk.deliver_sealed).
        None when the store is away: the agreement stays sealed and downloadable."""
        try:
            return self._store.recall(f"otp:contact:{session}/{pid}", self._clock())
        except StoreUnavailable:
            log.warning("contact of %s in %s not read: the code store is away", pid, session)
            return None

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
        now = self._clock()
        try:
            self._store.remember(f"otp:contact:{session}/{pid}", to, CONTACT_TTL, now)
            self._store.put(
                f"otp:code:{session}/{pid}", self._digest(session, pid, code), now + CODE_TTL, now
            )
        except StoreUnavailable:
            raise OtpError(
                "unavailable", "the code was sent but cannot be kept; send another"
            ) from None

    def verify(self, session: str, pid: str, code: str) -> None:
        digest = self._digest(session, pid, str(code).strip())
        try:
            outcome = self._store.attempt(
                f"otp:code:{session}/{pid}", digest, self._clock(), MAX_ATTEMPTS
            )
        except StoreUnavailable:
            raise OtpError("unavailable", "the code cannot be checked now; try again") from None
        if outcome == "no_code":
            raise OtpError("no_code", "no valid code was sent to you; ask the mediator for one")
        if outcome == "locked":
            raise OtpError("locked", "too many wrong codes; ask the mediator for a new one")
        if outcome == "wrong_code":
            raise OtpError("wrong_code", "that code is not right")
