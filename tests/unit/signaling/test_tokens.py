import base64
import json

import pytest

from signaling.tokens import TokenError, TokenSigner, load_or_create_secret

SECRET = b"k" * 32


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_issue_and_verify_round_trip():
    signer = TokenSigner(SECRET)
    tok = signer.issue("s-1", "p-1", "party", ttl=60, gen=2)
    inv = signer.verify(tok, session="s-1")
    assert (inv.session, inv.participant, inv.role, inv.gen) == ("s-1", "p-1", "party", 2)


def test_expired_token_is_refused():
    clock = Clock()
    signer = TokenSigner(SECRET, clock=clock)
    tok = signer.issue("s", "p", "party", ttl=10)
    clock.t += 11
    with pytest.raises(TokenError) as exc:
        signer.verify(tok)
    assert exc.value.code == "token_expired"


def test_token_for_another_session_is_refused():
    signer = TokenSigner(SECRET)
    tok = signer.issue("s-1", "p", "party", ttl=10)
    with pytest.raises(TokenError) as exc:
        signer.verify(tok, session="s-2")
    assert exc.value.code == "token_wrong_session"


def test_tampered_payload_is_refused():
    signer = TokenSigner(SECRET)
    body, mac = signer.issue("s", "p", "party", ttl=10).split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    payload["role"] = "mediator"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError) as exc:
        signer.verify(forged + "." + mac)
    assert exc.value.code == "token_invalid"


def test_token_signed_with_other_secret_is_refused():
    tok = TokenSigner(b"x" * 32).issue("s", "p", "party", ttl=10)
    with pytest.raises(TokenError) as exc:
        TokenSigner(SECRET).verify(tok)
    assert exc.value.code == "token_invalid"


@pytest.mark.parametrize(
    "bad,code",
    [
        (None, "token_missing"),
        ("", "token_missing"),
        (42, "token_missing"),
        ("no-dot", "token_invalid"),
        ("a.b.c", "token_invalid"),
        ("!!!.???", "token_invalid"),
        ("x" * 5000 + ".y", "token_invalid"),
    ],
)
def test_malformed_tokens_get_clear_codes(bad, code):
    with pytest.raises(TokenError) as exc:
        TokenSigner(SECRET).verify(bad)
    assert exc.value.code == code


def test_valid_mac_over_unexpected_json_is_refused():
    import hashlib
    import hmac

    payload = json.dumps({"v": 1, "session": "s", "evil": True}).encode()
    mac = hmac.new(SECRET, payload, hashlib.sha256).digest()
    b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()  # noqa: E731
    with pytest.raises(TokenError) as exc:
        TokenSigner(SECRET).verify(b(payload) + "." + b(mac))
    assert exc.value.code == "token_invalid"


def test_short_secret_is_rejected():
    with pytest.raises(ValueError):
        TokenSigner(b"short")


def test_secret_is_created_once_with_private_mode(tmp_path):
    path = tmp_path / "d" / "secret.key"
    first = load_or_create_secret(path)
    assert len(first) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_secret(path) == first
