"""The one error type of `esign`: a stable code for the client and a readable message."""

from __future__ import annotations


class EsignError(Exception):
    """Refusal with a machine-readable `code`; the agreement state is left unchanged."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}
