#!/usr/bin/env python3
"""Rotate a node's recording master key (docs/operations.md, "Key rotation").

    systemctl stop parley@8443
    /opt/parley/.venv/bin/python deploy/rotate_recording_key.py /var/lib/parley/8443
    systemctl start parley@8443

The master key only wraps each session's data key (recording/keys.py), so rotating it rewrites
the small ``datakey.json`` of every recorded session under the new key; no segment is touched
and every recording stays readable. Stop the node first: a recording that starts meanwhile
would wrap its key under the old master.

Crash-safe and re-runnable: the new key is written durably to ``recording-master.key.next``
before any data key is rewrapped, each ``datakey.json`` is replaced atomically, a data key
already under the new master is skipped, and ``recording-master.key`` is replaced by the new key
last. The old key is kept as ``recording-master.key.retired-<id>`` (0600): destroy it once a
backup with the new key exists.

With ``PARLEY_RECORDING_KEY`` (the key kept outside the data directory), give the old and new
keys in the environment instead (never on the command line, where ``ps`` shows them):
``PARLEY_RECORDING_KEY=<old> PARLEY_RECORDING_KEY_NEW=<new> … --from-env``; then set
``PARLEY_RECORDING_KEY=<new>`` for the node. No key file is written in that mode.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from recording.keys import DATA_KEY_FILE, MASTER_FILE, MasterKey, write_durably  # noqa: E402


def _masters(data_dir: Path, from_env: bool) -> tuple[MasterKey, MasterKey, Path | None]:
    """(old, new, the pending new key's file or None in --from-env mode)."""
    if from_env:
        old, new = (
            os.environ.get("PARLEY_RECORDING_KEY"),
            os.environ.get("PARLEY_RECORDING_KEY_NEW"),
        )
        if not old or not new:
            raise SystemExit("bad_usage: --from-env needs PARLEY_RECORDING_KEY and _NEW set")
        return MasterKey(bytes.fromhex(old.strip())), MasterKey(bytes.fromhex(new.strip())), None
    current = data_dir / MASTER_FILE
    if not current.exists():
        raise SystemExit(f"no_master_key: {current} does not exist (nothing was recorded here)")
    pending = data_dir / (MASTER_FILE + ".next")
    if not pending.exists():
        write_durably(pending, secrets.token_bytes(32).hex().encode())
    old = MasterKey(bytes.fromhex(current.read_text().strip()))
    new = MasterKey(bytes.fromhex(pending.read_text().strip()))
    return old, new, pending


def rotate(data_dir: Path, *, from_env: bool = False) -> dict:
    """Rewrap every session's data key under the new master; returns counts and key ids."""
    old, new, pending = _masters(data_dir, from_env)
    rewrapped = skipped = 0
    for path in sorted((data_dir / "recordings").glob(f"*/{DATA_KEY_FILE}")):
        record = json.loads(path.read_text())
        if record["master_key_id"] == new.id:
            skipped += 1  # done by an earlier, interrupted run
            continue
        data_key = old.unwrap(record)  # raises on a key wrapped by neither: nothing is changed
        write_durably(
            path, json.dumps(new.wrap(record["session"], data_key), sort_keys=True).encode()
        )
        rewrapped += 1
    if pending is not None:
        current = data_dir / MASTER_FILE
        retired = data_dir / f"{MASTER_FILE}.retired-{old.id}"
        write_durably(retired, current.read_bytes())
        os.replace(pending, current)
    return {"old": old.id, "new": new.id, "rewrapped": rewrapped, "already": skipped}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--from-env", action="store_true", help="keys from the environment")
    args = parser.parse_args(argv)
    try:
        result = rotate(args.data_dir, from_env=args.from_env)
    except ValueError as exc:
        print(f"rotation_failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
