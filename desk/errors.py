"""The desk's one error type: a code the HTTP layer maps to a status, and a readable message."""

from __future__ import annotations


class DeskError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
