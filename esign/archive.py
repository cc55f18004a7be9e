"""Archive timestamp renewal: keeps a sealed agreement verifiable for decades (PAdES B-LTA).

A document timestamp proves the file existed at its time only while its TSA certificate is
valid (and its algorithms are strong). Before that ends, `renew` appends, as incremental
updates, fresh validation data for every TSA certificate the file relies on (OCSP and the
root's CRL, made now) and a new document timestamp over everything. `esign.ltv` then checks
each timestamp as of the next one. The TSA key itself is rolled over when its certificate
comes close to its end, so each new archive timestamp outlives the next renewal.
"""

from __future__ import annotations

import datetime as dt
import io

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.signers.pdf_signer import PdfTimeStamper
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.status import SignatureCoverageLevel

from esign import ltv
from esign.errors import EsignError
from esign.pdfsign import asn1_cert, signing_step
from esign.pki import LocalPki

# Renew when the last timestamp's TSA certificate ends within this, or the last timestamp is
# older than MAX_AGE (fresh validation data, and a chance to move to stronger algorithms).
RENEW_BEFORE = dt.timedelta(days=365)
MAX_AGE = dt.timedelta(days=2 * 365)
# Roll the TSA key over when its certificate ends within this (more than one renewal period).
TSA_ROLLOVER_BEFORE = dt.timedelta(days=2 * 365 + 30)
# New seals need a signer CA that outlives their one-day certificate by far.
SIGNER_CA_ROLLOVER_BEFORE = dt.timedelta(days=365)


def _last_timestamp(pdf: bytes):
    reader = PdfFileReader(io.BytesIO(pdf))
    sigs = reader.embedded_signatures
    if not sigs or sigs[-1].sig_object_type != "/DocTimeStamp":
        raise EsignError("document_modified", "a sealed agreement ends with a document timestamp")
    if sigs[-1].evaluate_signature_coverage() != SignatureCoverageLevel.ENTIRE_FILE:
        raise EsignError("document_modified", "a revision follows the last document timestamp")
    return reader, sigs


def due(pdf: bytes, now: dt.datetime) -> bool:
    """Does the last document timestamp need an archive timestamp after it now?"""
    _, sigs = _last_timestamp(pdf)
    tsa = ltv.token_signer(sigs[-1].signed_data)
    if tsa is None:
        return True
    ends = tsa["tbs_certificate"]["validity"]["not_after"].native
    return ends - now < RENEW_BEFORE or now - ltv.token_time(sigs[-1].signed_data) > MAX_AGE


async def renew(pdf: bytes, pki: LocalPki, timestamper: TimeStamper, now: dt.datetime) -> bytes:
    """`pdf` + a DSS update (validation data for every TSA certificate, made `now`) + a new
    document timestamp. Refuses a file that does not end with a whole-file timestamp."""
    _, sigs = _last_timestamp(pdf)
    tsa_certs = {}
    for sig in sigs:
        tokens = [sig.signed_data] if sig.sig_object_type == "/DocTimeStamp" else []
        token = ltv.signature_timestamp(sig.signer_info)
        if token is not None:
            tokens.append(token["content"])
        for signed in tokens:
            cert = ltv.token_signer(signed)
            if cert is not None:
                tsa_certs[cert.dump()] = x509.load_der_x509_certificate(cert.dump())
    ocsps = [pki.ocsp_response(c, now) for c in tsa_certs.values()]
    async with signing_step("archive_failed"):
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
        DocumentSecurityStore.supply_dss_in_writer(
            writer,
            None,
            certs=[asn1_cert(c) for c in [*tsa_certs.values(), pki.root]],
            ocsps=[asn1_ocsp.OCSPResponse.load(o) for o in ocsps],
            crls=[asn1_crl.CertificateList.load(pki.crl(pki.root, now))],
        )
        out = await PdfTimeStamper(timestamper).async_timestamp_pdf(writer, "sha256")
    return out.getvalue()


def maintain_pki(pki: LocalPki, now: dt.datetime) -> list[str]:
    """Roll over the TSA and signer CA keys that end too soon; returns what was rolled."""
    rolled = []
    if pki.tsa_cert.not_valid_after_utc - now < TSA_ROLLOVER_BEFORE:
        pki.roll_over_tsa(now)
        rolled.append("tsa")
    if pki.signer_ca.not_valid_after_utc - now < SIGNER_CA_ROLLOVER_BEFORE:
        pki.roll_over_signer_ca(now)
        rolled.append("signer-ca")
    return rolled
