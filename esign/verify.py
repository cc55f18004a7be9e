"""`python server.py verify agreement.pdf|evidence.zip --root <sha256> [--at <ISO time>]`.

Offline: trusts only the root certificate whose SHA-256 fingerprint the user gives, runs
pyHanko's AdES long-term validation on every signature (with the revocation data embedded
in the PDF), and cross-checks the agreement data, the fingerprint printed on each page, the
signers' certificates against the case and turn order, and — for a bundle — the manifest,
the sealed ledger head, the ledger's signature and certificate events and the recordings.
Exit code 0 only when every check holds.

Time-stamping authority certificates issued directly by that root are trusted as anchors
too ("pinned TSA", design §9): years later the latest document timestamp can only be
trusted that way, or through a newer archive timestamp (`pyhanko sign ltaupdate`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import io
import logging
import sys
import zipfile

import msgspec
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY
from pyhanko.sign.validation import async_validate_detached_cms, async_validate_pdf_timestamp
from pyhanko.sign.validation.ades import ades_lta_validation
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.policy_decl import PdfSignatureValidationSpec, SignatureValidationSpec
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.policy_decl import (
    REQUIRE_REVINFO,
    CertRevTrustPolicy,
    FreshnessReqType,
)
from pyhanko_certvalidator.registry import SimpleTrustManager

from esign.agreement import fingerprint, parse_agreement, signing_order
from esign.document import SEAL_FIELD, attached_agreement_data, page_texts
from esign.errors import EsignError
from esign.evidence import LEDGER_HEAD_TYPE, describe_signatures
from esign.pki import cert_sha256

MAX_INPUT_BYTES = 200 * 1024 * 1024


class Report:
    """Collects named checks and prints them as a readable report."""

    def __init__(self, out) -> None:
        self.out = out
        self.failures = 0

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        self.failures += 0 if ok else 1
        mark = "OK  " if ok else "FAIL"
        self.out.write(f"[{mark}] {what}{': ' + detail if detail else ''}\n")
        return ok

    def info(self, text: str) -> None:
        self.out.write(f"       {text}\n")


def _all_certs(reader: PdfFileReader) -> list[x509.Certificate]:
    found: dict[str, x509.Certificate] = {}
    for sig in reader.embedded_signatures:
        for cert in sig.signed_data["certificates"] or []:
            parsed = x509.load_der_x509_certificate(cert.chosen.dump())
            found[cert_sha256(parsed)] = parsed
    if "/DSS" in reader.root and "/Certs" in reader.root["/DSS"]:
        for ref in reader.root["/DSS"]["/Certs"]:
            parsed = x509.load_der_x509_certificate(ref.get_object().data)
            found[cert_sha256(parsed)] = parsed
    return list(found.values())


def _is_tsa_under(cert: x509.Certificate, root: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        cert.verify_directly_issued_by(root)
    except (x509.ExtensionNotFound, ValueError, TypeError, InvalidSignature):
        return False
    return list(eku) == [ExtendedKeyUsageOID.TIME_STAMPING]


def _anchors(certs: list[x509.Certificate], root_fp: str):
    root = next((c for c in certs if cert_sha256(c) == root_fp), None)
    if root is None:
        return None, []
    pinned = {cert_sha256(c): c for c in certs if c is not root and _is_tsa_under(c, root)}
    return root, list(pinned.values())


def _padding_is_clean(sig) -> bool:
    """The unsigned tail of a /Contents hole must be zeros, or bytes could hide there."""
    raw = sig.pkcs7_content
    try:
        used = len(cms.ContentInfo.load(raw, strict=False).dump())
    except ValueError:
        return False
    return not any(raw[used:])


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


async def _validate_pdf(pdf: bytes, anchors, at: dt.datetime | None, report: Report) -> None:
    reader = PdfFileReader(io.BytesIO(pdf))
    policy = CertValidationPolicySpec(
        trust_manager=SimpleTrustManager.build(trust_roots=[_asn1(c) for c in anchors]),
        revinfo_policy=CertRevTrustPolicy(
            REQUIRE_REVINFO,
            freshness=None,
            freshness_req_type=FreshnessReqType.MAX_DIFF_REVOCATION_VALIDATION,
        ),
    )
    spec = PdfSignatureValidationSpec(
        SignatureValidationSpec(cert_validation_policy=policy), diff_policy=DEFAULT_DIFF_POLICY
    )
    timing = ValidationTimingInfo(at, at, point_in_time_validation=True) if at else None
    sigs = reader.embedded_regular_signatures
    report.check(bool(sigs), "the PDF carries signatures", f"{len(sigs)} found")
    for sig in sigs:
        try:
            result = await ades_lta_validation(
                sig, spec, timing_info=timing or ValidationTimingInfo.now()
            )
            status = result.api_status
            ok = status is not None and status.bottom_line
            summary = status.summary() if status is not None else str(result.ades_subindic)
        except SignatureValidationError as exc:
            ok, summary = False, str(exc)
        report.check(ok, f"signature {sig.field_name} (AdES long-term validation)", summary)
    last = reader.embedded_signatures[-1] if reader.embedded_signatures else None
    report.check(
        last is not None and last.sig_object_type == "/DocTimeStamp",
        "closed by a document timestamp (PAdES B-LTA)",
    )
    vc = ValidationContext(
        trust_roots=[_asn1(c) for c in anchors],
        allow_fetching=False,
        revocation_mode="soft-fail",
        moment=at,
    )
    for sig in reader.embedded_signatures:
        if sig.sig_object_type == "/DocTimeStamp":
            try:
                status = await async_validate_pdf_timestamp(sig, validation_context=vc)
                ok = status.intact and status.valid and status.trusted
            except SignatureValidationError:
                ok = False
            report.check(ok, f"document timestamp {sig.field_name} intact and trusted")
    report.check(
        all(_padding_is_clean(sig) for sig in reader.embedded_signatures),
        "no bytes hidden in signature padding",
    )
    report.check("/DSS" in reader.root, "revocation data embedded (DSS)")


def _check_agreement(pdf: bytes, report: Report):
    reader = PdfFileReader(io.BytesIO(pdf))
    try:
        data = attached_agreement_data(reader)
        agreement = parse_agreement(data)
    except (KeyError, EsignError) as exc:
        report.check(False, "embedded agreement data", str(exc))
        return None, None
    fp = fingerprint(agreement)
    report.check(True, "embedded agreement data", f"{agreement.case_no} v{agreement.version}")
    report.info(f"fingerprint {fp}")
    pages = page_texts(reader)
    printed = all(any(fp in line for line in lines) for lines in pages)
    report.check(printed, "fingerprint printed on every page", f"{len(pages)} page(s)")
    infos = describe_signatures(pdf)
    approvals = [i for i in infos if i.kind == "approval" and i.field != SEAL_FIELD]
    expected = signing_order(agreement)
    report.check(
        [i.field for i in approvals] == [field for _, field in expected],
        "every signer signed, in turn order",
        ", ".join(f"{i.field}={i.signer_name}" for i in approvals),
    )
    names = {p.participant_id: p.name for p in agreement.parties}
    names[agreement.mediator.participant_id] = agreement.mediator.name
    for info, (participant, field) in zip(approvals, expected, strict=False):
        role = "mediator" if field == "Mediator" else field.rstrip("0123456789").lower()
        bound = info.case_no == agreement.case_no and info.role == role
        report.check(
            bound and info.signer_name == names[participant],
            f"{field} certificate bound to this case, role and signer",
            f"{info.signer_name} / {info.case_no} / {info.role}",
        )
    report.check(any(i.field == SEAL_FIELD for i in infos), "organisation seal present")
    return agreement, infos


async def _check_bundle(files: dict[str, bytes], root, anchors, report: Report, agreement, infos):
    try:
        manifest = msgspec.json.decode(files["manifest.json"], type=dict[str, str])
    except (KeyError, msgspec.DecodeError, msgspec.ValidationError):
        report.check(False, "bundle manifest readable")
        return
    listed = set(manifest) | {"manifest.json"}
    intact = listed == set(files) and all(
        hashlib.sha256(files[name]).hexdigest() == digest for name, digest in manifest.items()
    )
    report.check(intact, "bundle files match the manifest", f"{len(manifest)} files")
    pdf = files["agreement.pdf"]
    data = attached_agreement_data(PdfFileReader(io.BytesIO(pdf)))
    report.check(files.get("agreement.json") == data, "agreement.json equals the embedded data")
    head_bytes = files.get("ledger-head.json", b"")
    try:
        head = msgspec.json.decode(head_bytes, type=dict)
        signed = cms.ContentInfo.load(files["ledger-head.json.p7s"])["content"]
        status = await async_validate_detached_cms(
            head_bytes,
            signed,
            signer_validation_context=ValidationContext(
                trust_roots=[_asn1(c) for c in anchors],
                allow_fetching=False,
                revocation_mode="soft-fail",
            ),
        )
        sealed_ok = status.intact and status.valid and status.trusted
    except (KeyError, ValueError, msgspec.DecodeError, SignatureValidationError) as exc:
        head, sealed_ok = {}, False
        report.info(str(exc))
    report.check(sealed_ok, "ledger head sealed by the organisation (CAdES, timestamped)")
    ledger_bytes = files.get("ledger.jsonl", b"")
    report.check(
        head.get("type") == LEDGER_HEAD_TYPE
        and head.get("ledger_sha256") == hashlib.sha256(ledger_bytes).hexdigest()
        and head.get("agreement_pdf_sha256") == hashlib.sha256(pdf).hexdigest(),
        "ledger head names this ledger and this PDF",
    )
    try:
        events = [msgspec.json.decode(line) for line in ledger_bytes.splitlines() if line]
    except msgspec.DecodeError:
        events = []
    embedded = {
        e["data"].get("field"): e["data"].get("pdf_sha256")
        for e in events
        if isinstance(e, dict) and e.get("type") == "signature.embedded"
    }
    issued = {
        e["data"].get("cert_sha256")
        for e in events
        if isinstance(e, dict) and e.get("type") == "cert.issued"
    }
    for info in infos or []:
        if info.kind != "approval" or info.field == SEAL_FIELD:
            continue
        report.check(
            embedded.get(info.field) == info.revision_sha256,
            f"ledger recorded the {info.field} revision",
        )
        report.check(
            info.signer_cert_sha256 in issued, f"ledger recorded the {info.field} certificate"
        )
    if agreement is not None and agreement.recordings_so_far:
        try:
            listed_recordings = msgspec.json.decode(files["recordings.json"], type=list[dict])
        except (KeyError, msgspec.DecodeError, msgspec.ValidationError):
            listed_recordings = []
        known = {(r.get("file"), r.get("sha256")) for r in listed_recordings}
        report.check(
            all((r.file, r.sha256) in known for r in agreement.recordings_so_far),
            "recording hashes in the agreement are in recordings.json",
        )


def _load(path: str) -> tuple[bytes, dict[str, bytes] | None]:
    with open(path, "rb") as fh:
        raw = fh.read(MAX_INPUT_BYTES + 1)
    if len(raw) > MAX_INPUT_BYTES:
        raise EsignError("too_large", "input larger than 200 MiB")
    if raw.startswith(b"%PDF-"):
        return raw, None
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as bundle:
            files = {}
            for info in bundle.infolist():
                if info.file_size > MAX_INPUT_BYTES:
                    raise EsignError("too_large", f"{info.filename} too large")
                files[info.filename] = bundle.read(info)
    except zipfile.BadZipFile as exc:
        raise EsignError("unknown_format", "neither a PDF nor an evidence zip") from exc
    if "agreement.pdf" not in files:
        raise EsignError("unknown_format", "the zip has no agreement.pdf")
    return files["agreement.pdf"], files


async def verify(path: str, root_fp: str, at: dt.datetime | None, out) -> int:
    report = Report(out)
    out.write(f"Parley agreement verification: {path}\n")
    pdf, files = _load(path)
    certs = _all_certs(PdfFileReader(io.BytesIO(pdf)))
    if files is not None:
        for name, body in files.items():
            if name.startswith("pki/") and name.endswith(".pem"):
                certs.append(x509.load_pem_x509_certificate(body))
    root, pinned = _anchors(certs, root_fp)
    if not report.check(root is not None, "root certificate with the given fingerprint"):
        out.write("RESULT: NOT VERIFIED\n")
        return 1
    report.info(root.subject.rfc4514_string())
    for tsa in pinned:
        report.info(f"pinned TSA {tsa.subject.rfc4514_string()} {cert_sha256(tsa)[:16]}…")
    if at is not None:
        report.info(f"validation time {at.isoformat()}")
    anchors = [root, *pinned]
    await _validate_pdf(pdf, anchors, at, report)
    agreement, infos = _check_agreement(pdf, report)
    if files is not None:
        await _check_bundle(files, root, anchors, report, agreement, infos)
    verdict = "VERIFIED" if report.failures == 0 else f"NOT VERIFIED ({report.failures} failed)"
    out.write(f"RESULT: {verdict}\n")
    return 0 if report.failures == 0 else 1


def main(argv: list[str]) -> int:
    """Entry point: `argv` is what follows `verify` on the command line."""
    parser = argparse.ArgumentParser(prog="server.py verify", description=__doc__.split("\n")[0])
    parser.add_argument("path", help="agreement.pdf or evidence.zip")
    parser.add_argument("--root", required=True, help="SHA-256 (hex) of the trusted root cert")
    parser.add_argument("--at", help="validation time, ISO 8601 (simulate a later check)")
    args = parser.parse_args(argv)
    for noisy in ("pyhanko", "pyhanko_certvalidator"):  # the report says what failed
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    root_fp = args.root.lower().replace(":", "")
    if len(root_fp) != 64 or any(c not in "0123456789abcdef" for c in root_fp):
        sys.stderr.write("error: --root must be a SHA-256 fingerprint (64 hex digits)\n")
        return 2
    at = None
    if args.at:
        try:
            at = dt.datetime.fromisoformat(args.at)
        except ValueError:
            sys.stderr.write("error: --at must be an ISO 8601 time\n")
            return 2
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.UTC)
    try:
        return asyncio.run(verify(args.path, root_fp, at, sys.stdout))
    except (OSError, EsignError, PdfError, ValueError, KeyError) as exc:
        sys.stderr.write(f"error: cannot read {args.path}: {exc}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
