"""A Python stand-in for the signing phone: same messages and checks as the browser page.

The browser keeps a non-extractable WebCrypto P-256 key; here a `cryptography` key plays
that part and is never exported. Before signing, the phone checks what the server asks it
to sign (design §7 #1): the prepared file extends the reviewed revision byte for byte, the
ByteRange covers everything but the signature hole, the `messageDigest` in the signed
attributes is the digest of those bytes, and `signing-certificate-v2` names its own cert.
"""

from __future__ import annotations

import hashlib
import io
import re

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from pyhanko.pdf_utils.reader import PdfFileReader

from esign.agreement import fingerprint, parse_agreement
from esign.binding import check_rendering
from esign.document import attached_agreement_data
from esign.errors import EsignError
from esign.protocol import (
    POP_PREFIX,
    DeclineRequest,
    EnrolChallenge,
    Enrolment,
    EnrolRequest,
    SignatureReply,
    SignatureRequest,
    b64d,
    b64e,
)

ALLOWED_SIGNED_ATTRS = {
    "content_type",
    "message_digest",
    "signing_certificate_v2",
    "commitment_type",
    "cms_algorithm_protection",
}


class PhoneRefusal(EsignError):
    """The phone will not sign what it was asked to sign."""

    def __init__(self, message: str) -> None:
        super().__init__("phone_refused", message)


def _p1363(der: bytes, size: int = 32) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


class PythonPhone:
    """One participant's phone for one signing session."""

    def __init__(self, participant_id: str, curve: ec.EllipticCurve | None = None) -> None:
        self.participant_id = participant_id
        self._key = ec.generate_private_key(curve or ec.SECP256R1())
        self.cert: x509.Certificate | None = None
        self.reviewed: bytes | None = None
        self.reviewed_fingerprint: str | None = None

    def enrol_request(self, challenge: EnrolChallenge) -> EnrolRequest:
        nonce = b64d(challenge.nonce, "nonce")
        spki = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        pop = self._key.sign(POP_PREFIX + nonce, ec.ECDSA(hashes.SHA256()))
        return EnrolRequest(
            type="esign.enrol",
            participant_id=self.participant_id,
            public_key_spki=b64e(spki),
            nonce=challenge.nonce,
            proof_of_possession=b64e(_p1363(pop, (self._key.curve.key_size + 7) // 8)),
        )

    def accept(self, enrolment: Enrolment) -> None:
        cert = x509.load_der_x509_certificate(b64d(enrolment.certificate, "certificate"))
        if cert.public_key() != self._key.public_key():
            raise PhoneRefusal("the certificate is not for my key")
        self.cert = cert

    def review(self, pdf: bytes) -> str:
        """Download and show the current agreement; returns the fingerprint shown.

        The pages must be exactly what the embedded data renders to (the browser compares
        pdf.js's text with the terms it shows from the data; here the same renderer is at
        hand, so the comparison is of the rendering itself)."""
        data = attached_agreement_data(PdfFileReader(io.BytesIO(pdf)))
        agreement = parse_agreement(data)
        _same_rendering(pdf)
        self.reviewed = pdf
        self.reviewed_fingerprint = fingerprint(agreement)
        return self.reviewed_fingerprint

    def check(self, request: SignatureRequest) -> bytes:
        """Every check of the signing page; returns the signed-attributes DER to sign."""
        if self.reviewed is None or self.cert is None:
            raise PhoneRefusal("nothing reviewed or not enrolled")
        prepared = b64d(request.prepared_pdf, "pdf")
        base = self.reviewed
        if (
            request.reviewed_base_len != len(base)
            or request.reviewed_base_sha256 != hashlib.sha256(base).hexdigest()
            or not prepared.startswith(base)
        ):
            raise PhoneRefusal("the prepared file does not extend the reviewed document")
        if request.fingerprint != self.reviewed_fingerprint:
            raise PhoneRefusal("fingerprint differs from the reviewed agreement")
        start, a, b, c = _byte_range(request.byte_range)
        if not (len(base) < a < b and b + c == len(prepared) and start == 0):
            raise PhoneRefusal("ByteRange does not cover the whole new revision")
        if not re.fullmatch(rb"<0*>", prepared[a:b]):
            raise PhoneRefusal("the signature hole is not an empty placeholder")
        declared = re.search(
            rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", prepared[len(base) :]
        )
        if declared is None or [int(x) for x in declared.groups()] != [start, a, b, c]:
            raise PhoneRefusal("ByteRange in the file differs from the request")
        signed_attrs_der = b64d(request.signed_attrs, "signed_attrs", 4096)
        attrs = cms.CMSAttributes.load(signed_attrs_der)
        by_type = {attr["type"].native: attr["values"][0] for attr in attrs}
        if set(by_type) - ALLOWED_SIGNED_ATTRS or len(by_type) != len(attrs):
            raise PhoneRefusal(f"unexpected signed attributes {sorted(by_type)}")
        digest = hashlib.sha256(prepared[:a] + prepared[b : b + c]).digest()
        if by_type.get("message_digest") is None or by_type["message_digest"].native != digest:
            raise PhoneRefusal("messageDigest is not the digest of the prepared revision")
        own = hashlib.sha256(self.cert.public_bytes(serialization.Encoding.DER)).digest()
        signing_cert = by_type.get("signing_certificate_v2")
        if signing_cert is None or signing_cert["certs"][0]["cert_hash"].native != own:
            raise PhoneRefusal("signing-certificate-v2 does not name my certificate")
        return signed_attrs_der

    def sign(self, request: SignatureRequest) -> SignatureReply:
        """The user taps "Sign": check, then sign the exact signed attributes."""
        signed_attrs_der = self.check(request)
        der = self._key.sign(signed_attrs_der, ec.ECDSA(hashes.SHA256()))
        return SignatureReply(
            type="esign.signature", token=request.token, signature_p1363=b64e(_p1363(der))
        )

    def decline(self, reason: str) -> DeclineRequest:
        return DeclineRequest(
            type="esign.decline", participant_id=self.participant_id, reason=reason
        )


def _same_rendering(pdf: bytes) -> None:
    try:
        check_rendering(pdf)
    except EsignError as exc:
        raise PhoneRefusal(f"{exc.code}: {exc.message}") from exc


def _byte_range(values: list[int]) -> tuple[int, int, int, int]:
    if len(values) != 4 or any(not isinstance(v, int) or v < 0 for v in values):
        raise PhoneRefusal("malformed ByteRange")
    return values[0], values[1], values[2], values[3]
