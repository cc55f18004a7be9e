"""The TURN URLs a deployment may hand to the phones (PARLEY_TURN_URLS): well-formed ones,
including TURN over TLS on the shared port 443, are offered as given; one that could never work
stops the server at start with ``bad_config`` (exit 2, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from signaling.turn import TurnCredentials, credential_for, parse_urls

ROOT = Path(__file__).resolve().parents[3]
SHARED_443 = "turns:turn.mediation.example.org:443?transport=tcp"


@pytest.mark.parametrize(
    "url",
    [
        SHARED_443,
        "turns:mediation.example.org:443",  # transport defaults to tcp for turns:
        "turn:203.0.113.10:3478?transport=udp",
        "turn:[2001:db8::10]:3478?transport=tcp",
        "stun:mediation.example.org:3478",
        "turns:mediation.example.org",  # default port
    ],
)
def test_well_formed_urls_are_kept_as_given(url):
    assert parse_urls(f" {url} ,") == [url]


@pytest.mark.parametrize(
    "url, why",
    [
        ("turns:mediation.example.org:443?transport=udp", "TCP only"),  # TURN over DTLS
        ("turn:mediation.example.org:3478?transport=sctp", "is not a turn"),
        ("turn:mediation.example.org:99999", "no valid port"),
        ("turn:mediation.example.org:0", "no valid port"),
        ("turn:", "is not a turn"),
        ("turn:user@host:3478", "is not a turn"),
        ("turns://mediation.example.org:443", "is not a turn"),
        ("stun:mediation.example.org:3478?transport=tcp", "no transport"),
        ("https://mediation.example.org/", "is not a turn"),
        ("turn:" + "a" * 600, "is not a turn"),
    ],
)
def test_urls_that_cannot_work_are_refused(url, why):
    with pytest.raises(ValueError, match=f"bad_config: turn_urls: .*{why}"):
        parse_urls(url)


def test_the_shared_443_url_is_offered_with_credentials():
    urls = parse_urls(f"turn:mediation.example.org:3478?transport=udp,{SHARED_443}")
    servers = TurnCredentials("s", urls, max_ttl=60, clock=lambda: 0).ice_servers("p-ann")
    [relay] = servers
    assert relay["urls"][-1] == SHARED_443
    assert relay["username"] == "60:p-ann"
    assert relay["credential"] == credential_for(b"s", "60:p-ann")


def test_server_refuses_turns_over_udp_at_start(tmp_path):
    env = {
        **os.environ,
        "PARLEY_TURN_SECRET": "s",
        "PARLEY_TURN_URLS": "turns:mediation.example.org:443?transport=udp",
    }
    result = subprocess.run(
        [sys.executable, "server.py", "serve", "--port", "0", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "bad_config: turn_urls" in result.stderr and "TCP only" in result.stderr
    assert "Traceback" not in result.stderr
