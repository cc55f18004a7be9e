"""Evidence bundle and offline verification, including pyHanko's own AdES validator."""

import io
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from esign.ceremony import SignatureCeremony
from esign.document import page_texts
from esign.evidence import build_evidence_zip
from esign.phone import PythonPhone
from esign.pki import LocalPki, cert_sha256, local_timestamp_authority
from esign.tsa import AuthorityTimeStamper
from esign.verify import main
from tests.integration.esign.conftest import attestation
from tests.unit.esign.samples import sample_agreement

PYHANKO = str(Path(sys.executable).with_name("pyhanko"))
needs_pyhanko_cli = pytest.mark.skipif(
    not Path(PYHANKO).exists(), reason="pyhanko-cli is not installed in this environment"
)
LATER = "2031-06-01T00:00:00+00:00"


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """One sealed agreement, its evidence bundle and the PKI files, built once."""
    import asyncio

    base = tmp_path_factory.mktemp("evidence")
    pki = LocalPki.open(base, b"evidence passphrase", "Evidence Org")
    stamper = AuthorityTimeStamper(local_timestamp_authority(pki))

    async def run():
        ceremony = SignatureCeremony(pki, stamper, base / "store")
        ledger = await ceremony.freeze(sample_agreement())
        half_signed = None
        for pid in ("p-app", "p-res", "p-med"):
            phone = PythonPhone(pid)
            enrolment, events = ceremony.enrol(
                phone.enrol_request(ceremony.challenge(pid)), attestation(pid)
            )
            phone.accept(enrolment)
            phone.review(ceremony.pdf)
            request, more = await ceremony.prepare(pid, "cd" * 32)
            receipt, done = await ceremony.finish(phone.sign(request))
            ledger += events + more + done
            half_signed = half_signed or ceremony.pdf
        ledger += await ceremony.seal()
        bundle = await build_evidence_zip(
            ceremony.pdf,
            pki=pki,
            timestamper=stamper,
            ledger=ledger,
            certificates=ceremony.certificates(),
            recordings=[{"file": "seg-0001.webm", "sha256": "ee" * 32}],
        )
        return ceremony.pdf, bundle, half_signed

    pdf, bundle, half_signed = asyncio.run(run())
    paths = {
        "pdf": base / "agreement.pdf",
        "zip": base / "evidence.zip",
        "half": base / "half.pdf",
        "root": base / "root-ca.pem",
        "tsa": base / "tsa.pem",
    }
    paths["pdf"].write_bytes(pdf)
    paths["zip"].write_bytes(bundle)
    paths["half"].write_bytes(half_signed)
    paths["root"].write_bytes(pki.trust_files()["root-ca.pem"])
    paths["tsa"].write_bytes(pki.trust_files()["tsa.pem"])
    return paths, cert_sha256(pki.root)


def run_verify(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().out


def test_sealed_pdf_and_bundle_verify_offline(sealed, capsys):
    paths, root = sealed
    for target in (paths["pdf"], paths["zip"]):
        code, out = run_verify(capsys, target, "--root", root)
        assert code == 0, out
        assert "RESULT: VERIFIED" in out and "[FAIL]" not in out
    code, out = run_verify(capsys, paths["zip"], "--root", root)
    assert "ledger recorded the Respondent1 revision" in out
    assert "ledger head sealed by the organisation" in out


@needs_pyhanko_cli
def test_pyhanko_adesverify_passes_with_only_the_root(sealed):
    paths, _ = sealed
    result = subprocess.run(
        [PYHANKO, "sign", "adesverify", "--trust-replace", "--trust", paths["root"], paths["pdf"]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 5
    assert all(":INTACT:TRUSTED,TIMESTAMP_TOKEN<INTACT:TRUSTED>" in line for line in lines)


@pytest.mark.slow
@needs_pyhanko_cli
def test_long_term_validation_years_ahead(sealed, capsys):
    paths, root = sealed
    code, out = run_verify(capsys, paths["pdf"], "--root", root, "--at", LATER)
    assert code == 0, out
    cli = [
        PYHANKO,
        "sign",
        "adesverify",
        "--validation-time",
        LATER,
        "--trust-replace",
        "--trust",
        paths["root"],
    ]
    root_only = subprocess.run([*cli, paths["pdf"]], capture_output=True, text=True, timeout=60)
    assert root_only.returncode != 0  # the last document timestamp needs a pinned TSA (§9)
    pinned = subprocess.run(
        [*cli, "--trust", paths["tsa"], paths["pdf"]], capture_output=True, text=True, timeout=60
    )
    assert pinned.returncode == 0, pinned.stdout


def test_one_flipped_byte_anywhere_fails(sealed, capsys, tmp_path):
    paths, root = sealed
    original = paths["pdf"].read_bytes()
    for n in range(1, 6):
        position = len(original) * n // 6
        flipped = bytearray(original)
        flipped[position] ^= 0x01
        target = tmp_path / f"flip{n}.pdf"
        target.write_bytes(bytes(flipped))
        code, out = run_verify(capsys, target, "--root", root)
        assert code != 0, f"flip at {position} went unnoticed"


def test_flips_inside_the_signatures_are_not_verified_and_never_crash(sealed, capsys, tmp_path):
    """A flipped byte inside a signature's CMS can land in an embedded certificate or token,
    where pyHanko and cryptography raise errors of their own (CI found `InvalidVersion`): each
    such file is NOT VERIFIED (exit 1), never a traceback."""
    paths, root = sealed
    original = paths["pdf"].read_bytes()
    holes = [m.span(1) for m in re.finditer(rb"/Contents\s*<([0-9a-fA-F]+)>", original)]
    assert len(holes) >= 4  # three signers, the seal, the document timestamps
    # an embedded certificate's version (v3: [0] INTEGER 2, hex a003020102) made 3 ("2" ^ 1)
    version = original.lower().index(b"a003020102", holes[0][0]) + 9
    assert original[version : version + 1] == b"2"
    rnd = random.Random(12348)
    positions = [version] + [rnd.randrange(a, b) for a, b in holes for _ in range(3)]
    for position in positions:
        flipped = bytearray(original)
        flipped[position] ^= 0x01
        target = tmp_path / "flip.pdf"
        target.write_bytes(bytes(flipped))
        code, out = run_verify(capsys, target, "--root", root)
        assert code == 1 and "NOT VERIFIED" in out, f"flip at {position}: {out[-800:]}"


def test_wrong_root_fingerprint_is_not_trusted(sealed, capsys):
    paths, _ = sealed
    code, out = run_verify(capsys, paths["pdf"], "--root", "00" * 32)
    assert code == 1 and "NOT VERIFIED" in out


def test_unfinished_agreement_is_not_verified(sealed, capsys):
    paths, root = sealed
    code, out = run_verify(capsys, paths["half"], "--root", root)
    assert code == 1
    assert "[FAIL] closed by a document timestamp" in out
    assert "[FAIL] every signer signed" in out


def _rewrite(zip_path: Path, target: Path, change) -> Path:
    with zipfile.ZipFile(zip_path) as source:
        files = {name: source.read(name) for name in source.namelist()}
    change(files)
    with zipfile.ZipFile(target, "w") as out:
        for name, body in files.items():
            out.writestr(name, body)
    return target


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.__setitem__("ledger.jsonl", f["ledger.jsonl"].replace(b"p-res", b"p-xxx")),
        lambda f: f.__setitem__("extra.txt", b"smuggled"),
        lambda f: f.pop("ledger-head.json.p7s"),
        lambda f: f.__setitem__("agreement.json", f["agreement.json"].replace(b"debt", b"other")),
    ],
)
def test_tampered_bundle_fails(sealed, capsys, tmp_path, change):
    paths, root = sealed
    target = _rewrite(paths["zip"], tmp_path / "bad.zip", change)
    code, out = run_verify(capsys, target, "--root", root)
    assert code == 1 and "[FAIL]" in out


def test_bundle_contents_and_completion_page(sealed):
    paths, _ = sealed
    with zipfile.ZipFile(paths["zip"]) as bundle:
        names = set(bundle.namelist())
        completion = bundle.read("certificate-of-completion.pdf")
        ledger = bundle.read("ledger.jsonl").decode()
    assert {
        "agreement.pdf",
        "agreement.json",
        "ledger.jsonl",
        "ledger-head.json",
        "ledger-head.json.p7s",
        "pki/revocation/seal.ocsp",
        "pki/root-ca.pem",
        "pki/signer-ca.pem",
        "pki/tsa.pem",
        "recordings.json",
        "certificate-of-completion.pdf",
    } <= names
    assert any(name.startswith("certs/") for name in names)
    assert "signature.embedded" in ledger
    text = "\n".join(
        line for lines in page_texts(PdfFileReader(io.BytesIO(completion))) for line in lines
    )
    for expected in (
        "签署完成证明",
        "张三",
        "李四",
        "王五",
        "mediator_video_check",
        "one_time_code",
    ):
        assert expected in text


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["/nonexistent.pdf", "--root", "ab" * 32], 2),
        (["{garbage}", "--root", "ab" * 32], 2),
        (["{pdf}", "--root", "xyz"], 2),
        (["{pdf}", "--root", "ab" * 32, "--at", "tomorrow"], 2),
    ],
)
def test_bad_command_lines_get_clear_errors(sealed, tmp_path, capsys, argv, code):
    paths, _ = sealed
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00not a pdf or zip" * 10)
    argv = [a.replace("{garbage}", str(garbage)).replace("{pdf}", str(paths["pdf"])) for a in argv]
    assert main(argv) == code
    assert "error" in capsys.readouterr().err


def test_flip_in_any_signature_hole_or_its_padding_fails(sealed, capsys, tmp_path):
    """The /Contents holes are outside their own ByteRange; later signatures and the zero
    padding check must still catch a change there."""
    paths, root = sealed
    original = paths["pdf"].read_bytes()
    reader = PdfFileReader(io.BytesIO(original))
    positions = []
    for sig in reader.embedded_signatures:
        start, end = int(sig.byte_range[1]), int(sig.byte_range[2])
        positions += [start + 10, end - 3]  # inside the DER, inside the zero padding
    for n, position in enumerate(positions):
        flipped = bytearray(original)
        flipped[position] ^= 0x01
        target = tmp_path / f"hole{n}.pdf"
        target.write_bytes(bytes(flipped))
        code, out = run_verify(capsys, target, "--root", root)
        assert code != 0, f"flip at {position} went unnoticed"
