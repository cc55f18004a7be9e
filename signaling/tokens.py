"""Invitation tokens: signed, expiring, bound to one session, one participant and one role.

A token is ``base64url(payload) "." base64url(hmac_sha256(secret, payload))``; the payload is a
small JSON object. HMAC keeps tokens short enough for a QR code a cheap phone can scan, and the
secret never leaves the server. Re-issuing a participant's link bumps ``gen``; the caller rejects
tokens whose generation is older than the participant's current one (revocation without a list).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from pathlib import Path

import msgspec

from signaling.keyfile import load_or_create

TOKEN_VERSION = 1
MAX_TOKEN_LENGTH = 1024


class TokenError(Exception):
    """A token that must not be accepted; ``code`` is what the client is told."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Invitation(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    v: int
    session: str
    participant: str
    role: str
    exp: int  # unix seconds
    gen: int = 0
    staff: str | None = None  # set when a logged-in staff member entered from the console


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: bytes, *, clock=time.time) -> None:
        if len(secret) < 32:
            raise ValueError("token secret must be at least 32 bytes")
        self._secret = secret
        self._clock = clock

    def issue(
        self,
        session: str,
        participant: str,
        role: str,
        *,
        ttl: float,
        gen: int = 0,
        staff: str | None = None,
    ) -> str:
        inv = Invitation(
            v=TOKEN_VERSION,
            session=session,
            participant=participant,
            role=role,
            exp=int(self._clock() + ttl),
            gen=gen,
            staff=staff,
        )
        payload = msgspec.json.encode(inv)
        return _b64(payload) + "." + _b64(self._mac(payload))

    def verify(self, token: object, *, session: str | None = None) -> Invitation:
        if not isinstance(token, str) or not token:
            raise TokenError("token_missing", "an invitation token is required")
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
            raise TokenError("token_invalid", "the invitation token is malformed")
        body, mac = token.split(".")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except (ValueError, TypeError):
            raise TokenError("token_invalid", "the invitation token is malformed") from None
        if not hmac.compare_digest(given, self._mac(payload)):
            raise TokenError("token_invalid", "the invitation token's signature does not match")
        try:
            inv = msgspec.json.decode(payload, type=Invitation)
        except msgspec.DecodeError:
            raise TokenError("token_invalid", "the invitation token is malformed") from None
        if inv.v != TOKEN_VERSION:
            raise TokenError("token_invalid", "unsupported token version")
        if inv.exp < self._clock():
            raise TokenError("token_expired", "this invitation link has expired")
        if session is not None and inv.session != session:
            raise TokenError("token_wrong_session", "this invitation is for another session")
        return inv

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()


def load_or_create_secret(path: Path) -> bytes:
    """Read the server secret, creating it (0600) on first start."""
    return load_or_create(path, lambda: secrets.token_bytes(32), min_length=32)
