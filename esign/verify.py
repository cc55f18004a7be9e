"""`python server.py verify agreement.pdf|evidence.zip --root <sha256> [--at <ISO time>]
[--recordings DIR]`.

Offline: trusts only the root certificate whose SHA-256 fingerprint the user gives, runs
pyHanko's AdES long-term validation on every signature (with the revocation data embedded
in the PDF), and cross-checks the agreement data, the fingerprint printed on each page, the
signers' certificates against the case and turn order, and — for a bundle — the manifest,
the sealed ledger head, the ledger's signature and certificate events and the recordings.
With ``--recordings`` (a bundle only), each segment the bundle's recording manifest lists is
checked against the stored file in DIR (its size and SHA-256, as the sealed ledger recorded
them): a missing or changed file fails. Exit code 0 only when every check holds.

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
import zlib
from pathlib import Path

import msgspec
from asn1crypto import cms
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import parser as asn1_parser
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_detached_cms
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko_certvalidator import ValidationContext

from esign import ltv
from esign.agreement import fingerprint, parse_agreement, signing_order
from esign.binding import report_binding
from esign.document import CERTIFICATION_FIELD, SEAL_FIELD, attached_agreement_data, page_texts
from esign.errors import EsignError
from esign.evidence import LEDGER_HEAD_TYPE, completion_lines, describe_signatures, readme
from esign.pki import cert_sha256, is_seal_certificate
from recording.manifest import bundle_manifest, file_report

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
    return ltv.embedded_certificates(reader)


def _is_tsa_under(cert: x509.Certificate, root: x509.Certificate) -> bool:
    return ltv.is_pinned_tsa(cert, root)


def _anchors(certs: list[x509.Certificate], root_fp: str):
    root = next((c for c in certs if cert_sha256(c) == root_fp), None)
    if root is None:
        return None, []
    pinned = {cert_sha256(c): c for c in certs if c is not root and _is_tsa_under(c, root)}
    return root, list(pinned.values())


def _padding_is_clean(sig) -> bool:
    """The unsigned tail of a /Contents hole must be zeros, or bytes could hide there.

    Where the signature ends is read from its outer DER header: re-encoding the parsed CMS to
    measure it took minutes for the large timestamp tokens of a ten-year archive chain (and would
    measure a BER encoding wrongly). Whether the CMS itself is intact is the signature checks'
    business."""
    raw = sig.pkcs7_content
    try:
        _class, _method, _tag, header, content, trailer = asn1_parser.parse(raw, strict=False)
    except ValueError:
        return False
    return not any(raw[len(header) + len(content) + len(trailer) :])


def _cert(cert: asn1_x509.Certificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(cert.dump())


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


async def _validate_pdf(pdf: bytes, root, pinned, at: dt.datetime, report: Report) -> None:
    reader = PdfFileReader(io.BytesIO(pdf))
    sigs = reader.embedded_regular_signatures
    report.check(bool(sigs), "the PDF carries signatures", f"{len(sigs)} found")
    for finding in await ltv.validate(pdf, _asn1(root), [_asn1(c) for c in pinned], at):
        report.check(finding.ok, finding.what, finding.detail)
    report.check(
        all(_padding_is_clean(sig) for sig in reader.embedded_signatures),
        "no bytes hidden in signature padding",
    )
    platform = [s for s in sigs if s.field_name in (SEAL_FIELD, CERTIFICATION_FIELD)]
    report.check(
        len(platform) == 2 and all(is_seal_certificate(_cert(s.signer_cert)) for s in platform),
        "certification and seal are the organisation's (seal certificate policy)",
    )


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
    report_binding(pdf, report)
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


async def _check_seal(data: bytes, p7s: bytes, root, pinned, revocation, at) -> str | None:
    """None when `p7s` is the organisation seal over `data` with a signature timestamp, the
    seal certificate valid as of that timestamp (checked with the bundled revocation data)
    and the timestamp itself trusted as of `at`; otherwise what is wrong."""
    try:
        signed = cms.ContentInfo.load(p7s)["content"]
        signer_info = signed["signer_infos"][0]
        seal_cert = ltv.token_signer(signed)
        token = ltv.signature_timestamp(signer_info)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        return f"unreadable seal: {exc}"
    if seal_cert is None or not is_seal_certificate(_cert(seal_cert)):
        return "not signed with the organisation's seal certificate"
    if token is None:
        return "the seal carries no timestamp"
    sealed_at = ltv.token_time(token)
    tsa = ltv.token_signer(token["content"])
    if tsa is None or tsa.dump() not in {_asn1(c).dump() for c in pinned}:
        return "the seal's timestamp is not by a TSA of this root"
    if not ltv.valid_at(tsa, at):
        return f"the seal's TSA certificate is not valid at {at.isoformat()}"
    ocsps, crls = revocation
    try:
        status = await async_validate_detached_cms(
            data,
            signed,
            signer_validation_context=ValidationContext(
                trust_roots=[_asn1(root)],
                allow_fetching=False,
                moment=sealed_at,
                revocation_mode="require",
                retroactive_revinfo=True,
                ocsps=ocsps,
                crls=crls,
            ),
            ts_validation_context=ValidationContext(
                trust_roots=[_asn1(c) for c in pinned],
                allow_fetching=False,
                moment=at,
                revocation_mode="soft-fail",
            ),
        )
    except (ValueError, SignatureValidationError) as exc:
        return str(exc)
    stamp = status.timestamp_validity
    if not (status.intact and status.valid and status.trusted):
        return f"seal signature does not hold ({status.summary()})"
    if stamp is None or not (stamp.intact and stamp.valid and stamp.trusted):
        return "the seal's timestamp does not hold"
    if stamp.timestamp != sealed_at:
        return "the seal's timestamp time does not match"
    return None


def _revocation(files: dict[str, bytes]):
    ocsps, crls = [], []
    for name, body in files.items():
        if name.startswith("pki/revocation/") and name.endswith(".ocsp"):
            ocsps.append(asn1_ocsp.OCSPResponse.load(body))
        elif name.startswith("pki/revocation/") and name.endswith(".crl"):
            crls.append(asn1_crl.CertificateList.load(body))
    return ocsps, crls


def _flat(text: str) -> str:
    return "".join(text.split())


async def _check_bundle(
    files: dict[str, bytes], root, pinned, at, report: Report, agreement, infos
):
    head_bytes = files.get("ledger-head.json", b"")
    try:
        head = msgspec.json.decode(head_bytes, type=dict)
        problem = await _check_seal(
            head_bytes, files["ledger-head.json.p7s"], root, pinned, _revocation(files), at
        )
    except (KeyError, ValueError, msgspec.DecodeError) as exc:
        head, problem = {}, str(exc)
    report.check(
        problem is None,
        "ledger head sealed by the organisation (CAdES, timestamped)",
        problem or f"sealed at {head.get('sealed_at')}",
    )
    members = head.get("members") if isinstance(head.get("members"), dict) else {}
    expected = set(members) | {"ledger-head.json", "ledger-head.json.p7s"}
    intact = expected == set(files) and all(
        hashlib.sha256(files[name]).hexdigest() == digest for name, digest in members.items()
    )
    report.check(intact, "every bundle file is listed in the sealed head", f"{len(files)} files")
    pdf = files["agreement.pdf"]
    data = attached_agreement_data(PdfFileReader(io.BytesIO(pdf)))
    report.check(files.get("agreement.json") == data, "agreement.json equals the embedded data")
    report.check(
        agreement is not None
        and head.get("case_no") == agreement.case_no
        and head.get("version") == agreement.version
        and head.get("session_id") == agreement.session_id
        and head.get("agreement_fingerprint") == fingerprint(agreement),
        "ledger head names this case, version and session",
    )
    report.check(
        files.get("signatures.json") == msgspec.json.encode(describe_signatures(pdf)),
        "signatures.json describes the PDF's signatures",
    )
    report.check(
        files.get("README-verify.txt") == readme(root).encode(),
        "README names the root you gave",
    )
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
    if agreement is not None:
        try:
            shown = page_texts(PdfFileReader(io.BytesIO(files["certificate-of-completion.pdf"])))
            shown_text = _flat("".join(line for page in shown for line in page))
            derived = completion_lines(agreement, pdf, infos or [], events, head)
        except (KeyError, TypeError, PdfError, ValueError):
            shown_text, derived = "", [("-", 0)]
        report.check(
            shown_text == _flat("".join(text for text, _ in derived)),
            "certificate of completion matches the signed data",
        )
    if "recording-manifest.json" in files:
        try:
            listed = msgspec.json.decode(files["recording-manifest.json"])
        except msgspec.DecodeError:
            listed = None
        report.check(
            isinstance(listed, dict) and listed == bundle_manifest(events),
            "recording manifest is the one the sealed ledger states",
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


def _check_recordings(files: dict[str, bytes], directory: Path, report: Report) -> None:
    """Each segment of the bundle's recording manifest against its stored file in ``directory``
    (or ``directory/<session>``, the server's layout). Trust comes from the sealed head, which
    lists the manifest's hash; the files only have to match it."""
    try:
        m = msgspec.json.decode(files["recording-manifest.json"])
        segments = m["segments"]
        session = m.get("session")
    except (KeyError, TypeError, msgspec.DecodeError):
        report.check(False, "the bundle has a recording manifest (--recordings)")
        return
    if isinstance(session, str) and (directory / session).is_dir():
        directory = directory / session
    report.info(f"recordings in {directory}: {len(segments)} segments listed")
    try:
        rows = file_report(m, directory)
    except (KeyError, TypeError, ValueError):  # a manifest that is not what the ledger wrote
        report.check(False, "the recording manifest can be read")
        return
    if any(status != "deleted" for _, status, _ in rows) or not rows:
        report.check(directory.is_dir(), "recording directory exists", str(directory))
    for name, status, s in rows:
        if status == "unlisted":
            report.info(f"{name}: on disk but not in the ledger (not evidence)")
            continue
        if status == "deleted":  # the sealed ledger says retention removed it: not missing
            report.info(
                f"{name}: deleted by the ledger's seq {s['seq']} ({s.get('reason')}, "
                f"{s.get('retention_days')} days)"
                + ("; still on disk, the next purge removes it" if s["on_disk"] else "")
            )
            continue
        report.check(
            status == "ok",
            f"segment {name} matches the ledger",
            status if status != "ok" else f"{s['bytes']} bytes, SHA-256 {s['sha256'][:16]}…",
        )


async def verify(
    path: str, root_fp: str, at: dt.datetime | None, out, clock=None, recordings=None
) -> int:
    """Check `path`; the validation time is `at`, else the (injectable) clock's now;
    `recordings`: a directory of stored segments to check against the bundle's manifest."""
    report = Report(out)
    out.write(f"Parley agreement verification: {path}\n")
    pdf, files = _load(path)
    if recordings is not None and files is None:
        raise EsignError("invalid", "--recordings needs an evidence.zip, not a PDF")
    try:
        return await _verify_loaded(pdf, files, root_fp, at, report, out, clock, recordings)
    except (EsignError, OSError):  # a usage error (a missing --recordings directory): exit 2
        raise
    except Exception as exc:  # noqa: BLE001
        # A flipped byte can make the PDF, or a structure inside it, unparsable (pyHanko and
        # cryptography raise many kinds): that is a failed check, not a usage error or a crash.
        report.check(False, f"the PDF can be read ({type(exc).__name__})")
        out.write("RESULT: NOT VERIFIED (the document is damaged or altered)\n")
        return 1


async def _verify_loaded(pdf, files, root_fp, at, report: Report, out, clock, recordings) -> int:
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
    at = at or (clock or (lambda: dt.datetime.now(dt.UTC)))()
    report.info(f"validation time {at.isoformat()}")
    await _validate_pdf(pdf, root, pinned, at, report)
    agreement, infos = _check_agreement(pdf, report)
    if files is not None:
        await _check_bundle(files, root, pinned, at, report, agreement, infos)
    if recordings is not None:
        _check_recordings(files, Path(recordings), report)
    verdict = "VERIFIED" if report.failures == 0 else f"NOT VERIFIED ({report.failures} failed)"
    out.write(f"RESULT: {verdict}\n")
    return 0 if report.failures == 0 else 1


def main(argv: list[str]) -> int:
    """Entry point: `argv` is what follows `verify` on the command line."""
    parser = argparse.ArgumentParser(prog="server.py verify", description=__doc__.split("\n")[0])
    parser.add_argument("path", help="agreement.pdf or evidence.zip")
    parser.add_argument("--root", required=True, help="SHA-256 (hex) of the trusted root cert")
    parser.add_argument("--at", help="validation time, ISO 8601 (simulate a later check)")
    parser.add_argument(
        "--recordings",
        metavar="DIR",
        help="check the stored recording segments (a session's directory, or the recordings "
        "directory holding it) against the bundle's recording manifest",
    )
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
        return asyncio.run(verify(args.path, root_fp, at, sys.stdout, recordings=args.recordings))
    except (OSError, EsignError, PdfError, ValueError, KeyError, zlib.error) as exc:
        sys.stderr.write(f"error: cannot read {args.path}: {exc}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
