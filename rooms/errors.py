"""The one error every entry point of rooms/ raises: a stable code plus an English message.

Signaling forwards ``code`` and ``message`` to the sender unchanged, so codes are part of the
protocol: ``invalid``, ``forbidden``, ``not_found``, ``conflict``, ``duplicate``, ``ended``.
"""

from __future__ import annotations

CODES = frozenset({"invalid", "forbidden", "not_found", "conflict", "duplicate", "ended"})


class CommandError(Exception):
    """A command was refused; nothing was applied and nothing was written to the ledger."""

    def __init__(self, code: str, message: str) -> None:
        if code not in CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}
