"""Phone numbers, one-time codes for them, and sliding-window limits (pure, clock passed in).

A citizen joins the queue only with a number they proved to hold: a 6-digit code goes to the
number (through the notifier), kept as an HMAC only, valid 10 minutes, 5 tries. Sending is
limited per number and per client address, so the desk cannot be used to flood a phone, and the
queue cannot be flooded from one phone or one address.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import deque
from dataclasses import dataclass

from desk.errors import DeskError

CODE_TTL = 600.0
MAX_ATTEMPTS = 5
_MOBILE_CN = re.compile(r"^1[3-9]\d{9}$")
_INTERNATIONAL = re.compile(r"^\+[1-9]\d{7,14}$")


def normalise_phone(text: object) -> str:
    """A mainland mobile number (11 digits, optional +86) or an international one (+…)."""
    if not isinstance(text, str) or len(text) > 32:
        raise DeskError("invalid", "phone: a mobile number such as 13800138000")
    raw = re.sub(r"[\s\-()]", "", text)
    if raw.startswith("+86"):
        raw = raw[3:]
    if _MOBILE_CN.match(raw) or _INTERNATIONAL.match(raw):
        return raw
    raise DeskError("invalid", "phone: a mobile number such as 13800138000")


class Window:
    """At most ``limit`` events per key within ``seconds``."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit, self.seconds = limit, seconds
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str, now: float) -> bool:
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.seconds:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        if len(self._hits) > 10000:  # forget idle keys; a flood of keys costs bounded memory
            for k in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.seconds]:
                del self._hits[k]
        return True


@dataclass
class _Pending:
    digest: bytes
    expires: float
    attempts: int = 0


class PhoneCodes:
    """Codes for phone numbers; ``issue`` returns the code for the caller to send."""

    def __init__(self, *, per_phone: int = 3, per_address: int = 30, window: float = 900.0):
        self._key = secrets.token_bytes(32)
        self._pending: dict[str, _Pending] = {}
        self._per_phone = Window(per_phone, window)
        self._per_address = Window(per_address, window)

    def _digest(self, phone: str, code: str) -> bytes:
        return hmac.new(self._key, f"{phone}/{code}".encode(), hashlib.sha256).digest()

    def issue(self, phone: str, address: str, now: float) -> str:
        if not self._per_address.allow(address, now) or not self._per_phone.allow(phone, now):
            raise DeskError("throttled", "too many codes requested; try again in 15 minutes")
        code = f"{secrets.randbelow(10**6):06d}"
        self._pending[phone] = _Pending(self._digest(phone, code), now + CODE_TTL)
        return code

    def verify(self, phone: str, code: object, now: float) -> None:
        pending = self._pending.get(phone)
        if pending is None or pending.expires < now:
            self._pending.pop(phone, None)
            raise DeskError("no_code", "no valid code was sent to this number; ask for one")
        pending.attempts += 1
        given = str(code).strip() if isinstance(code, str | int) else ""
        if not hmac.compare_digest(pending.digest, self._digest(phone, given)):
            if pending.attempts >= MAX_ATTEMPTS:
                del self._pending[phone]
                raise DeskError("locked", "too many wrong codes; ask for a new one")
            raise DeskError("wrong_code", "that code is not right")
        del self._pending[phone]
