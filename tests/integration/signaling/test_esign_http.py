"""Parley's time-stamping authority and CRLs over HTTP (what every certificate points at)."""

from __future__ import annotations

import hashlib

import aiohttp
from asn1crypto import algos, tsp
from cryptography import x509


def query(digest: bytes) -> bytes:
    return tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "hashed_message": digest,
            },
            "nonce": 777,
            "cert_req": True,
        }
    ).dump()


async def test_tsa_and_crl_routes(running):
    digest = hashlib.sha256(b"mediation agreement").digest()
    async with aiohttp.ClientSession() as http:
        async with http.post(
            running.url + "/esign/tsa",
            data=query(digest),
            headers={"Content-Type": "application/timestamp-query"},
        ) as r:
            assert r.status == 200 and r.content_type == "application/timestamp-reply"
            resp = tsp.TimeStampResp.load(await r.read())
        assert resp["status"]["status"].native == "granted"
        info = resp["time_stamp_token"]["content"]["encap_content_info"]["content"].parsed
        assert info["message_imprint"]["hashed_message"].native == digest
        assert info["nonce"].native == 777

        async with http.post(
            running.url + "/esign/tsa",
            data=b"garbage",
            headers={"Content-Type": "application/timestamp-query"},
        ) as r:
            der = await r.read()
        # a rejection carries only the status (asn1crypto's TimeStampResp insists on a token)
        status = tsp.PKIStatusInfo.load(der[2:] if der[1] < 0x80 else der[2 + (der[1] & 0x7F) :])
        assert status["status"].native == "rejection"
        async with http.post(
            running.url + "/esign/tsa", data=b"x", headers={"Content-Type": "text/plain"}
        ) as r:
            assert r.status == 415

        for name in ("root", "signer-ca"):
            async with http.get(f"{running.url}/esign/crl/{name}.crl") as r:
                assert r.status == 200
                crl = x509.load_der_x509_crl(await r.read())
                assert crl.next_update_utc is not None
        async with http.get(running.url + "/esign/crl/other.crl") as r:
            assert r.status == 404
