"""Keys at rest: one master key per node wraps one data key per session (AES-256-GCM).

The master key never touches a recording: it only wraps data keys, so it can be rotated or held
elsewhere (``PARLEY_RECORDING_KEY``) while old sessions stay readable by unwrapping their key
once. A data key's file names the master key id it was wrapped with; every segment names the
data key id (docs/recording.md, "Keys").
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

MASTER_FILE = "recording-master.key"
DATA_KEY_FILE = "datakey.json"


def key_id(label: bytes, key: bytes) -> str:
    """A short public name for a key (16 hex digits of a labelled SHA-256)."""
    return hashlib.sha256(label + key).hexdigest()[:16]


def write_durably(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write under a temporary name (created with ``mode``), fsync, rename, fsync the directory:
    after a crash the file is either complete or absent."""
    tmp = path.with_name("." + path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)  # a stale temporary file kept its old mode
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _aesgcm(key: bytes):
    """AES-256-GCM for `key`. cryptography (~10 MB resident) loads with the first recording, not
    with every server start that merely reads its master key."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


class MasterKey:
    """The node's key-encryption key: from ``PARLEY_RECORDING_KEY`` (64 hex digits) or from
    ``recording-master.key`` in the data directory (created 0600 on first use)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the recording master key must be 32 bytes (64 hex digits)")
        self._key = key
        self._cipher = None
        self.id = key_id(b"parley-recording-master/", key)

    @property
    def _aead(self):
        if self._cipher is None:
            self._cipher = _aesgcm(self._key)
        return self._cipher

    @classmethod
    def load(cls, data_dir: Path, given: str | None = None) -> MasterKey:
        """``given`` (the ``recording_key`` setting, i.e. ``PARLEY_RECORDING_KEY``) wins."""
        if given:
            return cls(bytes.fromhex(given.strip()))
        path = data_dir / MASTER_FILE
        if path.exists():
            path.chmod(0o600)
            return cls(bytes.fromhex(path.read_text().strip()))
        key = secrets.token_bytes(32)
        data_dir.mkdir(parents=True, exist_ok=True)
        write_durably(path, key.hex().encode())
        return cls(key)

    def wrap(self, session: str, data_key: bytes) -> dict:
        nonce = secrets.token_bytes(12)
        wrapped = self._aead.encrypt(nonce, data_key, b"parley-data-key/" + session.encode())
        return {
            "session": session,
            "master_key_id": self.id,
            "key_id": key_id(b"parley-recording-data/", data_key),
            "nonce": nonce.hex(),
            "wrapped": wrapped.hex(),
        }

    def unwrap(self, record: dict) -> bytes:
        if record["master_key_id"] != self.id:
            raise ValueError(f"data key wrapped with master key {record['master_key_id']}")
        aad = b"parley-data-key/" + record["session"].encode()
        return self._aead.decrypt(
            bytes.fromhex(record["nonce"]), bytes.fromhex(record["wrapped"]), aad
        )


class DataKey:
    """A session's data key, unwrapped in memory; its wrapped form lives in the session's
    recording directory (``datakey.json``), written before the first segment."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.aead = _aesgcm(key)
        self.id = key_id(b"parley-recording-data/", key)

    @classmethod
    def for_session(cls, master: MasterKey, directory: Path, session: str) -> DataKey:
        path = directory / DATA_KEY_FILE
        if path.exists():
            return cls(master.unwrap(json.loads(path.read_text())))
        key = secrets.token_bytes(32)
        directory.mkdir(parents=True, exist_ok=True)
        write_durably(path, json.dumps(master.wrap(session, key), sort_keys=True).encode())
        return cls(key)
