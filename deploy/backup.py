#!/usr/bin/env python3
"""Back up a Parley data directory while the node runs (docs/operations.md, "Backup and restore").

    python3 deploy/backup.py /var/lib/parley/8443 /backup/parley [--keys /backup/parley-keys]

Writes ``<dest>/parley-<UTC time>/``: every SQLite database through SQLite's online backup API
(consistent while the node writes; a plain copy can catch half a WAL), every other file copied,
and ``MANIFEST.json`` with each file's size and SHA-256. With ``--keys``, the secret key files
(token secret, e-signature passphrase, recording master key, TLS key) go to a separate directory
instead, to be stored apart from the data (with the PKI and the passphrase together, anyone can
sign in the organisation's name). Files and directories are created private (0600/0700).
Standard library only: it runs with the node's Python or the system's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path

KEY_FILES = {"secret.key", "esign-passphrase", "recording-master.key", "tls-key.pem"}
SQLITE_SUFFIXES = (".sqlite3", ".db")
SKIP_SUFFIXES = ("-wal", "-shm", "-journal")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def backup(data_dir: Path, dest: Path, keys: Path | None = None) -> Path:
    if not (data_dir / "ledger.sqlite3").exists():
        raise SystemExit(f"{data_dir} does not look like a Parley data directory (no ledger)")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = _private_dir(dest / f"parley-{stamp}")
    key_target = _private_dir(keys / f"parley-keys-{stamp}") if keys else None
    manifest: dict[str, dict] = {}
    old_umask = os.umask(0o077)
    try:
        skip = [d.resolve() for d in (dest, keys) if d is not None]
        for src in sorted(p for p in data_dir.rglob("*") if p.is_file()):
            rel = src.relative_to(data_dir)
            if any(src.resolve().is_relative_to(d) for d in skip):
                continue  # an earlier backup kept inside the data directory
            if src.name.endswith(SKIP_SUFFIXES):
                continue  # part of a database, taken by the backup API below
            into = key_target if (key_target and src.name in KEY_FILES) else target
            out = into / rel
            _private_dir(out.parent)
            if src.name.endswith(SQLITE_SUFFIXES):
                source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
                copy = sqlite3.connect(out)
                try:
                    source.backup(copy)
                finally:
                    copy.close()
                    source.close()
            else:
                shutil.copyfile(src, out)
            out.chmod(0o600)
            where = "keys" if into is key_target else "data"
            manifest[f"{where}/{rel.as_posix()}"] = {
                "bytes": out.stat().st_size,
                "sha256": _sha256(out),
            }
    finally:
        os.umask(old_umask)
    (target / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    (target / "MANIFEST.json").chmod(0o600)
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--keys", type=Path, help="put the secret key files here, apart from the data")
    args = ap.parse_args(argv)
    target = backup(args.data_dir, args.dest, args.keys)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
