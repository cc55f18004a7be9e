"""Messages to a citizen's phone: the one-time code and the consultation's summary.

``Notifier`` (signaling/otp.py) is the interface: ``send(to, subject, text)``. ``SmsSpool`` is the
local implementation: each message is one file in a spool directory (written under a temporary
name, then renamed, mode 0600), the hand-over that SMS gateway daemons with a files back end
read and delete. ``ContactNotifier`` routes a phone number to the SMS notifier and an e-mail
address to the e-mail one (``SmtpNotifier``), so a hall plugs in its gateway without code here.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from signaling.otp import EMAIL, Notifier


@dataclass
class SmsSpool:
    directory: Path

    async def send(self, to: str, subject: str, text: str) -> None:
        await asyncio.to_thread(self._write, to, subject, text)

    def _write(self, to: str, subject: str, text: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time():.6f}-{secrets.token_hex(4)}"
        tmp = self.directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"To: {to}\nSubject: {subject}\n\n{text}")
        tmp.replace(self.directory / f"{name}.sms")

    def messages(self) -> list[tuple[str, str, str]]:
        """(to, subject, text) of every message in the spool, oldest first (tests, operators)."""
        out = []
        for path in sorted(self.directory.glob("*.sms")) if self.directory.exists() else []:
            head, _, text = path.read_text(encoding="utf-8").partition("\n\n")
            lines = dict(line.split(": ", 1) for line in head.splitlines())
            out.append((lines["To"], lines["Subject"], text))
        return out


@dataclass
class ContactNotifier:
    sms: Notifier
    email: Notifier | None = None

    async def send(self, to: str, subject: str, text: str) -> None:
        if EMAIL.match(to):
            if self.email is None:
                raise RuntimeError("no e-mail notifier configured")
            await self.email.send(to, subject, text)
        else:
            await self.sms.send(to, subject, text)
