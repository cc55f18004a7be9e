"""The stored segment: a small public header, then the WebM under AES-256-GCM.

    b"PRLYSEG1" | u16 header length | header (JSON: session, participant, index, key_id)
    | 12-byte nonce | ciphertext with its 16-byte tag

The header and the magic are the GCM associated data, so a segment cannot be renamed into
another session, participant or index without failing to decrypt. Nothing unencrypted is ever
written: the WebM is built in memory and only the sealed bytes reach the disk.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import struct
from dataclasses import dataclass

from recording.keys import DataKey

MAGIC = b"PRLYSEG1"


@dataclass(frozen=True)
class Sealed:
    data: bytes  # what is stored
    sha256: str  # of `data`
    plain_sha256: str  # of the WebM inside


def seal(key: DataKey, header: dict, plaintext: bytes) -> Sealed:
    head = json.dumps({**header, "key_id": key.id}, sort_keys=True).encode()
    prefix = MAGIC + struct.pack("!H", len(head)) + head
    nonce = secrets.token_bytes(12)
    data = prefix + nonce + key.aead.encrypt(nonce, plaintext, prefix)
    return Sealed(data, hashlib.sha256(data).hexdigest(), hashlib.sha256(plaintext).hexdigest())


def read_header(data: bytes) -> dict:
    if data[:8] != MAGIC:
        raise ValueError("not a Parley recording segment")
    (length,) = struct.unpack("!H", data[8:10])
    return json.loads(data[10 : 10 + length])


def open_sealed(key: DataKey, data: bytes) -> tuple[dict, bytes]:
    """(header, WebM bytes); raises if the key is wrong or any byte changed."""
    header = read_header(data)
    if header["key_id"] != key.id:
        raise ValueError(f"segment sealed with data key {header['key_id']}, not {key.id}")
    end = 10 + struct.unpack("!H", data[8:10])[0]
    nonce = data[end : end + 12]
    return header, key.aead.decrypt(nonce, data[end + 12 :], data[:end])
