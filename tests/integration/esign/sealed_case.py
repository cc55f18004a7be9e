"""Build a real sealed agreement and its evidence bundle (shared by the seal, binding and
long-term validation tests)."""

import dataclasses
import io
import zipfile
from pathlib import Path

from esign.ceremony import SignatureCeremony
from esign.evidence import build_evidence_zip
from esign.phone import PythonPhone
from esign.pki import LocalPki, cert_sha256, local_timestamp_authority
from esign.tsa import AuthorityTimeStamper
from esign.verify import main
from tests.integration.esign.conftest import attestation
from tests.unit.esign.samples import sample_agreement


@dataclasses.dataclass
class SealedCase:
    pdf: bytes
    bundle: bytes
    ledger: list[dict]
    certificates: list
    phones: dict[str, PythonPhone]
    root: str


SAMPLE_RECORDINGS = [{"file": "seg-0001.webm", "sha256": "ee" * 32}]


async def seal_case(
    pki: LocalPki,
    store: Path,
    clock=None,
    *,
    session_ledger: list[dict] = (),
    recordings: list[dict] | None = SAMPLE_RECORDINGS,
    **agreement,
) -> SealedCase:
    """Freeze, sign by all three signers, seal, and build the bundle (clock-driven); the bundle's
    ledger is ``session_ledger`` (the session's own events, if any) followed by the ceremony's."""
    stamper = AuthorityTimeStamper(local_timestamp_authority(pki, clock=clock))
    ceremony = SignatureCeremony(pki, stamper, store, clock=clock)
    ledger = await ceremony.freeze(sample_agreement(**agreement))
    phones = {}
    for pid in ("p-app", "p-res", "p-med"):
        phone = phones[pid] = PythonPhone(pid)
        enrolment, events = ceremony.enrol(
            phone.enrol_request(ceremony.challenge(pid)), attestation(pid)
        )
        phone.accept(enrolment)
        phone.review(ceremony.pdf)
        request, more = await ceremony.prepare(pid, "cd" * 32)
        _, done = await ceremony.finish(phone.sign(request))
        ledger += events + more + done
    ledger += await ceremony.seal()
    bundle = await build_evidence_zip(
        ceremony.pdf,
        pki=pki,
        timestamper=stamper,
        ledger=[*session_ledger, *ledger],
        certificates=ceremony.certificates(),
        recordings=recordings,
        clock=clock,
    )
    return SealedCase(
        ceremony.pdf, bundle, ledger, ceremony.certificates(), phones, cert_sha256(pki.root)
    )


def unzip(bundle: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(bundle)) as source:
        return {name: source.read(name) for name in source.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as bundle:
        for name, body in files.items():
            bundle.writestr(name, body)
    return out.getvalue()


def run_verify(capsys, tmp_path: Path, data: bytes, root: str, *extra) -> tuple[int, str]:
    """`server.py verify` on `data` written to a file; returns (exit code, report)."""
    suffix = ".pdf" if data.startswith(b"%PDF-") else ".zip"
    target = tmp_path / f"input{suffix}"
    target.write_bytes(data)
    code = main([str(target), "--root", root, *map(str, extra)])
    return code, capsys.readouterr().out
