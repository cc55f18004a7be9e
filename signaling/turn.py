"""Time-limited TURN credentials (the "TURN REST API" scheme coturn implements as
``use-auth-secret`` / ``static-auth-secret``).

Parley and the TURN server share one secret (``PARLEY_TURN_SECRET``; coturn's
``static-auth-secret``). For each participant the server issues:

* ``username = "<expiry unix time>:<participant ref>"``
* ``credential = base64(HMAC-SHA1(secret, username))``

coturn recomputes the credential from the username and refuses it once the expiry has passed,
so nothing is stored anywhere and a leaked credential dies on its own. The expiry is the
invitation's expiry or ``max_ttl`` from now, whichever comes first. The participant ref is the
participant id (opaque, no name in it), so a TURN server's log line can be matched to a session
log line, and never contains ``:``.

The phone page and the terminals receive the result as ``iceServers`` in the ``welcome``
message (docs/protocol.md) and pass it to ``RTCPeerConnection``. The server's own aiortc peers
use no TURN: they listen on the node's public address (docs/operations.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

SCHEMES = ("turn:", "turns:", "stun:", "stuns:")
# RFC 7065: scheme ":" host [":" port] ["?transport=" udp|tcp]; an IPv6 host in brackets
URL = re.compile(
    r"(?P<scheme>turns?|stuns?):(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)"
    r"(?::(?P<port>\d{1,5}))?(?:\?transport=(?P<transport>udp|tcp))?"
)


def parse_urls(raw: str | list[str] | None) -> list[str]:
    """``"turn:h:3478?transport=udp,turns:h:443?transport=tcp"`` -> the list of URLs. A URL
    that is not a well-formed turn:/turns:/stun:/stuns: URL stops the server (``ValueError``),
    and so does ``turns:`` with ``transport=udp``: that would be TURN over DTLS, which neither
    browsers nor our coturn (``no-dtls``) speak, so the phones would be offered a relay that
    can never work. ``turns:<host>:443?transport=tcp`` is how a network that allows only TCP
    443 reaches the relay (docs/operations.md, "One port 443")."""
    if raw is None:
        return []
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    urls = [u.strip() for u in items if u.strip()]
    for url in urls:
        match = URL.fullmatch(url) if len(url) <= 512 else None
        if not url.startswith(SCHEMES) or match is None:
            raise ValueError(f"bad_config: turn_urls: {url[:60]!r} is not a turn:/turns: URL")
        port = match["port"]
        if port is not None and not 0 < int(port) < 65536:
            raise ValueError(f"bad_config: turn_urls: {url[:60]!r} has no valid port")
        if match["scheme"] == "turns" and match["transport"] == "udp":
            raise ValueError(f"bad_config: turn_urls: {url[:60]!r}: turns: runs over TCP only")
        if match["scheme"].startswith("stun") and match["transport"]:
            raise ValueError(f"bad_config: turn_urls: {url[:60]!r}: stun: takes no transport")
    return urls


def credential_for(secret: bytes, username: str) -> str:
    """base64(HMAC-SHA1(secret, username)): what coturn computes for ``use-auth-secret``."""
    digest = hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class Credentials:
    username: str
    credential: str
    expires: int  # unix seconds


class TurnCredentials:
    """Issues ``iceServers`` for one participant. With no URLs configured it issues ``[]``
    (the page then offers host candidates only, enough on a LAN)."""

    def __init__(
        self,
        secret: bytes | str | None,
        urls: list[str],
        *,
        max_ttl: float = 12 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        turn = [u for u in urls if u.startswith(("turn:", "turns:"))]
        if turn and not secret:
            raise ValueError("bad_config: turn_urls are set but turn_secret is not")
        self._secret = secret or b""
        self.urls = list(urls)
        self._turn, self._stun = turn, [u for u in urls if u not in turn]
        self.max_ttl = max_ttl
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    def issue(self, participant_ref: str, not_after: float | None = None) -> Credentials:
        """Credentials valid until ``not_after`` (the invitation's expiry) or ``max_ttl`` from
        now, whichever is sooner."""
        ref = participant_ref.replace(":", "_")
        expires = int(self._clock() + self.max_ttl)
        if not_after is not None:
            expires = min(expires, int(not_after))
        username = f"{expires}:{ref}"
        return Credentials(username, credential_for(self._secret, username), expires)

    def ice_servers(self, participant_ref: str, not_after: float | None = None) -> list[dict]:
        """The ``iceServers`` list of an ``RTCConfiguration`` for this participant."""
        servers: list[dict] = []
        if self._stun:
            servers.append({"urls": list(self._stun)})
        if self._turn:
            cred = self.issue(participant_ref, not_after)
            servers.append(
                {"urls": list(self._turn), "username": cred.username, "credential": cred.credential}
            )
        return servers
