"""The agreement's PDF on disk, written in two phases so that file and ledger never disagree.

A step's new revision is first *staged*: written and fsynced beside the current file under a
name that carries its SHA-256. The session layer appends the step's events to the ledger and
only then *promotes* the staged file (atomic rename over the current one, then an fsync of the
directory so the rename itself survives a power cut). A crash between the append and the
rename leaves the staged file whose hash the ledger recorded: ``recover`` promotes it at the
next start. A crash before the append leaves a staged file the ledger never named: ``recover``
deletes it. Either way the current file is the revision the ledger last recorded.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

STAGED = ".staged"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def staged_name(path: Path, digest: str) -> Path:
    return path.with_name(f"{path.name}.{digest}{STAGED}")


def stage(path: Path, pdf: bytes) -> Path:
    """Write ``pdf`` durably beside ``path`` (which it will replace); returns the staged file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = staged_name(path, sha256(pdf))
    with open(staged, "wb") as f:
        f.write(pdf)
        f.flush()
        os.fsync(f.fileno())
    return staged


def promote(staged: Path, path: Path) -> None:
    """Make the staged revision the current file: atomic rename, then fsync the directory."""
    os.replace(staged, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def discard(staged: Path | None) -> None:
    """Drop a staged revision the ledger refused."""
    if staged is not None:
        staged.unlink(missing_ok=True)


def recover(store_dir: Path, version: int, recorded_sha256: str) -> Path | None:
    """The current file of ``version`` after finishing or undoing an interrupted promotion.

    A staged file of ``version`` whose name and content match the hash the ledger recorded is
    promoted; every other staged file (of any version: a crashed supersede stages the next) is
    deleted. Returns the current file, or None when there is none (the caller decides whether
    that is an error)."""
    current = sorted(store_dir.glob(f"*-v{version}.pdf"))
    for staged in sorted(store_dir.glob(f"*{STAGED}")):
        target = staged.with_name(staged.name.split(".pdf.", 1)[0] + ".pdf")
        named = staged.name.removesuffix(STAGED).rsplit(".", 1)[-1]
        recorded = (
            target.name.endswith(f"-v{version}.pdf")
            and named == recorded_sha256
            and sha256(staged.read_bytes()) == recorded_sha256
        )
        is_current = target.exists() and sha256(target.read_bytes()) == recorded_sha256
        if recorded and not is_current:
            promote(staged, target)
            current = [target]
        else:
            staged.unlink()
    return current[0] if len(current) == 1 else None
