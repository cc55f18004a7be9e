"""deploy/rotate_recording_key.py: after rotating the recording master key every recording is
still readable with the key the node loads at its next start, the old key no longer opens the
data keys, an interrupted run completes when run again, and the keys never reach the output."""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from recording.keys import DATA_KEY_FILE, MASTER_FILE, DataKey, MasterKey

ROOT = Path(__file__).resolve().parents[3]
TOOL = ROOT / "deploy" / "rotate_recording_key.py"
SESSIONS = ("s-one", "s-two", "s-three")


def record(data_dir: Path, master: MasterKey) -> dict[str, tuple[bytes, bytes]]:
    """A data key per session, and a 'segment' sealed with it: {session: (nonce, sealed)}."""
    sealed = {}
    for session in SESSIONS:
        key = DataKey.for_session(master, data_dir / "recordings" / session, session)
        nonce = secrets.token_bytes(12)
        sealed[session] = (nonce, key.aead.encrypt(nonce, f"frames of {session}".encode(), None))
    return sealed


def readable(data_dir: Path, sealed, given: str | None = None) -> bool:
    master = MasterKey.load(data_dir, given=given)  # what the node does at start
    for session, (nonce, blob) in sealed.items():
        key = DataKey.for_session(master, data_dir / "recordings" / session, session)
        assert key.aead.decrypt(nonce, blob, None) == f"frames of {session}".encode()
    return True


def run(data_dir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOOL), str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_rotation_keeps_every_recording_readable_under_the_new_key(tmp_path):
    data = tmp_path / "data"
    old = MasterKey.load(data)
    old_hex = (data / MASTER_FILE).read_text().strip()
    sealed = record(data, old)

    result = run(data)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rewrapped"] == 3 and summary["old"] == old.id != summary["new"]
    new_hex = (data / MASTER_FILE).read_text().strip()
    assert new_hex != old_hex and old_hex not in result.stdout + result.stderr
    assert new_hex not in result.stdout + result.stderr
    assert stat.S_IMODE((data / MASTER_FILE).stat().st_mode) == 0o600
    retired = data / f"{MASTER_FILE}.retired-{old.id}"
    assert retired.read_text().strip() == old_hex
    assert stat.S_IMODE(retired.stat().st_mode) == 0o600
    assert not (data / (MASTER_FILE + ".next")).exists()

    assert readable(data, sealed)
    for session in SESSIONS:
        wrapped = json.loads((data / "recordings" / session / DATA_KEY_FILE).read_text())
        assert wrapped["master_key_id"] == summary["new"]
        with pytest.raises(ValueError):
            old.unwrap(wrapped)


def test_an_interrupted_rotation_completes_when_run_again(tmp_path, monkeypatch):
    sys.path.insert(0, str(TOOL.parent))
    import rotate_recording_key as tool

    data = tmp_path / "data"
    sealed = record(data, MasterKey.load(data))
    real, writes = tool.write_durably, []

    def crash_on_second_data_key(path, payload, **kw):
        if path.name == DATA_KEY_FILE:
            writes.append(path)
            if len(writes) == 2:
                raise OSError("power cut")
        return real(path, payload, **kw)

    monkeypatch.setattr(tool, "write_durably", crash_on_second_data_key)
    with pytest.raises(OSError):
        tool.rotate(data)
    monkeypatch.setattr(tool, "write_durably", real)
    # midway: one data key under the new master, two under the old, the old master in place
    assert (data / (MASTER_FILE + ".next")).exists()
    ids = [
        json.loads((data / "recordings" / s / DATA_KEY_FILE).read_text())["master_key_id"]
        for s in SESSIONS
    ]
    assert len(set(ids)) == 2 and sorted(ids.count(i) for i in set(ids)) == [1, 2]
    summary = tool.rotate(data)
    assert summary == {**summary, "rewrapped": 2, "already": 1}
    assert readable(data, sealed)


def test_rotation_with_keys_from_the_environment(tmp_path):
    data = tmp_path / "data"
    old_hex, new_hex = secrets.token_hex(32), secrets.token_hex(32)
    sealed = record(data, MasterKey.load(data, given=old_hex))
    missing = run(data, "--from-env", env={"PARLEY_RECORDING_KEY": old_hex})
    assert missing.returncode != 0 and "bad_usage" in missing.stderr
    result = run(
        data,
        "--from-env",
        env={"PARLEY_RECORDING_KEY": old_hex, "PARLEY_RECORDING_KEY_NEW": new_hex},
    )
    assert result.returncode == 0, result.stderr
    assert not (data / MASTER_FILE).exists()  # the keys stay outside the data directory
    assert old_hex not in result.stdout + result.stderr and new_hex not in result.stdout
    assert readable(data, sealed, given=new_hex)
    # a wrong old key changes nothing and says so
    again = run(
        data,
        "--from-env",
        env={"PARLEY_RECORDING_KEY": old_hex, "PARLEY_RECORDING_KEY_NEW": secrets.token_hex(32)},
    )
    assert again.returncode == 1 and "rotation_failed" in again.stderr
    assert readable(data, sealed, given=new_hex)
