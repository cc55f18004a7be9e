"""PAdES B-LTA validation at a chosen time, never at "whatever time the machine says".

The chain of proof, oldest first (ETSI EN 319 102-1 §5.6.3, simplified to our documents):

* each signature is checked as of its own signature timestamp (its certificate was valid
  and not revoked then, per the revocation data in the DSS), and that signature timestamp as
  of the first document timestamp after the signature;
* each document timestamp is checked as of the next document timestamp (an archive
  timestamp added by the renewal job, with fresh revocation data in the DSS before it);
* the last document timestamp is checked as of the validation time, by a pinned TSA (a TSA
  certificate issued directly by the root) whose certificate is still valid then;
* the last document timestamp covers the whole file: nothing may follow it.

So the result depends only on the file, the root and the validation time: once the embedded
OCSP responses and CRLs are stale, the signatures still verify as of the time the timestamps
prove, for as long as the archive timestamps are renewed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY, ModificationLevel
from pyhanko.sign.validation import async_validate_pdf_signature, async_validate_pdf_timestamp
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from esign.document import SEAL_FIELD
from esign.errors import EsignError


@dataclasses.dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    detail: str = ""


def token_time(token: cms.ContentInfo | cms.SignedData) -> dt.datetime:
    """genTime of an RFC 3161 token (not yet validated)."""
    signed = token["content"] if isinstance(token, cms.ContentInfo) else token
    return signed["encap_content_info"]["content"].parsed["gen_time"].native


def signature_timestamp(signer_info: cms.SignerInfo) -> cms.ContentInfo | None:
    unsigned = signer_info["unsigned_attrs"]
    for attr in [] if isinstance(unsigned, core.Void) else unsigned:
        if attr["type"].native == "signature_time_stamp_token":
            return attr["values"][0]
    return None


def token_signer(signed: cms.SignedData) -> asn1_x509.Certificate | None:
    """The certificate a token names as its signer (by issuer and serial)."""
    sid = signed["signer_infos"][0]["sid"].chosen
    for cert in signed["certificates"] or []:
        cert = cert.chosen
        if isinstance(sid, cms.IssuerAndSerialNumber) and (
            cert.issuer == sid["issuer"] and cert.serial_number == sid["serial_number"].native
        ):
            return cert
    return None


def valid_at(cert: asn1_x509.Certificate | None, when: dt.datetime) -> bool:
    if cert is None:
        return False
    validity = cert["tbs_certificate"]["validity"]
    return validity["not_before"].native <= when <= validity["not_after"].native


def _context(anchors, dss, moment: dt.datetime, *, hard: bool) -> ValidationContext:
    kwargs = dict(
        trust_roots=list(anchors),
        allow_fetching=False,
        moment=moment,
        revocation_mode="require" if hard else "soft-fail",
        retroactive_revinfo=True,
    )
    return dss.as_validation_context(kwargs) if dss is not None else ValidationContext(**kwargs)


def embedded_certificates(reader: PdfFileReader) -> list[x509.Certificate]:
    """Every certificate in the PDF's signatures and DSS (none of them trusted as such)."""
    found: dict[bytes, x509.Certificate] = {}
    for sig in reader.embedded_signatures:
        for cert in sig.signed_data["certificates"] or []:
            found[cert.chosen.dump()] = x509.load_der_x509_certificate(cert.chosen.dump())
    if "/DSS" in reader.root and "/Certs" in reader.root["/DSS"]:
        for ref in reader.root["/DSS"]["/Certs"]:
            der = ref.get_object().data
            found[der] = x509.load_der_x509_certificate(der)
    return list(found.values())


def is_pinned_tsa(cert: x509.Certificate, root: x509.Certificate) -> bool:
    """A TSA certificate issued directly by the root ("pinned TSA", design §9): trusted as an
    anchor for the last timestamp, whose revocation data cannot be fresh years later."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        cert.verify_directly_issued_by(root)
    except (x509.ExtensionNotFound, ValueError, TypeError, InvalidSignature):
        return False
    return list(eku) == [ExtendedKeyUsageOID.TIME_STAMPING]


async def check_sealed(pdf: bytes, root: x509.Certificate, at: dt.datetime) -> None:
    """Raise EsignError("document_modified") unless every finding of `validate` holds."""
    reader = PdfFileReader(io.BytesIO(pdf))
    pinned = [c for c in embedded_certificates(reader) if is_pinned_tsa(c, root)]
    findings = await validate(pdf, _asn1(root), [_asn1(c) for c in pinned], at)
    failed = [f"{f.what}: {f.detail}" for f in findings if not f.ok]
    if failed:
        raise EsignError("document_modified", "; ".join(failed)[:500])


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _holds(status) -> bool:
    return status is not None and status.intact and status.valid and status.trusted


async def validate(
    pdf: bytes,
    root: asn1_x509.Certificate,
    pinned: list[asn1_x509.Certificate],
    at: dt.datetime,
) -> list[Finding]:
    """Every signature and document timestamp of `pdf`, validated as described above."""
    reader = PdfFileReader(io.BytesIO(pdf))
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except (KeyError, ValueError, TypeError):
        dss = None
    findings = [Finding(dss is not None, "revocation data embedded (DSS)")]
    all_sigs = reader.embedded_signatures
    stamps = [s for s in all_sigs if s.sig_object_type == "/DocTimeStamp"]
    times = [token_time(s.signed_data) for s in stamps]
    findings.append(
        Finding(
            bool(stamps) and all_sigs[-1] is stamps[-1],
            "closed by a document timestamp (PAdES B-LTA)",
            f"{len(stamps)} document timestamp(s)",
        )
    )
    findings.append(Finding(times == sorted(times), "document timestamps in time order"))
    for sig in reader.embedded_regular_signatures:
        proof = next(
            (
                t
                for s, t in zip(stamps, times, strict=True)
                if s.signed_revision > sig.signed_revision
            ),
            None,
        )
        findings.append(await _signature(sig, root, dss, proof))
    for n, (stamp, when) in enumerate(zip(stamps, times, strict=True)):
        later = times[n + 1] if n + 1 < len(times) else None
        findings.append(await _document_timestamp(stamp, when, later, root, pinned, dss, at))
    if stamps:
        covered = stamps[-1].evaluate_signature_coverage() == SignatureCoverageLevel.ENTIRE_FILE
        findings.append(Finding(covered, "nothing follows the last document timestamp"))
    return findings


async def _signature(sig: EmbeddedPdfSignature, root, dss, proof: dt.datetime | None) -> Finding:
    what = f"signature {sig.field_name}"
    token = signature_timestamp(sig.signer_info)
    if proof is None or token is None:
        return Finding(False, what, "no signature timestamp or no later document timestamp")
    signed_at = token_time(token)
    try:
        status = await async_validate_pdf_signature(
            sig,
            signer_validation_context=_context([root], dss, signed_at, hard=True),
            ts_validation_context=_context([root], dss, proof, hard=True),
            diff_policy=DEFAULT_DIFF_POLICY,
        )
    except SignatureValidationError as exc:
        return Finding(False, what, str(exc))
    except Exception as exc:  # noqa: BLE001 - damaged bytes inside it (a certificate, a token)
        return Finding(False, what, f"cannot be read: {type(exc).__name__}: {exc}")
    # After the seal only validation data and document timestamps may be added.
    seal = sig.field_name == SEAL_FIELD
    ceiling = ModificationLevel.LTA_UPDATES if seal else ModificationLevel.FORM_FILLING
    level = status.modification_level
    ok = (
        signed_at <= proof
        and _holds(status)
        and _holds(status.timestamp_validity)
        and status.timestamp_validity.timestamp == signed_at
        and status.docmdp_ok
        and level is not None
        and level <= ceiling
    )
    detail = f"as of its timestamp {signed_at.isoformat()}; {status.summary()}"
    return Finding(ok, f"{what} (PAdES B-LTA)", detail)


async def _document_timestamp(stamp, when, later, root, pinned, dss, at) -> Finding:
    """Checked as of the next document timestamp, or — the last one — as of `at` by a
    pinned TSA whose certificate is valid at `at`."""
    moment = later or at
    what = f"document timestamp {when.isoformat()}"
    if when > moment:
        return Finding(False, what, f"made after {moment.isoformat()}")
    tsa = token_signer(stamp.signed_data)
    pinned_der = {c.dump() for c in pinned}
    if later is None and not (tsa is not None and tsa.dump() in pinned_der and valid_at(tsa, at)):
        return Finding(False, what, f"its TSA certificate is not pinned or not valid at {at}")
    anchors = [root, *pinned] if later is None else [root]
    try:
        status = await async_validate_pdf_timestamp(
            stamp, validation_context=_context(anchors, dss, moment, hard=later is not None)
        )
    except SignatureValidationError as exc:
        return Finding(False, what, str(exc))
    except Exception as exc:  # noqa: BLE001 - damaged bytes inside it (a certificate, a token)
        return Finding(False, what, f"cannot be read: {type(exc).__name__}: {exc}")
    detail = f"as of {'the next archive timestamp' if later else 'the validation time'}"
    return Finding(
        _holds(status) and status.timestamp == when, f"{what} intact and trusted", detail
    )
