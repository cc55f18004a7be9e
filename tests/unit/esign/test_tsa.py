import hashlib

from asn1crypto import algos, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko_certvalidator import ValidationContext

from esign.pki import local_timestamp_authority
from esign.tsa import AuthorityTimeStamper, handle_timestamp_query


def _request(digest: bytes, algorithm: str = "sha256") -> tsp.TimeStampReq:
    return tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": algos.DigestAlgorithm({"algorithm": algorithm}),
                "hashed_message": digest,
            },
            "nonce": 12345,
            "cert_req": True,
        }
    )


async def test_token_is_valid_and_trusted_under_the_root(pki):
    stamper = AuthorityTimeStamper(local_timestamp_authority(pki))
    digest = hashlib.sha256(b"agreement").digest()
    token = await stamper.async_timestamp(digest, "sha256")
    root = asn1_x509.Certificate.load(pki.root.public_bytes(Encoding.DER))
    status = await validate_tst_signed_data(
        token["content"],
        ValidationContext(trust_roots=[root], allow_fetching=False, revocation_mode="soft-fail"),
        lambda _algorithm: digest,
    )
    assert status["intact"] and status["valid"]
    assert status["trust_problem_indic"] is None
    assert status["validation_path"].trust_anchor.authority.name == root.subject


def _status(der: bytes) -> str:
    return tsp.PKIStatusInfo.load(der[2:] if der[1] < 0x80 else der[2 + (der[1] & 0x7F) :])[
        "status"
    ].native


def test_http_handler_refuses_garbage_weak_digests_and_wrong_lengths(pki):
    authority = local_timestamp_authority(pki)
    for body in (b"", b"garbage", b"\x30" * 5000):
        assert _status(handle_timestamp_query(authority, body)) == "rejection"
    weak = _request(hashlib.md5(b"x").digest(), "md5").dump()
    assert _status(handle_timestamp_query(authority, weak)) == "rejection"
    short = _request(b"\x01" * 20).dump()
    assert _status(handle_timestamp_query(authority, short)) == "rejection"
    good = tsp.TimeStampResp.load(
        handle_timestamp_query(authority, _request(hashlib.sha256(b"x").digest()).dump())
    )
    assert good["status"]["status"].native == "granted"
    info = good["time_stamp_token"]["content"]["encap_content_info"]["content"].parsed
    assert info["nonce"].native == 12345
    assert info["message_imprint"]["hashed_message"].native == hashlib.sha256(b"x").digest()
