import base64

import msgspec
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from esign.ceremony import P256_ORDER, p1363_to_der
from esign.errors import EsignError
from esign.protocol import DeclineRequest, EnrolRequest, SignatureReply, b64d, decode_message


def test_p1363_roundtrip_verifies_with_cryptography():
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.sign(b"signed attributes", ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    key.public_key().verify(p1363_to_der(raw), b"signed attributes", ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(
    "raw",
    [b"", bytes(63), bytes(65), bytes(64), P256_ORDER.to_bytes(32, "big") + b"\x01" * 32],
)
def test_p1363_refuses_wrong_length_and_out_of_range(raw):
    with pytest.raises(EsignError) as err:
        p1363_to_der(raw)
    assert err.value.code == "malformed_signature"


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"not json", SignatureReply),
        (b'{"type":"esign.signature","token":"short","signature_p1363":"AA=="}', SignatureReply),
        (
            b'{"type":"esign.signature","token":"' + b"a" * 30 + b'","signature_p1363":"AA==",'
            b'"extra":1}',
            SignatureReply,
        ),
        (
            b'{"type":"esign.decline","participant_id":"p-1","reason":"' + b"x" * 501 + b'"}',
            DeclineRequest,
        ),
        (
            b'{"type":"esign.enrol","participant_id":"../../etc","public_key_spki":"",'
            b'"nonce":"","proof_of_possession":""}',
            EnrolRequest,
        ),
        (b'{"type":"esign.decline","participant_id":"p-1"}', SignatureReply),
    ],
)
def test_bad_messages_get_invalid_message(raw, kind):
    with pytest.raises(EsignError) as err:
        decode_message(raw, kind)
    assert err.value.code == "invalid_message"


def test_good_message_decodes():
    reply = decode_message(
        msgspec.json.encode(
            {"type": "esign.signature", "token": "t" * 32, "signature_p1363": "AA=="}
        ),
        SignatureReply,
    )
    assert reply.token == "t" * 32


def test_b64_is_strict_and_bounded():
    assert b64d(base64.b64encode(b"abc").decode(), "x") == b"abc"
    for bad in ("@@@", "YWJj\n", "YW"):
        with pytest.raises(EsignError) as err:
            b64d(bad, "nonce")
        assert err.value.code == "malformed_nonce"
    with pytest.raises(EsignError):
        b64d(base64.b64encode(bytes(100)).decode(), "nonce", max_len=64)
