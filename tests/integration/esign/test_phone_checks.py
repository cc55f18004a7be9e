"""The phone checks what the server certifies and what it asks to sign: a server that
certifies a wrong name, a wrong case or a wrong chain, or asks to sign wrong field values,
is refused (real certificates from a real PKI, real prepared PDFs)."""

from __future__ import annotations

import datetime as dt
import hashlib

import msgspec
import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives import serialization

from esign import pdfsign
from esign.phone import PhoneRefusal, PythonPhone
from esign.pki import LocalPki
from esign.protocol import Enrolment, b64d, b64e
from tests.integration.esign.conftest import attestation, sample_agreement

DER = serialization.Encoding.DER


def fp(cert) -> str:
    return hashlib.sha256(cert.public_bytes(DER)).hexdigest()


def enrolment_for(pki, phone, **changes) -> Enrolment:
    """What a (dishonest) server could send back: a certificate for the phone's own key."""
    fields = dict(
        name="张三", id_digest="PID-" + "ab" * 8, case_no="MED-2026-000123", role="applicant"
    )
    fields.update(changes)
    cert = pki.issue_event_certificate(
        phone._key.public_key(), now=dt.datetime.now(dt.UTC), **fields
    )
    return Enrolment(
        type="esign.enrolment",
        certificate=b64e(cert.public_bytes(DER)),
        chain=[b64e(pki.signer_ca.public_bytes(DER)), b64e(pki.root.public_bytes(DER))],
        not_after=cert.not_valid_after_utc.isoformat(),
    )


async def test_honest_enrolment_is_accepted(make_ceremony, pki):
    ceremony = await make_ceremony()
    phone = PythonPhone("p-app", root_sha256=fp(pki.root))
    enrolment, _ = ceremony.enrol(
        phone.enrol_request(ceremony.challenge("p-app")), attestation("p-app")
    )
    phone.accept(enrolment)
    phone.review(ceremony.pdf)


@pytest.mark.parametrize(
    "changes, why",
    [
        (dict(name="赵六"), "names"),
        (dict(id_digest="PID-" + "ee" * 8), "names"),
        (dict(case_no="MED-2026-000999"), "not this case"),
        (dict(role="respondent"), "not this case"),
    ],
)
async def test_wrong_identity_in_the_certificate_is_refused(make_ceremony, pki, changes, why):
    ceremony = await make_ceremony()
    phone = PythonPhone("p-app", root_sha256=fp(pki.root))
    phone.accept(enrolment_for(pki, phone, **changes))
    with pytest.raises(PhoneRefusal, match=why):
        phone.review(ceremony.pdf)  # the agreement says who I am


async def test_wrong_chain_is_refused(make_ceremony, pki, tmp_path):
    other = LocalPki.open(tmp_path / "other", b"another passphrase", "Test Org")
    phone = PythonPhone("p-app", root_sha256=fp(pki.root))
    with pytest.raises(PhoneRefusal, match="organisation's root"):
        phone.accept(enrolment_for(other, phone))
    # A chain that claims the right root but was not issued by it.
    mixed = enrolment_for(other, phone)
    mixed = msgspec.structs.replace(mixed, chain=[mixed.chain[0], b64e(pki.root.public_bytes(DER))])
    with pytest.raises(PhoneRefusal, match="does not verify"):
        phone.accept(mixed)


async def _honest_request(make_ceremony, pki):
    ceremony = await make_ceremony()
    phone = PythonPhone("p-app", root_sha256=fp(pki.root))
    enrolment, _ = ceremony.enrol(
        phone.enrol_request(ceremony.challenge("p-app")), attestation("p-app")
    )
    phone.accept(enrolment)
    phone.review(ceremony.pdf)
    request, _ = await ceremony.prepare("p-app", "ab" * 32)
    return ceremony, phone, request


async def _prepared_with(ceremony, phone, request, **changes):
    """A request whose prepared revision the server made with other values."""
    params = dict(
        field_name="Applicant1",
        reason=f"Signed MED-2026-000123 v1; ledger {'ab' * 32}",
    )
    params.update(changes)
    chain = [ceremony.pki.signer_ca, ceremony.pki.root]
    prepared = await pdfsign.prepare_signature(
        ceremony.pdf,
        cert=phone.cert,
        chain=chain,
        location="Parley mediation session",
        timestamper=ceremony.timestamper,
        **params,
    )
    return msgspec.structs.replace(
        request,
        field_name=params["field_name"],
        prepared_pdf=b64e(prepared.prepared_pdf),
        byte_range=prepared.byte_range,
        signed_attrs=b64e(prepared.signed_attrs_der),
    )


async def test_honest_request_passes_with_the_ledger_head(make_ceremony, pki):
    _, phone, request = await _honest_request(make_ceremony, pki)
    assert phone.check(request, ledger_head="ab" * 32)
    with pytest.raises(PhoneRefusal, match="reason"):
        phone.check(request, ledger_head="cd" * 32)  # not the head this phone saw


@pytest.mark.parametrize(
    "changes, why",
    [
        (dict(reason="Signed MED-2026-000999 v1; ledger " + "ab" * 32), "reason"),
        (dict(reason="Signed MED-2026-000123 v2; ledger " + "ab" * 32), "reason"),
        (dict(reason="I agree to everything"), "reason"),
        (dict(field_name="Respondent1"), "another case, version or field"),
    ],
)
async def test_wrong_signed_field_values_are_refused(make_ceremony, pki, changes, why):
    ceremony, phone, request = await _honest_request(make_ceremony, pki)
    bad = await _prepared_with(ceremony, phone, request, **changes)
    with pytest.raises(PhoneRefusal, match=why):
        phone.check(bad)


def _replace_attr(der: bytes, kind: str, value) -> bytes:
    attrs = cms.CMSAttributes.load(der)
    out = []
    for attr in attrs:
        if attr["type"].native == kind:
            attr = cms.CMSAttribute({"type": kind, "values": [value]})
        out.append(attr)
    return cms.CMSAttributes(out).dump()


@pytest.mark.parametrize(
    "kind, value, why",
    [
        ("content_type", "signed_data", "content-type"),
        ("commitment_type", {"commitment_type_id": "1.2.840.113549.1.9.16.6.1"}, "commitment"),
    ],
)
async def test_wrong_attribute_values_are_refused(make_ceremony, pki, kind, value, why):
    _, phone, request = await _honest_request(make_ceremony, pki)
    der = _replace_attr(b64d(request.signed_attrs, "attrs"), kind, value)
    with pytest.raises(PhoneRefusal, match=why):
        phone.check(msgspec.structs.replace(request, signed_attrs=b64e(der)))


async def test_the_case_number_of_another_agreement_is_refused(make_ceremony, pki):
    _, phone, request = await _honest_request(make_ceremony, pki)
    with pytest.raises(PhoneRefusal, match="another case"):
        phone.check(msgspec.structs.replace(request, case_no="MED-2026-000999"))
    assert sample_agreement().case_no == "MED-2026-000123"
