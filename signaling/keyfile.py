"""Secrets kept in the data directory (token secret, e-signature passphrase, TLS key): mode 0600
from the moment they exist, never briefly readable by others under the umask."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def load_or_create(path: Path, make: Callable[[], bytes], *, min_length: int) -> bytes:
    """Read a secret (tightening a looser mode), creating it on first start, atomically."""
    if path.exists():
        value = path.read_bytes()
        if len(value) >= min_length:
            path.chmod(0o600)
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    write_private(path, value)
    return value


def write_private(path: Path, value: bytes) -> None:
    """Write a file readable by us only: created 0600 under a temporary name, then renamed."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(value)
    tmp.chmod(0o600)  # a stale temporary file from a crash kept its old mode
    tmp.replace(path)
