"""Phone numbers, one-time codes for them, and sliding-window limits (clock passed in).

A citizen joins the queue only with a number they proved to hold: a 6-digit code goes to the
number (through the notifier), kept as an HMAC only, valid 10 minutes, 5 tries. Sending is
limited per number and per client address, so the desk cannot be used to flood a phone, and the
queue cannot be flooded from one phone or one address.

The rules (TTL, tries, limits, HMAC only, the error codes) are here, once; the records are kept
by a ``CodeStore``: ``MemoryCodeStore`` (this process's memory, the embedded default) or
``cluster.codes.RedisCodeStore`` (Redis, when clustered: a code issued on one node is accepted
on another and a window counts the requests every node saw; docs/scaling.md, "Codes on
Redis"). ``signaling.otp.OneTimeCodes`` keeps the mediation's identity codes in the same
stores. The HMAC key comes from the server secret (``derive_key``), the same on every node.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections import deque
from dataclasses import dataclass

from desk.errors import DeskError

CODE_TTL = 600.0
MAX_ATTEMPTS = 5
_MOBILE_CN = re.compile(r"^1[3-9]\d{9}$")
_INTERNATIONAL = re.compile(r"^\+[1-9]\d{7,14}$")
_MEMORY_KEYS = 10000  # past this many, a memory store forgets what is over (bounded memory)


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


def derive_key(secret: bytes, label: str) -> bytes:
    """The key of one purpose (``label``) from the server secret. Every node of a cluster has
    the secret (invitation tokens verify on any node), so a code hashed on one node is checked
    on another; the label keeps purposes apart (a desk code is no family code)."""
    return hmac.new(secret, b"parley/codes/" + label.encode(), hashlib.sha256).digest()


class StoreUnavailable(Exception):
    """The records could not be reached (Redis away); the caller answers ``unavailable``."""


class CodeStore:
    """Where codes, windows and contacts are kept. Each method is one atomic step, so two
    nodes (or threads) acting on one key at once count every attempt and every hit. Keys are
    the callers' (``<purpose>:<what>:<id>``); values are digests, counts and times only,
    except ``remember`` (an address a code went to, the contact a family sign-in acts for)."""

    def put(self, key: str, digest: bytes, expires: float, now: float) -> None:
        """A new code for ``key`` (replacing any), valid until ``expires``, 0 attempts."""
        raise NotImplementedError

    def attempt(self, key: str, digest: bytes, now: float, max_attempts: int) -> str:
        """One try at ``key``'s code: ``ok`` (it matched and is used up), ``wrong_code``,
        ``locked`` (a wrong try that was the last one allowed: the code is gone), or
        ``no_code`` (none was issued, it expired, or it was used up)."""
        raise NotImplementedError

    def hit(self, key: str, limit: int, seconds: float, now: float) -> bool:
        """Count one event for ``key`` unless ``limit`` were counted in the last ``seconds``
        (a sliding window); whether it was counted."""
        raise NotImplementedError

    def remember(self, key: str, value: str, seconds: float, now: float) -> None:
        raise NotImplementedError

    def recall(self, key: str, now: float) -> str | None:
        """What ``remember`` kept under ``key``, until its ``seconds`` are over (by ``now``)."""
        raise NotImplementedError

    def forget(self, key: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass
class _Pending:
    digest: bytes
    expires: float
    attempts: int = 0


class MemoryCodeStore(CodeStore):
    """This process's memory: one node, forgotten on restart (the embedded default)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the event loop only, but tests race it from threads
        self._pending: dict[str, _Pending] = {}
        self._hits: dict[str, tuple[float, deque[float]]] = {}  # key -> (seconds, times)
        self._values: dict[str, tuple[str, float]] = {}

    def put(self, key: str, digest: bytes, expires: float, now: float) -> None:
        with self._lock:
            if len(self._pending) > _MEMORY_KEYS:
                self._pending = {k: p for k, p in self._pending.items() if p.expires >= now}
            self._pending[key] = _Pending(digest, expires)

    def attempt(self, key: str, digest: bytes, now: float, max_attempts: int) -> str:
        with self._lock:
            pending = self._pending.get(key)
            if pending is None or pending.expires < now:
                self._pending.pop(key, None)
                return "no_code"
            pending.attempts += 1
            if hmac.compare_digest(pending.digest, digest):
                del self._pending[key]
                return "ok"
            if pending.attempts >= max_attempts:
                del self._pending[key]
                return "locked"
            return "wrong_code"

    def hit(self, key: str, limit: int, seconds: float, now: float) -> bool:
        with self._lock:
            hits = self._hits.setdefault(key, (seconds, deque()))[1]
            while hits and hits[0] <= now - seconds:
                hits.popleft()
            if len(hits) >= limit:
                return False
            hits.append(now)
            if len(self._hits) > _MEMORY_KEYS:  # a flood of keys costs bounded memory
                for k in [k for k, (s, v) in self._hits.items() if not v or v[-1] <= now - s]:
                    del self._hits[k]
            return True

    def remember(self, key: str, value: str, seconds: float, now: float) -> None:
        with self._lock:
            if len(self._values) > _MEMORY_KEYS:
                self._values = {k: v for k, v in self._values.items() if v[1] >= now}
            self._values[key] = (value, now + seconds)

    def recall(self, key: str, now: float) -> str | None:
        with self._lock:
            held = self._values.get(key)
            return held[0] if held is not None and held[1] >= now else None

    def forget(self, key: str) -> None:
        with self._lock:
            self._values.pop(key, None)


class Window:
    """At most ``limit`` events per key within ``seconds``; ``name`` keeps windows apart in a
    shared store. ``allow`` raises ``DeskError("unavailable")`` when the store is away."""

    def __init__(
        self, limit: int, seconds: float, *, store: CodeStore | None = None, name: str = "window"
    ) -> None:
        self.limit, self.seconds, self.name = limit, seconds, name
        self._store = store if store is not None else MemoryCodeStore()

    def allow(self, key: str, now: float) -> bool:
        try:
            return self._store.hit(f"{self.name}:{key}", self.limit, self.seconds, now)
        except StoreUnavailable:
            raise DeskError("unavailable", "the server cannot check this now; try again") from None


class PhoneCodes:
    """Codes for phone numbers (or e-mail contacts); ``issue`` returns the code for the caller
    to send. ``name`` is the purpose (``desk``, ``family``): its own keys and windows in the
    store; ``key`` the HMAC key (``derive_key``; random, this process only, if not given)."""

    def __init__(
        self,
        *,
        per_phone: int = 3,
        per_address: int = 30,
        window: float = 900.0,
        store: CodeStore | None = None,
        key: bytes | None = None,
        name: str = "codes",
    ):
        self._store = store if store is not None else MemoryCodeStore()
        self._key = key if key is not None else secrets.token_bytes(32)
        self._name = name
        self._per_phone = Window(per_phone, window, store=self._store, name=f"{name}:per_phone")
        self._per_address = Window(
            per_address, window, store=self._store, name=f"{name}:per_address"
        )

    def _digest(self, phone: str, code: str) -> bytes:
        return hmac.new(self._key, f"{phone}/{code}".encode(), hashlib.sha256).digest()

    def issue(self, phone: str, address: str, now: float) -> str:
        if not self._per_address.allow(address, now) or not self._per_phone.allow(phone, now):
            raise DeskError("throttled", "too many codes requested; try again in 15 minutes")
        code = f"{secrets.randbelow(10**6):06d}"
        try:
            self._store.put(
                f"{self._name}:code:{phone}", self._digest(phone, code), now + CODE_TTL, now
            )
        except StoreUnavailable:
            raise DeskError("unavailable", "the code could not be made; try again later") from None
        return code

    def verify(self, phone: str, code: object, now: float) -> None:
        given = str(code).strip() if isinstance(code, str | int) else ""
        try:
            outcome = self._store.attempt(
                f"{self._name}:code:{phone}", self._digest(phone, given), now, MAX_ATTEMPTS
            )
        except StoreUnavailable:
            raise DeskError("unavailable", "the code cannot be checked now; try again") from None
        if outcome == "no_code":
            raise DeskError("no_code", "no valid code was sent to this number; ask for one")
        if outcome == "locked":
            raise DeskError("locked", "too many wrong codes; ask for a new one")
        if outcome == "wrong_code":
            raise DeskError("wrong_code", "that code is not right")
