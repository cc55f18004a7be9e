"""PDF signing operations on agreement bytes: certify, prepare/finish a remote signature,
validate the current revision, seal and close (PAdES B-LTA).

Everything takes and returns whole PDF bytes, so the caller keeps the current revision and
replaces it only after a step fully succeeded: a failure never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io

from asn1crypto import algos, cms, keys
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.ades.api import CAdESSignedAttrSpec, GenericCommitment
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.signers.pdf_signer import (
    PdfSignatureMetadata,
    PdfSigner,
    PdfTBSDocument,
    PdfTimeStamper,
    PostSignInstructions,
)
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from esign import appearance
from esign.agreement import Agreement, parse_agreement
from esign.document import CERTIFICATION_FIELD, SEAL_FIELD, attached_agreement_data
from esign.errors import EsignError

MAX_P256_DER_SIGNATURE = 72


def asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def asn1_private_key(key) -> keys.PrivateKeyInfo:
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return keys.PrivateKeyInfo.load(der)


def cert_store(chain: list[x509.Certificate]) -> SimpleCertificateStore:
    return SimpleCertificateStore.from_certs([asn1_cert(c) for c in chain])


def validation_context(
    root: x509.Certificate,
    *,
    moment: dt.datetime | None = None,
    ocsps: list[bytes] = (),
    crls: list[bytes] = (),
    other_certs: list[x509.Certificate] = (),
) -> ValidationContext:
    """An offline validation context trusting only `root`."""
    return ValidationContext(
        trust_roots=[asn1_cert(root)],
        other_certs=[asn1_cert(c) for c in other_certs],
        ocsps=[asn1_ocsp.OCSPResponse.load(o) for o in ocsps],
        crls=[asn1_crl.CertificateList.load(c) for c in crls],
        allow_fetching=False,
        revocation_mode="soft-fail",
        moment=moment,
    )


async def certify(
    pdf: bytes,
    *,
    seal_cert: x509.Certificate,
    seal_key,
    chain: list[x509.Certificate],
    timestamper: TimeStamper,
    reason: str,
) -> bytes:
    """The platform's certification signature (DocMDP: only form filling and signing)."""
    signer = signers.SimpleSigner(
        signing_cert=asn1_cert(seal_cert),
        signing_key=asn1_private_key(seal_key),
        cert_registry=cert_store(chain),
    )
    meta = PdfSignatureMetadata(
        field_name=CERTIFICATION_FIELD,
        certify=True,
        docmdp_permissions=fields.MDPPerm.FILL_FORMS,
        subfilter=fields.SigSeedSubFilter.PADES,
        md_algorithm="sha256",
        reason=reason,
    )
    async with signing_step("signing_failed"):
        out = await PdfSigner(meta, signer, timestamper=timestamper).async_sign_pdf(
            IncrementalPdfFileWriter(io.BytesIO(pdf))
        )
    return out.getvalue()


class PreparedSignature:
    """A reserved signature revision waiting for the phone's raw ECDSA value."""

    def __init__(self, prepared_pdf, digest, post_sign, signed_attrs, cert, chain, base_len):
        self.prepared_pdf: bytes = prepared_pdf
        self.digest: PreparedByteRangeDigest = digest
        self.post_sign: PostSignInstructions | None = post_sign
        self.signed_attrs: cms.CMSAttributes = signed_attrs
        self.cert: x509.Certificate = cert
        self.chain: list[x509.Certificate] = chain
        self.base_len: int = base_len

    @property
    def signed_attrs_der(self) -> bytes:
        """Exactly the bytes WebCrypto signs (DER SET OF attributes)."""
        return self.signed_attrs.dump()

    @property
    def byte_range(self) -> list[int]:
        start, end = self.digest.reserved_region_start, self.digest.reserved_region_end
        return [0, start, end, len(self.prepared_pdf) - end]


async def prepare_signature(
    pdf: bytes,
    *,
    field_name: str,
    cert: x509.Certificate,
    chain: list[x509.Certificate],
    reason: str,
    location: str,
    timestamper: TimeStamper,
    identity_checks: list[str] | tuple[str, ...] = (),
    moment: dt.datetime | None = None,
) -> PreparedSignature:
    """Add the field's signature revision with a placeholder; return what the phone signs.

    The visible box names the signer, role, `identity_checks` and `moment` in local time
    (esign.appearance)."""
    placeholder = signers.ExternalSigner(
        signing_cert=asn1_cert(cert),
        cert_registry=cert_store(chain),
        signature_value=bytes(MAX_P256_DER_SIGNATURE),
        signature_mechanism=_ecdsa_mechanism(),
    )
    meta = PdfSignatureMetadata(
        field_name=field_name,
        subfilter=fields.SigSeedSubFilter.PADES,
        md_algorithm="sha256",
        reason=reason,
        location=location,
    )
    agreement = _agreement_of(pdf)
    lines = appearance.signer_lines(
        agreement, field_name, identity_checks, moment or dt.datetime.now(dt.UTC)
    )
    # Here the timestamper only sizes the placeholder; the real token is added at finish.
    pdf_signer = PdfSigner(
        meta,
        placeholder,
        timestamper=timestamper,
        stamp_style=appearance.stamp_style(agreement, lines),
    )
    async with signing_step("prepare_failed"):
        digest, tbs, output = await pdf_signer.async_digest_doc_for_signing(
            IncrementalPdfFileWriter(io.BytesIO(pdf)), existing_fields_only=True
        )
        signed_attrs = await placeholder.signed_attrs(
            digest.document_digest,
            "sha256",
            attr_settings=PdfCMSSignedAttributes(
                cades_signed_attrs=CAdESSignedAttrSpec(
                    commitment_type=GenericCommitment.PROOF_OF_APPROVAL.asn1
                )
            ),
            use_pades=True,
        )
    output.seek(0)
    return PreparedSignature(
        output.read(), digest, tbs.post_sign_instructions, signed_attrs, cert, chain, len(pdf)
    )


async def finish_signature(
    prepared: PreparedSignature, der_signature: bytes, timestamper: TimeStamper
) -> bytes:
    """Embed an already verified DER ECDSA signature with a signature timestamp."""
    signer = signers.ExternalSigner(
        signing_cert=asn1_cert(prepared.cert),
        cert_registry=cert_store(prepared.chain),
        signature_value=der_signature,
        signature_mechanism=_ecdsa_mechanism(),
    )
    output = io.BytesIO(prepared.prepared_pdf)
    async with signing_step("embed_failed"):
        signed_data = await signer.async_sign_prescribed_attributes(
            "sha256", prepared.signed_attrs, timestamper=timestamper
        )
        await PdfTBSDocument.async_finish_signing(output, prepared.digest, signed_data)
    return output.getvalue()


@contextlib.asynccontextmanager
async def signing_step(code: str):
    """Turn any failure of pyHanko or a TSA (network, parsing, size) into EsignError(code).

    The callers work on copies of the PDF bytes, so a failed step leaves nothing behind.
    """
    try:
        yield
    except EsignError:
        raise
    except Exception as exc:  # pyHanko and TSA clients raise many unrelated types
        raise EsignError(code, f"{type(exc).__name__}: {exc}") from exc


def _agreement_of(pdf: bytes) -> Agreement:
    """The agreement data embedded in the PDF (what the boxes are written from)."""
    return parse_agreement(attached_agreement_data(PdfFileReader(io.BytesIO(pdf))))


def _ecdsa_mechanism() -> algos.SignedDigestAlgorithm:
    return algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"})


async def check_document(
    pdf: bytes,
    root: x509.Certificate,
    signed_fields: list[str],
    moment: dt.datetime,
    sealed: bool = False,
) -> None:
    """Refuse a current revision that is not exactly: certification + signatures so far
    (+ seal and document timestamp when `sealed`).

    Every signature must be intact, valid and trusted, every change after a signature must
    stay within form filling / signing / validation data, and nothing may follow the last
    signature (or the document timestamp).
    """
    reader = PdfFileReader(io.BytesIO(pdf))
    sigs = reader.embedded_regular_signatures
    names = [s.field_name for s in sigs]
    expected = [CERTIFICATION_FIELD, *signed_fields, *([SEAL_FIELD] if sealed else [])]
    if names != expected:
        raise EsignError("document_modified", f"unexpected signatures {names}")
    vc = validation_context(root, moment=moment)
    for sig in sigs:
        status = await async_validate_pdf_signature(sig, vc)
        level = status.modification_level
        if not (status.intact and status.valid and status.trusted):
            raise EsignError("document_modified", f"signature {sig.field_name} does not hold")
        if level is None or level > ModificationLevel.FORM_FILLING or not status.docmdp_ok:
            raise EsignError(
                "document_modified",
                f"content changed after signature {sig.field_name} ({level})",
            )
    last = reader.embedded_signatures[-1]
    if sealed and last.sig_object_type != "/DocTimeStamp":
        raise EsignError("document_modified", "a sealed agreement ends with a document timestamp")
    if last.signed_revision != reader.xrefs.total_revisions - 1:
        raise EsignError("document_modified", "a revision was appended after the last signature")


async def seal_and_close(
    pdf: bytes,
    *,
    seal_cert: x509.Certificate,
    seal_key,
    chain: list[x509.Certificate],
    timestamper: TimeStamper,
    revocation: tuple[list[bytes], list[bytes]],
    all_certs: list[x509.Certificate],
    reason: str,
) -> bytes:
    """Organisation seal, then DSS (certificates, OCSP and CRLs), then a document timestamp:
    PAdES B-LTA. `revocation` is (OCSP responses, CRLs), made after the last signature."""
    signer = signers.SimpleSigner(
        signing_cert=asn1_cert(seal_cert),
        signing_key=asn1_private_key(seal_key),
        cert_registry=cert_store(chain),
    )
    meta = PdfSignatureMetadata(
        field_name=SEAL_FIELD,
        subfilter=fields.SigSeedSubFilter.PADES,
        md_algorithm="sha256",
        reason=reason,
    )
    ocsps, crls = revocation
    agreement = _agreement_of(pdf)
    style = appearance.stamp_style(
        agreement, appearance.seal_lines(agreement, dt.datetime.now(dt.UTC))
    )
    async with signing_step("signing_failed"):
        sealed = await PdfSigner(
            meta, signer, timestamper=timestamper, stamp_style=style
        ).async_sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf)), existing_fields_only=True)
        writer = IncrementalPdfFileWriter(io.BytesIO(sealed.getvalue()))
        DocumentSecurityStore.supply_dss_in_writer(
            writer,
            None,
            certs=[asn1_cert(c) for c in all_certs],
            ocsps=[asn1_ocsp.OCSPResponse.load(o) for o in ocsps],
            crls=[asn1_crl.CertificateList.load(c) for c in crls],
        )
        out = await PdfTimeStamper(timestamper).async_timestamp_pdf(writer, "sha256")
    return out.getvalue()
