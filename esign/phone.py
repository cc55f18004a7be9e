"""A Python stand-in for the signing phone: same messages and checks as the browser page.

The browser keeps a non-extractable WebCrypto P-256 key; here a `cryptography` key plays
that part and is never exported. Before signing, the phone checks what the server asks it
to sign (design §7 #1): the prepared file extends the reviewed revision byte for byte, the
ByteRange covers everything but the signature hole, the `messageDigest` in the signed
attributes is the digest of those bytes, and `signing-certificate-v2` names its own cert.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import enumerate_sig_fields

from esign.agreement import Agreement, fingerprint, parse_agreement, signer_role, signing_order
from esign.binding import check_rendering
from esign.document import CERTIFICATION_FIELD, attached_agreement_data
from esign.errors import EsignError
from esign.pki import event_san
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


PROOF_OF_APPROVAL = "1.2.840.113549.1.9.16.6.5"


class PhoneRefusal(EsignError):
    """The phone will not sign what it was asked to sign."""

    def __init__(self, message: str) -> None:
        super().__init__("phone_refused", message)


def _p1363(der: bytes, size: int = 32) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


class PythonPhone:
    """One participant's phone for one signing session."""

    def __init__(
        self,
        participant_id: str,
        curve: ec.EllipticCurve | None = None,
        *,
        root_sha256: str | None = None,
    ) -> None:
        """`root_sha256`: the organisation's root fingerprint printed on the invitation; the
        certificate chain must end there (without it only the chain's own consistency is
        checked — a convenience of tests, the browser page always has it)."""
        self.participant_id = participant_id
        self.root_sha256 = root_sha256
        self._key = ec.generate_private_key(curve or ec.SECP256R1())
        self.cert: x509.Certificate | None = None
        self.reviewed: bytes | None = None
        self.reviewed_fingerprint: str | None = None
        self.agreement: Agreement | None = None

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
        chain = [x509.load_der_x509_certificate(b64d(c, "certificate")) for c in enrolment.chain]
        _check_chain(cert, chain, self.root_sha256)
        self.cert = cert
        if self.agreement is not None:
            _check_identity(cert, self.agreement, self.participant_id)

    def review(self, pdf: bytes) -> str:
        """Download and show the current agreement; returns the fingerprint shown.

        The pages must be exactly what the embedded data renders to (the browser compares
        pdf.js's text with the terms it shows from the data; here the same renderer is at
        hand, so the comparison is of the rendering itself)."""
        data = attached_agreement_data(PdfFileReader(io.BytesIO(pdf)))
        agreement = parse_agreement(data)
        _same_rendering(pdf)
        if self.cert is not None:
            _check_identity(self.cert, agreement, self.participant_id)
        self.agreement = agreement
        self.reviewed = pdf
        self.reviewed_fingerprint = fingerprint(agreement)
        return self.reviewed_fingerprint

    def check(self, request: SignatureRequest, ledger_head: str | None = None) -> bytes:
        """Every check of the signing page; returns the signed-attributes DER to sign.

        `ledger_head`: the session's head as this phone saw it, when it knows it; the
        signature's /Reason must name it."""
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
        agreement = self.agreement
        _check_identity(self.cert, agreement, self.participant_id)
        field = dict(signing_order(agreement)).get(self.participant_id)
        if (request.case_no, request.version, request.field_name) != (
            agreement.case_no,
            agreement.version,
            field,
        ):
            raise PhoneRefusal("the request names another case, version or field")
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
        _check_attribute_values(by_type)
        _check_signature_dictionary(prepared, agreement, field, ledger_head)
        _same_rendering(prepared)
        return signed_attrs_der

    def sign(self, request: SignatureRequest, ledger_head: str | None = None) -> SignatureReply:
        """The user taps "Sign": check, then sign the exact signed attributes."""
        signed_attrs_der = self.check(request, ledger_head)
        der = self._key.sign(signed_attrs_der, ec.ECDSA(hashes.SHA256()))
        return SignatureReply(
            type="esign.signature", token=request.token, signature_p1363=b64e(_p1363(der))
        )

    def decline(self, reason: str) -> DeclineRequest:
        return DeclineRequest(
            type="esign.decline", participant_id=self.participant_id, reason=reason
        )


def _check_chain(cert: x509.Certificate, chain: list[x509.Certificate], root_sha256) -> None:
    """leaf <- signer CA <- root, each signature valid now, CAs marked as CAs, and the root
    the one the invitation named."""
    if len(chain) != 2:
        raise PhoneRefusal("the chain is not signer CA + root")
    ca, root = chain
    if root_sha256 is not None and hashlib.sha256(
        root.public_bytes(serialization.Encoding.DER)
    ).hexdigest() != root_sha256.lower().replace(":", ""):
        raise PhoneRefusal("the chain does not end at the organisation's root")
    now = dt.datetime.now(dt.UTC)
    for child, parent in ((cert, ca), (ca, root), (root, root)):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise PhoneRefusal("the certificate chain does not verify") from exc
        # The leaf's 30-minute window is the server's to enforce (it refuses to embed late);
        # the issuers must be valid now.
        if child is not cert and not child.not_valid_before_utc <= now <= child.not_valid_after_utc:
            raise PhoneRefusal("a CA certificate of the chain is not valid now")
    for issuer in (ca, root):
        try:
            if not issuer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                raise PhoneRefusal("an issuer of the chain is not a CA")
        except x509.ExtensionNotFound as exc:
            raise PhoneRefusal("an issuer of the chain is not a CA") from exc


def _check_identity(cert: x509.Certificate, agreement: Agreement, participant_id: str) -> None:
    """The certificate names me as the agreement does: name, role and case (SAN), and my
    pseudonymous ID digest."""
    role = signer_role(agreement, participant_id)
    if role is None:
        raise PhoneRefusal("I am not a signer of this agreement")
    if role == "mediator":
        name, digest = agreement.mediator.name, f"STAFF-{agreement.mediator.staff_id}"
    else:
        party = next(p for p in agreement.parties if p.participant_id == participant_id)
        name, digest = party.name, party.id_digest
    subject = cert.subject
    names = [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    serials = [a.value for a in subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    if names != [name] or serials != [digest]:
        raise PhoneRefusal(f"the certificate names {names} {serials}, not me")
    if uris != [event_san(agreement.case_no, role)]:
        raise PhoneRefusal(f"the certificate is for {uris}, not this case and role")


def _check_attribute_values(by_type: dict) -> None:
    """content-type id-data, commitment proof-of-approval, and (when present) algorithm
    protection naming SHA-256 with ECDSA."""
    if by_type.get("content_type") is None or by_type["content_type"].native != "data":
        raise PhoneRefusal("content-type is not id-data")
    commitment = by_type.get("commitment_type")
    if commitment is None or commitment["commitment_type_id"].dotted != PROOF_OF_APPROVAL:
        raise PhoneRefusal("commitment type is not proof of approval")
    protection = by_type.get("cms_algorithm_protection")
    if protection is not None and (
        protection["digest_algorithm"]["algorithm"].native != "sha256"
        or protection["signature_algorithm"]["algorithm"].native != "sha256_ecdsa"
    ):
        raise PhoneRefusal("algorithm protection names other algorithms")


def _check_signature_dictionary(
    prepared: bytes, agreement: Agreement, field: str, ledger_head: str | None
) -> None:
    """The new signature dictionary: my field, PAdES, and the /Reason the protocol fixes."""
    reader = PdfFileReader(io.BytesIO(prepared))
    values = {name: value for name, value, _ in enumerate_sig_fields(reader)}
    sig = values.get(field)
    if sig is None:
        raise PhoneRefusal("the prepared revision does not fill my field")
    sig = sig.get_object()
    reason = str(sig.get("/Reason", ""))
    pattern = (
        rf"Signed {re.escape(agreement.case_no)} v{agreement.version}; ledger ([0-9a-f]{{64}}|)"
    )
    found = re.fullmatch(pattern, reason)
    if found is None or (ledger_head is not None and found.group(1) != ledger_head):
        raise PhoneRefusal(f"the signature's reason is {reason!r}")
    if sig.get("/SubFilter") != "/ETSI.CAdES.detached":
        raise PhoneRefusal("not a PAdES signature")
    filled = {name for name, value in values.items() if value is not None}
    if filled != set(_signature_names(agreement, field)):
        raise PhoneRefusal(f"unexpected signatures {sorted(filled)}")


def _signature_names(agreement: Agreement, field: str) -> list[str]:
    """Fields signed up to and including mine: certification, the earlier signers, mine."""
    order = [f for _, f in signing_order(agreement)]
    return [CERTIFICATION_FIELD, *order[: order.index(field) + 1]]


def _same_rendering(pdf: bytes) -> None:
    try:
        check_rendering(pdf)
    except EsignError as exc:
        raise PhoneRefusal(f"{exc.code}: {exc.message}") from exc


def _byte_range(values: list[int]) -> tuple[int, int, int, int]:
    if len(values) != 4 or any(not isinstance(v, int) or v < 0 for v in values):
        raise PhoneRefusal("malformed ByteRange")
    return values[0], values[1], values[2], values[3]
