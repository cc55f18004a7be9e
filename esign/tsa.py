"""RFC 3161 time-stamping: the `TimestampAuthority` interface and Parley's own responder.

pyHanko's own test responder is RSA-only, so Parley signs time-stamp tokens itself with the
TSA's P-256 key. `AuthorityTimeStamper` lets pyHanko use any authority in-process; an
external TSA plugs in as pyHanko's `HTTPTimeStamper` without a session instead (same
`TimeStamper` interface; the ceremony calls it from a worker thread's own event loop). `handle_timestamp_query` is the HTTP body handler
the server can mount at `POST /esign/tsa` (`application/timestamp-query`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Callable
from typing import Protocol

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pyhanko.sign.timestamps.api import TimeStamper

# Private-arc OID (X.667 UUID) naming Parley's time-stamping policy.
TSA_POLICY = "2.25." + str(uuid.UUID("0d4c1c57-3a77-4b1e-a4b5-7f3c2e6a9d10").int)
MAX_QUERY_BYTES = 4096
_DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}


class TimestampAuthority(Protocol):
    """Anything that turns an RFC 3161 request into a response (local or external)."""

    def respond(self, request: tsp.TimeStampReq) -> tsp.TimeStampResp: ...


def _as_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


class _RejectionResp(core.Sequence):
    """A TimeStampResp without a token (asn1crypto's type cannot omit it)."""

    _fields = [("status", tsp.PKIStatusInfo)]


def _rejection(failure: str, text: str) -> tsp.TimeStampResp:
    return _RejectionResp(
        {
            "status": tsp.PKIStatusInfo(
                {
                    "status": tsp.PKIStatus("rejection"),
                    "status_string": [text],
                    "fail_info": tsp.PKIFailureInfo({failure}),
                }
            )
        }
    )


class LocalTimestampAuthority:
    """Parley's own RFC 3161 responder: proves only what the platform asserts (design §5.1)."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        cert: x509.Certificate,
        chain: list[x509.Certificate],
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.key = key
        self.cert = cert
        self._cert_asn1 = _as_asn1(cert)
        self._chain = [_as_asn1(c) for c in chain]
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))

    def respond(self, request: tsp.TimeStampReq) -> tsp.TimeStampResp:
        try:
            imprint = request["message_imprint"]
            algorithm = imprint["hash_algorithm"]["algorithm"].native
            digest = imprint["hashed_message"].native
        except (ValueError, KeyError, TypeError):
            return _rejection("bad_data_format", "malformed request")
        if algorithm not in _DIGEST_SIZES:
            return _rejection("bad_alg", f"unsupported digest {algorithm}")
        if len(digest) != _DIGEST_SIZES[algorithm]:
            return _rejection("bad_data_format", "digest has the wrong length")
        if request["version"].native != "v1":
            return _rejection("bad_request", "only version 1 requests")
        now = self.clock().replace(microsecond=0)
        info = {
            "version": "v1",
            "policy": TSA_POLICY,
            "message_imprint": imprint,
            "serial_number": secrets.randbits(120),
            "gen_time": now,
            "accuracy": {"seconds": 1},
            "tsa": asn1_x509.GeneralName(name="directory_name", value=self._cert_asn1.subject),
        }
        if request["nonce"].native is not None:
            info["nonce"] = request["nonce"]
        tst_der = tsp.TSTInfo(info).dump()
        signed_attrs = cms.CMSAttributes(
            [
                _attr("content_type", "tst_info"),
                _attr("signing_time", cms.Time({"utc_time": core.UTCTime(now)})),
                _attr("message_digest", hashlib.sha256(tst_der).digest()),
                _attr(
                    "signing_certificate_v2",
                    tsp.SigningCertificateV2(
                        {"certs": [{"cert_hash": hashlib.sha256(self._cert_asn1.dump()).digest()}]}
                    ),
                ),
            ]
        )
        signature = self.key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    {
                        "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                            {
                                "issuer": self._cert_asn1.issuer,
                                "serial_number": self._cert_asn1.serial_number,
                            }
                        )
                    }
                ),
                "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
                "signed_attrs": signed_attrs,
                "signature": signature,
            }
        )
        signed_data = cms.SignedData(
            {
                "version": "v3",
                "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
                "encap_content_info": {
                    "content_type": "tst_info",
                    "content": cms.ParsableOctetString(tst_der),
                },
                "certificates": [self._cert_asn1, *self._chain],
                "signer_infos": [signer_info],
            }
        )
        response = tsp.TimeStampResp(
            {
                "status": tsp.PKIStatusInfo({"status": tsp.PKIStatus("granted")}),
                "time_stamp_token": cms.ContentInfo(
                    {"content_type": "signed_data", "content": signed_data}
                ),
            }
        )
        # Hand out a parsed copy: asn1crypto re-serialises freshly built ("mutated") trees
        # again at every level each time an enclosing CMS is dumped, which made embedding
        # a token cost seconds.
        return tsp.TimeStampResp.load(response.dump())


def _attr(name: str, value) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": name, "values": (value,)})


def handle_timestamp_query(authority: TimestampAuthority, body: bytes) -> bytes:
    """DER response for a DER `application/timestamp-query` body (rejections included)."""
    if len(body) > MAX_QUERY_BYTES:
        return _rejection("bad_request", "request too large").dump()
    try:
        request = tsp.TimeStampReq.load(body)
        request.native  # noqa: B018 - forces a full parse so garbage is refused here
    except (ValueError, TypeError, KeyError):
        return _rejection("bad_data_format", "not a TimeStampReq").dump()
    return authority.respond(request).dump()


class AuthorityTimeStamper(TimeStamper):
    """pyHanko `TimeStamper` backed by an in-process `TimestampAuthority`."""

    def __init__(self, authority: TimestampAuthority) -> None:
        super().__init__(include_nonce=True)
        self.authority = authority

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        return self.authority.respond(req)
