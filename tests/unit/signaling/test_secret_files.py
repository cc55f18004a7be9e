"""Secret files in the data directory are mode 0600, also when an older version left them
readable; trusted-proxy configuration is checked."""

from __future__ import annotations

import os
import stat

import pytest

from signaling.headers import parse_proxies
from signaling.keyfile import load_or_create
from signaling.tls import ensure_self_signed


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_secret_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        value = load_or_create(tmp_path / "secret.key", lambda: b"s" * 32, min_length=32)
    finally:
        os.umask(old)
    assert value == b"s" * 32 and mode(tmp_path / "secret.key") == 0o600


def test_an_existing_readable_secret_is_tightened(tmp_path):
    path = tmp_path / "esign-passphrase"
    path.write_bytes(b"p" * 40)
    path.chmod(0o644)
    assert load_or_create(path, lambda: b"new", min_length=32) == b"p" * 40
    assert mode(path) == 0o600


def test_a_reused_tls_key_is_tightened(tmp_path):
    _, key = ensure_self_signed(tmp_path, [])
    key.chmod(0o644)
    assert ensure_self_signed(tmp_path, [])[1] == key
    assert mode(key) == 0o600


def test_trusted_proxies_are_addresses_or_networks():
    assert [str(n) for n in parse_proxies(["10.0.0.1", " 192.168.0.0/16 ", "::1"])] == [
        "10.0.0.1/32",
        "192.168.0.0/16",
        "::1/128",
    ]
    with pytest.raises(ValueError, match=r"bad_config: trusted_proxies: 'proxy\.local'"):
        parse_proxies(["proxy.local"])
