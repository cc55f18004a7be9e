"""Secrets kept in the data directory (token secret, e-signature passphrase)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def load_or_create(path: Path, make: Callable[[], bytes], *, min_length: int) -> bytes:
    """Read a secret, creating it on first start: written atomically, readable by us only."""
    if path.exists():
        value = path.read_bytes()
        if len(value) >= min_length:
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(value)
    tmp.chmod(0o600)
    tmp.replace(path)
    return value
