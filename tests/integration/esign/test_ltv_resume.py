"""A sealed agreement reopened years later (server restart, then a download) is checked as
of its timestamps, not refused because its 30-minute certificates expired long ago."""

import asyncio
import datetime as dt

import pytest

from esign import archive
from esign.ceremony import SignatureCeremony
from esign.errors import EsignError
from esign.pki import LocalPki, local_timestamp_authority
from esign.tsa import AuthorityTimeStamper
from tests.integration.esign.conftest import Clock
from tests.integration.esign.sealed_case import seal_case


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    pki = LocalPki.open(base, b"resume test passphrase", "Resume Org")
    clock = Clock()
    case = asyncio.run(seal_case(pki, base / "store", clock=clock))
    path = next((base / "store").glob("*-v1.pdf"))
    return pki, clock, case, path


def _resume(pki, clock, path):
    stamper = AuthorityTimeStamper(local_timestamp_authority(pki, clock=clock))
    return asyncio.run(SignatureCeremony.resume(pki, stamper, path, clock=clock))


def test_resume_three_years_later_and_after_a_renewal(sealed):
    pki, clock, case, path = sealed
    clock.offset = dt.timedelta(days=3 * 365)
    assert _resume(pki, clock, path).status == "sealed"
    stamper = AuthorityTimeStamper(local_timestamp_authority(pki, clock=clock))
    path.write_bytes(asyncio.run(archive.renew(case.pdf, pki, stamper, clock())))
    clock.offset = dt.timedelta(days=4 * 365)
    assert _resume(pki, clock, path).status == "sealed"


def test_a_tampered_sealed_file_is_still_refused_years_later(sealed, tmp_path):
    pki, clock, case, path = sealed
    clock.offset = dt.timedelta(days=3 * 365)
    flipped = bytearray(case.pdf)
    flipped[len(flipped) // 4] ^= 0x01
    target = tmp_path / path.name
    target.write_bytes(bytes(flipped))
    with pytest.raises(EsignError) as info:
        _resume(pki, clock, target)
    assert info.value.code == "document_modified"
