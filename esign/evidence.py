"""The evidence bundle: everything a court or a party needs to check an agreement offline.

`evidence.zip` holds the sealed PDF, the agreement data, the ledger excerpt the caller gives
(one canonical JSON event per line), the public PKI certificates, the certificates used to
sign, the recording hashes when there are any (``recordings.json`` as the caller lists them, and
``recording-manifest.json``: the session's recording folded from this very ledger by
``recording.manifest``, so ``verify --recordings DIR`` can check the stored segment files),
a certificate-of-completion page and
`ledger-head.json`: the ledger's digest and the SHA-256 of every other member, sealed by the
organisation seal with a timestamp (CAdES detached, `ledger-head.json.p7s`), plus the seal's
revocation data so the seal can be checked at its timestamp's time years later. So every
member is bound to the seal; the completion page is also re-derived from signed data by
`verify`. Trust never comes from the bundle: the verifier is given the root fingerprint
out of band.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import zipfile

import msgspec
from asn1crypto import cms, core
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers
from pyhanko.sign.timestamps.api import TimeStamper

from esign.agreement import Agreement, canonical_json, fingerprint, parse_agreement
from esign.document import attached_agreement_data, render_text_pdf
from esign.pdfsign import asn1_cert, asn1_private_key, cert_store
from esign.pki import SAN_PREFIX, LocalPki, cert_sha256
from recording.manifest import bundle_manifest

LEDGER_HEAD_TYPE = "parley-ledger-head/v1"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)

COMPLETION_WORDS = {
    "zh-CN": {
        "title": "签署完成证明",
        "case": "案号：{case_no}　版本：{version}",
        "fingerprint": "协议指纹（SHA-256）：{fp}",
        "pdf": "协议文件 SHA-256：{sha}",
        "signer": "{field}：{name}（{role}）",
        "when": "　签署时间（时间戳）：{time}",
        "how": "　身份核验：{checks}",
        "cert": "　证书 SHA-256：{sha}",
        "seal": "调解组织印章及文档时间戳：{time}",
        "ledger": "会话记录头：{head}（{n} 条事件）",
        "note": "核验方法：python server.py verify evidence.zip --root <根证书 SHA-256 指纹>",
    },
    "en": {
        "title": "Certificate of Completion",
        "case": "Case {case_no}, version {version}",
        "fingerprint": "Agreement fingerprint (SHA-256): {fp}",
        "pdf": "Agreement PDF SHA-256: {sha}",
        "signer": "{field}: {name} ({role})",
        "when": "  Signed at (timestamp): {time}",
        "how": "  Identified by: {checks}",
        "cert": "  Certificate SHA-256: {sha}",
        "seal": "Organisation seal and document timestamp: {time}",
        "ledger": "Ledger head: {head} ({n} events)",
        "note": "Verify with: python server.py verify evidence.zip --root <root SHA-256>",
    },
}


ROLE_NAMES = {"zh-CN": {"applicant": "申请人", "respondent": "被申请人", "mediator": "调解员"}}


class SignatureInfo(msgspec.Struct, frozen=True):
    """What one signature in the PDF says about itself (not yet validated)."""

    field: str | None
    kind: str  # certification | approval | document_timestamp
    signer_name: str
    signer_cert_sha256: str
    case_no: str | None
    role: str | None
    timestamp: str | None
    revision_sha256: str


def _tst_time(signed_data: cms.SignedData) -> dt.datetime:
    return signed_data["encap_content_info"]["content"].parsed["gen_time"].native


def describe_signatures(pdf: bytes) -> list[SignatureInfo]:
    """Every signature of the PDF with signer, SAN binding, timestamp and revision hash."""
    reader = PdfFileReader(io.BytesIO(pdf))
    out = []
    for sig in reader.embedded_signatures:
        cert = x509.load_der_x509_certificate(sig.signer_cert.dump())
        byte_range = [int(v) for v in sig.byte_range]
        revision = pdf[: byte_range[2] + byte_range[3]]
        if sig.sig_object_type == "/DocTimeStamp":
            kind, when = "document_timestamp", _tst_time(sig.signed_data)
        else:
            kind = "certification" if "/Reference" in sig.sig_object else "approval"
            when = None
            unsigned = sig.signer_info["unsigned_attrs"]
            for attr in [] if isinstance(unsigned, core.Void) else unsigned:
                if attr["type"].native == "signature_time_stamp_token":
                    when = _tst_time(attr["values"][0]["content"])
        case_no = role = None
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
                if uri.startswith(SAN_PREFIX):
                    case_no, _, role = uri[len(SAN_PREFIX) :].rpartition(":role:")
        except x509.ExtensionNotFound:
            pass
        names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        out.append(
            SignatureInfo(
                field=str(sig.field_name) if kind != "document_timestamp" else None,
                kind=kind,
                signer_name=str(names[0].value) if names else "",
                signer_cert_sha256=cert_sha256(cert),
                case_no=case_no,
                role=role,
                timestamp=when.isoformat() if when else None,
                revision_sha256=hashlib.sha256(revision).hexdigest(),
            )
        )
    return out


def ledger_jsonl(events: list[dict]) -> bytes:
    """One JSON object per line, keys sorted (the ledger's own format is kept as given)."""
    return b"".join(msgspec.json.encode(e, order="sorted") + b"\n" for e in events)


def completion_lines(
    agreement: Agreement, pdf: bytes, infos: list[SignatureInfo], ledger: list[dict], head: dict
) -> list[tuple[str, float]]:
    """The certificate of completion's text, derived only from signed data (the PDF's
    signatures, the sealed ledger and head), so `verify` can derive it again and compare."""
    words = COMPLETION_WORDS[agreement.language]
    checks_by_cert = {
        e["data"].get("cert_sha256"): ", ".join(e["data"].get("identity_evidence", []))
        for e in ledger
        if e.get("type") == "cert.issued"
    }
    lines: list[tuple[str, float]] = [(words["title"], 18), ("", 8)]
    lines.append((words["case"].format(case_no=agreement.case_no, version=agreement.version), 10))
    lines.append((words["fingerprint"].format(fp=fingerprint(agreement)), 8))
    lines.append((words["pdf"].format(sha=hashlib.sha256(pdf).hexdigest()), 8))
    lines.append(("", 8))
    for info in infos:
        if info.kind != "approval" or info.field == "OrganisationSeal":
            continue
        role = ROLE_NAMES.get(agreement.language, {}).get(info.role, info.role)
        lines.append(("", 6))
        lines.append(
            (words["signer"].format(field=info.field, name=info.signer_name, role=role), 11)
        )
        lines.append((words["when"].format(time=info.timestamp), 9))
        checks = checks_by_cert.get(info.signer_cert_sha256, "-")
        lines.append((words["how"].format(checks=checks), 9))
        lines.append((words["cert"].format(sha=info.signer_cert_sha256), 8))
    closing = [i.timestamp for i in infos if i.kind == "document_timestamp"]
    lines.append(("", 8))
    lines.append((words["seal"].format(time=closing[-1] if closing else "-"), 10))
    lines.append((words["ledger"].format(head=head["ledger_sha256"], n=head["entries"]), 8))
    lines.append(("", 8))
    lines.append((words["note"], 9))
    return lines


def completion_page(agreement: Agreement, lines: list[tuple[str, float]]) -> bytes:
    """The human-readable certificate of completion."""
    return render_text_pdf(lines, agreement.language, COMPLETION_WORDS[agreement.language]["title"])


def seal_revocation(pki: LocalPki, seal: x509.Certificate, now: dt.datetime) -> dict[str, bytes]:
    """OCSP for the seal certificate and both CRLs, made when sealing: what lets the seal be
    validated at its timestamp's time after they have all expired."""
    return {
        "pki/revocation/seal.ocsp": pki.ocsp_response(seal, now),
        "pki/revocation/signer-ca.ocsp": pki.ocsp_response(pki.signer_ca, now),
        "pki/revocation/root.crl": pki.crl(pki.root, now),
        "pki/revocation/signer-ca.crl": pki.crl(pki.signer_ca, now),
    }


async def seal_bytes(
    data: bytes, pki: LocalPki, timestamper: TimeStamper, seal: x509.Certificate
) -> bytes:
    """A detached CAdES signature by the organisation seal, with a signature timestamp."""
    signer = signers.SimpleSigner(
        signing_cert=asn1_cert(seal),
        signing_key=asn1_private_key(pki.seal_key),
        cert_registry=cert_store([pki.signer_ca, pki.root]),
    )
    content = await signer.async_sign_general_data(
        data, "sha256", detached=True, use_cades=True, timestamper=timestamper
    )
    return content.dump()


async def build_evidence_zip(
    pdf: bytes,
    *,
    pki: LocalPki,
    timestamper: TimeStamper,
    ledger: list[dict],
    certificates: list[x509.Certificate] = (),
    recordings: list[dict] | None = None,
    clock=None,
) -> bytes:
    """The evidence bundle for a sealed agreement PDF, as zip bytes."""
    now = (clock or (lambda: dt.datetime.now(dt.UTC)))()
    seal = pki.issue_seal_certificate(now)
    reader = PdfFileReader(io.BytesIO(pdf))
    data = attached_agreement_data(reader)
    agreement = parse_agreement(data)
    infos = describe_signatures(pdf)
    ledger_bytes = ledger_jsonl(ledger)
    last_hash = ledger[-1].get("hash") if ledger else None
    head = {
        "type": LEDGER_HEAD_TYPE,
        "case_no": agreement.case_no,
        "version": agreement.version,
        "entries": len(ledger),
        "ledger_sha256": hashlib.sha256(ledger_bytes).hexdigest(),
        "last_event_hash": last_hash if isinstance(last_hash, str) else None,
        "agreement_pdf_sha256": hashlib.sha256(pdf).hexdigest(),
        "agreement_fingerprint": fingerprint(agreement),
        "session_id": agreement.session_id,
        "sealed_at": now.replace(microsecond=0).isoformat(),
    }
    lines = completion_lines(agreement, pdf, infos, ledger, head)
    files: dict[str, bytes] = {
        "agreement.pdf": pdf,
        "agreement.json": data,
        "ledger.jsonl": ledger_bytes,
        "signatures.json": msgspec.json.encode(infos),
        "certificate-of-completion.pdf": completion_page(agreement, lines),
        "README-verify.txt": readme(pki.root).encode(),
        **seal_revocation(pki, seal, now),
    }
    for name, pem in pki.trust_files().items():
        files[f"pki/{name}"] = pem
    for cert in [*certificates, seal]:
        files[f"certs/{cert_sha256(cert)[:16]}.pem"] = cert.public_bytes(serialization.Encoding.PEM)
    if recordings is not None:
        files["recordings.json"] = msgspec.json.encode(recordings, order="sorted")
    recorded = bundle_manifest(ledger)
    if recorded is not None:
        files["recording-manifest.json"] = msgspec.json.encode(recorded, order="sorted")
    head["members"] = {name: hashlib.sha256(body).hexdigest() for name, body in files.items()}
    files["ledger-head.json"] = canonical_json(head)
    files["ledger-head.json.p7s"] = await seal_bytes(
        files["ledger-head.json"], pki, timestamper, seal
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, files[name])
    return out.getvalue()


def readme(root_cert: x509.Certificate) -> str:
    """README-verify.txt (its root fingerprint line is checked by `verify`)."""
    root = cert_sha256(root_cert)
    return (
        "Parley evidence bundle\n\n"
        "Check it offline, trusting only the root certificate whose SHA-256 fingerprint you\n"
        "obtained from the organisation (never from this bundle alone):\n\n"
        f"  python server.py verify evidence.zip --root {root}\n\n"
        "The PDF alone can also be checked with pyHanko:\n\n"
        "  pyhanko sign adesverify --trust-replace --trust pki/root-ca.pem agreement.pdf\n"
    )
