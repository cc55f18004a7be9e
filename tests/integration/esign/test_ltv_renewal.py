"""Long-term validation with a simulated clock: +8 days, +2 years, +10 years.

The archive job runs every six months of simulated time (renewing when due, rolling the
TSA and signer CA keys over when they come close to their end); `verify` is run as of the
simulated time, through its injected clock and through `--at`."""

import asyncio
import datetime as dt
import io

import pytest
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from esign import archive
from esign.errors import EsignError
from esign.evidence import build_evidence_zip
from esign.pki import LocalPki, local_timestamp_authority
from esign.tsa import AuthorityTimeStamper
from esign.verify import verify
from tests.integration.esign.conftest import Clock
from tests.integration.esign.sealed_case import run_verify, seal_case

# Each check verifies every archive timestamp of a ten-year chain: seconds on a quiet machine,
# minutes on a loaded one; the suite's 120 s hang guard is too tight for that.
pytestmark = pytest.mark.timeout(360)

DAY = dt.timedelta(days=1)
YEAR = dt.timedelta(days=365)


@pytest.fixture(scope="module")
def timeline(tmp_path_factory):
    """A sealed case, then ten simulated years of the archive job."""
    base = tmp_path_factory.mktemp("ltv")
    pki = LocalPki.open(base, b"ltv test passphrase", "Archive Org")
    clock = Clock()
    start = clock()
    case = asyncio.run(seal_case(pki, base / "store", clock=clock))
    pdf, states, renewals, rolled, versions = case.pdf, {}, [], [], []
    for half_year in range(1, 21):
        clock.offset = half_year * YEAR / 2
        now = clock()
        rolled += [(half_year / 2, name) for name in archive.maintain_pki(pki, now)]
        if archive.due(pdf, now):
            stamper = AuthorityTimeStamper(local_timestamp_authority(pki, clock=clock))
            renewed = asyncio.run(archive.renew(pdf, pki, stamper, now))
            renewals.append((half_year / 2, len(renewed) - len(pdf)))
            versions.append(pdf)
            pdf = renewed
        states[half_year / 2] = pdf
    clock.offset = 10 * YEAR + DAY
    bundle_10y = asyncio.run(
        build_evidence_zip(
            pdf,
            pki=pki,
            timestamper=AuthorityTimeStamper(local_timestamp_authority(pki, clock=clock)),
            ledger=case.ledger,
            certificates=case.certificates,
            recordings=[{"file": "seg-0001.webm", "sha256": "ee" * 32}],
            clock=clock,
        )
    )
    return dict(
        case=case,
        start=start,
        states=states,
        renewals=renewals,
        rolled=rolled,
        pki=pki,
        bundle_10y=bundle_10y,
        before_rollover=versions[-2],  # its last timestamp is by the original, expired TSA
    )


def _verify_at(capsys, tmp_path, data, root, when):
    """Both ways of choosing the time must agree: the injected clock and `--at`."""
    target = tmp_path / ("at.pdf" if data.startswith(b"%PDF-") else "at.zip")
    target.write_bytes(data)
    out = io.StringIO()
    by_clock = asyncio.run(verify(str(target), root, None, out, clock=lambda: when))
    code, report = run_verify(capsys, tmp_path, data, root, "--at", when.isoformat())
    assert by_clock == code, out.getvalue() + report
    return code, report


def test_the_job_renewed_and_rolled_keys_over(timeline):
    years = [when for when, _ in timeline["renewals"]]
    assert years and years[-1] > 8.5  # the last renewal used the rolled-over TSA
    assert "tsa" in [name for _, name in timeline["rolled"]]
    assert all(8_000 < added < 40_000 for _, added in timeline["renewals"])


def test_plus_8_days_pdf_and_bundle_verify(timeline, capsys, tmp_path):
    case, when = timeline["case"], timeline["start"] + 8 * DAY
    for data in (case.pdf, case.bundle):
        code, out = _verify_at(capsys, tmp_path, data, case.root, when)
        assert code == 0, out


def test_plus_2_years_verifies(timeline, capsys, tmp_path):
    case, when = timeline["case"], timeline["start"] + 2 * YEAR + DAY
    for data in (timeline["states"][2.0], case.bundle):
        code, out = _verify_at(capsys, tmp_path, data, case.root, when)
        assert code == 0, out


def test_plus_10_years_verifies_only_with_the_renewals(timeline, capsys, tmp_path):
    case, when = timeline["case"], timeline["start"] + 10 * YEAR + DAY
    code, out = _verify_at(capsys, tmp_path, timeline["states"][10.0], case.root, when)
    assert code == 0, out
    code, out = _verify_at(capsys, tmp_path, timeline["bundle_10y"], case.root, when)
    assert code == 0, out
    code, out = _verify_at(capsys, tmp_path, case.pdf, case.root, when)  # never renewed
    assert code == 1 and "not valid at" in out, out


def test_plus_10_years_tampered_fails(timeline, capsys, tmp_path):
    case, when = timeline["case"], timeline["start"] + 10 * YEAR + DAY
    renewed = timeline["states"][10.0]
    for at in (len(case.pdf) // 3, len(case.pdf) // 2, len(renewed) - 200):
        # Some flips leave the PDF unparsable: that, too, must be NOT VERIFIED, never a crash.
        flipped = bytearray(renewed)
        flipped[at] ^= 0x01
        code, out = _verify_at(capsys, tmp_path, bytes(flipped), case.root, when)
        assert code == 1, out
        assert "NOT VERIFIED" in out
    cut = timeline["before_rollover"]  # archive timestamps by the new TSA cut off
    code, out = _verify_at(capsys, tmp_path, cut, case.root, when)
    assert code == 1, out


def test_archive_timestamp_from_a_foreign_tsa_fails(timeline, capsys, tmp_path):
    case, when = timeline["case"], timeline["start"] + 10 * YEAR + DAY
    rogue = LocalPki.open(tmp_path, b"rogue passphrase!", "Archive Org")
    stamper = AuthorityTimeStamper(local_timestamp_authority(rogue, clock=lambda: when))
    forged = asyncio.run(archive.renew(timeline["states"][8.5], rogue, stamper, when))
    code, out = _verify_at(capsys, tmp_path, forged, case.root, when)
    assert code == 1, out


def _trailing_title(pdf: bytes) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    writer.document_meta.title = "A different title"
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _trailing_empty(pdf: bytes) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize("trail", [_trailing_title, _trailing_empty])
def test_a_revision_after_the_last_document_timestamp_fails(timeline, capsys, tmp_path, trail):
    case = timeline["case"]
    for pdf in (case.pdf, timeline["states"][10.0]):
        changed = trail(pdf)
        assert len(changed) > len(pdf)
        when = timeline["start"] + (DAY if pdf is case.pdf else 10 * YEAR + DAY)
        code, out = _verify_at(capsys, tmp_path, changed, case.root, when)
        assert code == 1, out
        assert "[FAIL] nothing follows the last document timestamp" in out
        with pytest.raises(EsignError):
            asyncio.run(
                archive.renew(changed, timeline["pki"], None, when)  # refused before any TSA call
            )


def test_a_pdf_that_no_longer_parses_is_not_verified(timeline, capsys, tmp_path):
    case = timeline["case"]
    head = case.pdf[: len(case.pdf) // 2]
    broken = head + b"\n<< /Broken <4@> >>\n" + case.pdf[len(case.pdf) // 2 :]
    for data in (b"%PDF-1.7\n1 0 obj <4@> endobj\n", broken):
        code, out = _verify_at(capsys, tmp_path, data, case.root, timeline["start"] + DAY)
        assert code == 1, out
        assert "NOT VERIFIED" in out
