"""Only the organisation's seal may seal the ledger head, and its timestamp must hold.

The attack: a party keeps their own 30-minute signing key; they take another session's
bundle, drop an event from its ledger, recompute everything the head lists and sign the new
head themselves, with a genuine timestamp from the organisation's public TSA."""

import asyncio
import datetime as dt
import hashlib
import io

import msgspec
import pytest
from asn1crypto import cms
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers

from esign import pdfsign
from esign.agreement import canonical_json
from esign.pdfsign import asn1_cert, asn1_private_key, cert_store
from esign.pki import LocalPki, local_timestamp_authority
from esign.tsa import AuthorityTimeStamper
from tests.integration.esign.sealed_case import rezip, run_verify, seal_case, unzip


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    base = tmp_path_factory.mktemp("seal")
    pki = LocalPki.open(base, b"seal test passphrase", "Seal Org")

    async def run():
        mine = await seal_case(pki, base / "x", case_no="MED-2026-000001")
        theirs = await seal_case(pki, base / "y", case_no="MED-2026-000002")
        return mine, theirs

    return pki, *asyncio.run(run())


def _drop_event_and_recompute(files: dict[str, bytes], index: int) -> dict:
    """Remove one ledger event and recompute every digest the head names."""
    lines = files["ledger.jsonl"].splitlines(keepends=True)
    del lines[index]
    files["ledger.jsonl"] = b"".join(lines)
    head = msgspec.json.decode(files["ledger-head.json"])
    head["entries"] = len(lines)
    head["ledger_sha256"] = hashlib.sha256(files["ledger.jsonl"]).hexdigest()
    for listed in ("members", "manifest"):
        if listed in head:
            head[listed] = {name: hashlib.sha256(files[name]).hexdigest() for name in head[listed]}
    if "manifest.json" in files:  # the old format's unsigned manifest, recomputed
        manifest = msgspec.json.decode(files["manifest.json"])
        files["manifest.json"] = canonical_json(
            {name: hashlib.sha256(files[name]).hexdigest() for name in manifest}
        )
    return head


def _sign_with(key, cert, chain, data: bytes, pki) -> bytes:
    signer = signers.SimpleSigner(
        signing_cert=asn1_cert(cert),
        signing_key=asn1_private_key(key),
        cert_registry=cert_store(chain),
    )
    stamper = AuthorityTimeStamper(local_timestamp_authority(pki))  # the public TSA
    signed = asyncio.run(
        signer.async_sign_general_data(
            data, "sha256", detached=True, use_cades=True, timestamper=stamper
        )
    )
    return signed.dump()


def test_the_genuine_bundle_verifies(cases, capsys, tmp_path):
    _, mine, _ = cases
    code, out = run_verify(capsys, tmp_path, mine.bundle, mine.root)
    assert code == 0, out
    assert "[OK  ] ledger head sealed by the organisation" in out


def test_head_resigned_with_a_party_key_from_another_session_fails(cases, capsys, tmp_path):
    pki, mine, theirs = cases
    files = unzip(mine.bundle)
    head = _drop_event_and_recompute(files, 3)
    files["ledger-head.json"] = canonical_json(head)
    party = theirs.phones["p-app"]
    files["ledger-head.json.p7s"] = _sign_with(
        party._key, party.cert, [pki.signer_ca, pki.root], files["ledger-head.json"], pki
    )
    code, out = run_verify(capsys, tmp_path, rezip(files), mine.root)
    assert code == 1, out
    assert "[FAIL] ledger head sealed by the organisation" in out


def test_head_seal_without_its_timestamp_fails(cases, capsys, tmp_path):
    _, mine, _ = cases
    files = unzip(mine.bundle)
    info = cms.ContentInfo.load(files["ledger-head.json.p7s"])
    signer_info = info["content"]["signer_infos"][0]
    signer_info["unsigned_attrs"] = cms.CMSAttributes([])
    files["ledger-head.json.p7s"] = cms.ContentInfo.load(info.dump(force=True)).dump()
    code, out = run_verify(capsys, tmp_path, rezip(files), mine.root)
    assert code == 1, out
    assert "[FAIL] ledger head sealed by the organisation" in out


def test_pdf_sealed_with_a_party_key_fails(cases, tmp_path, capsys):
    """The same forgery inside the PDF: the revision after the last signer, sealed (field
    OrganisationSeal) with a party's key, plus genuine revocation data and timestamp."""
    pki, mine, _ = cases
    reader = PdfFileReader(io.BytesIO(mine.pdf))
    mediator = next(s for s in reader.embedded_signatures if s.field_name == "Mediator")
    _, _, start, length = (int(v) for v in mediator.byte_range)
    complete = mine.pdf[: start + length]
    party = mine.phones["p-app"]
    now = dt.datetime.now(dt.UTC)
    certs = [*mine.certificates, pki.signer_ca, pki.tsa_cert]
    forged = asyncio.run(
        pdfsign.seal_and_close(
            complete,
            seal_cert=party.cert,
            seal_key=party._key,
            chain=[pki.signer_ca, pki.root],
            timestamper=AuthorityTimeStamper(local_timestamp_authority(pki)),
            revocation=(
                [pki.ocsp_response(c, now) for c in certs],
                [pki.crl(pki.root, now), pki.crl(pki.signer_ca, now)],
            ),
            all_certs=[*certs, pki.root],
            reason="Sealed",
        )
    )
    code, out = run_verify(capsys, tmp_path, forged, mine.root)
    assert code == 1, out
    assert "[FAIL] certification and seal are the organisation's" in out
