"""The lawyer's statement of a privileged visit, issued to the bureau's terminal (R2).

``visits/privilege.py`` builds and signs the statement from the session's ledger; this module
gives it out: signed off the event loop (opening the PKI the first time reads and decrypts its
keys), cached per ledger head (the kiosk asks every few seconds, the ledger moves rarely), and
reachable from the lawyer's phone through a short-lived download code shown as a QR code on the
terminal at the end. Codes live in memory only: after a restart the terminal asks for a new one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from collections import OrderedDict

from rooms.errors import CommandError
from visits.privilege import PrivilegeError, StatementSigner, build

CODE_TTL = 3600.0  # the lawyer's phone may fetch the file for an hour after the code was shown
KEEP = 64  # statements kept (the open privileged visits of a node, and a few just ended)


class Statements:
    def __init__(self, service, clock=time.time) -> None:
        self.service = service
        self.clock = clock
        self.pki = None  # a callable returning esign.pki.LocalPki (server.py: the agreement desk's)
        self._signer: StatementSigner | None = None
        self._lock = asyncio.Lock()
        self._cache: OrderedDict[str, tuple[int, dict]] = OrderedDict()
        self._codes: dict[str, tuple[str, float]] = {}  # code -> (session, expires)

    async def issue(self, session: str) -> dict:
        """The signed statement as of the session's ledger head (PrivilegeError: none)."""
        try:
            events = self.service.events(session)
        except CommandError:
            events = []
        if not events:
            raise PrivilegeError("not_found", "no such session")
        async with self._lock:
            cached = self._cache.get(session)
            if cached and cached[0] == events[-1].seq:
                return cached[1]
            if self.pki is None:
                raise PrivilegeError("unavailable", "this server has no signing key configured")
            if self._signer is None:
                self._signer = StatementSigner(await asyncio.to_thread(self.pki))
            now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
            signer = self._signer
            envelope = await asyncio.to_thread(lambda: signer.sign(build(events, now), now))
            self._cache[session] = (events[-1].seq, envelope)
            self._cache.move_to_end(session)
            while len(self._cache) > KEEP:
                self._cache.popitem(last=False)
            return envelope

    def code_for(self, session: str) -> str:
        """A download code for the lawyer's phone (128 random bits), one per session."""
        now = self.clock()
        self._codes = {c: v for c, v in self._codes.items() if v[1] > now}
        for code, (sid, _) in self._codes.items():
            if sid == session:
                return code
        code = secrets.token_urlsafe(16)
        self._codes[code] = (session, now + CODE_TTL)
        return code

    def session_of(self, code: str) -> str | None:
        entry = self._codes.get(code)
        return entry[0] if entry and entry[1] > self.clock() else None
