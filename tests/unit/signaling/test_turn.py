"""The TURN REST credential scheme as coturn's ``use-auth-secret`` expects it: username
``<expiry>:<ref>``, credential base64(HMAC-SHA1(secret, username)). coturn's acceptance of
what we issue is proven against a real ``turnserver`` in tests/integration/turn/."""

from __future__ import annotations

import pytest

from signaling.turn import TurnCredentials, credential_for, parse_urls

# computed independently: printf '1700000000:p-alice' | openssl dgst -sha1 -hmac
# north-wind-secret -binary | base64
VECTOR = ("north-wind-secret", "1700000000:p-alice", "Dxdc+DNh5fdlpMdgcvItvYYTE8c=")

URLS = "turn:t.example:3478?transport=udp, turn:t.example:3478?transport=tcp,turns:t.example:443?transport=tcp"


def test_credential_matches_an_independent_hmac_sha1():
    secret, username, expected = VECTOR
    assert credential_for(secret.encode(), username) == expected


def test_username_is_expiry_colon_ref_and_expires_with_the_invitation_or_sooner():
    turn = TurnCredentials("north-wind-secret", parse_urls(URLS), max_ttl=3600, clock=lambda: 1000)
    # invitation expires later than max_ttl: max_ttl wins
    cred = turn.issue("p-alice", not_after=10**9)
    assert cred.username == "4600:p-alice" and cred.expires == 4600
    assert cred.credential == credential_for(b"north-wind-secret", "4600:p-alice")
    # invitation expires sooner: the invitation wins
    assert turn.issue("p-alice", not_after=1500).username == "1500:p-alice"
    # a ':' in the ref would change what coturn reads as the timestamp
    assert turn.issue("a:b", not_after=1500).username == "1500:a_b"


def test_ice_servers_shape_for_rtcpeerconnection():
    turn = TurnCredentials(
        "s", parse_urls(URLS + ",stun:t.example:3478"), max_ttl=60, clock=lambda: 0
    )
    servers = turn.ice_servers("p-bob", not_after=30)
    assert servers[0] == {"urls": ["stun:t.example:3478"]}
    assert servers[1]["urls"] == [
        "turn:t.example:3478?transport=udp",
        "turn:t.example:3478?transport=tcp",
        "turns:t.example:443?transport=tcp",
    ]
    assert servers[1]["username"] == "30:p-bob"
    assert servers[1]["credential"] == credential_for(b"s", "30:p-bob")


def test_not_configured_issues_nothing_and_bad_config_is_refused():
    assert TurnCredentials(None, []).ice_servers("p") == []
    assert not TurnCredentials(None, []).enabled
    with pytest.raises(ValueError, match="turn_secret"):
        TurnCredentials(None, parse_urls("turn:h:3478"))
    with pytest.raises(ValueError, match="bad_config"):
        parse_urls("http://h:3478")
    assert parse_urls(None) == [] and parse_urls(" , ") == []


def test_server_refuses_turn_urls_without_a_secret(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PARLEY_TURN_URLS": "turn:t.example:3478"}
    env.pop("PARLEY_TURN_SECRET", None)
    result = subprocess.run(
        [sys.executable, "server.py", "serve", "--port", "0", "--data-dir", str(tmp_path)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "bad_config: turn_urls are set but turn_secret is not" in result.stderr
    assert "Traceback" not in result.stderr
