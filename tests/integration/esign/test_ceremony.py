"""The whole signing ceremony with Python phones, and the refusals from issue 5."""

import base64
import hashlib
import io

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pyhanko.pdf_utils.generic import StreamObject, pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature, async_validate_pdf_timestamp

from esign import pdfsign
from esign.ceremony import SignatureCeremony
from esign.errors import EsignError
from esign.phone import PhoneRefusal, PythonPhone
from esign.pki import local_timestamp_authority
from esign.protocol import EnrolChallenge, SignatureReply, SignatureRequest, b64e
from esign.tsa import AuthorityTimeStamper
from tests.integration.esign.conftest import attestation, enrol, sign_turn
from tests.unit.esign.samples import sample_agreement


async def statuses(pdf: bytes, root):
    reader = PdfFileReader(io.BytesIO(pdf))
    vc = pdfsign.validation_context(root)
    return {
        sig.field_name: await async_validate_pdf_signature(sig, vc)
        for sig in reader.embedded_regular_signatures
    }


async def test_two_parties_and_mediator_sign_then_seal(make_ceremony, pki):
    ceremony = await make_ceremony()
    events = []
    for pid in ("p-app", "p-res", "p-med"):
        _, receipt, evs = await sign_turn(ceremony, pid)
        events += evs
        assert receipt.pdf_sha256 == hashlib.sha256(ceremony.pdf).hexdigest()
        assert receipt.ledger_head == "ab" * 32
    assert ceremony.status == "complete"
    assert [e["data"]["field"] for e in events if e["type"] == "signature.embedded"] == [
        "Applicant1",
        "Respondent1",
        "Mediator",
    ]
    sealed_events = await ceremony.seal()
    assert sealed_events[0]["type"] == "agreement.sealed"
    assert ceremony.status == "sealed"
    result = await statuses(ceremony.pdf, pki.root)
    assert list(result) == [
        "PlatformCertification",
        "Applicant1",
        "Respondent1",
        "Mediator",
        "OrganisationSeal",
    ]
    for name, status in result.items():
        assert status.intact and status.valid and status.trusted, name
    reader = PdfFileReader(io.BytesIO(ceremony.pdf))
    assert "/DSS" in reader.root
    doc_ts = reader.embedded_signatures[-1]
    assert doc_ts.sig_object["/Type"] == pdf_name("/DocTimeStamp")
    ts_status = await async_validate_pdf_timestamp(doc_ts, pdfsign.validation_context(pki.root))
    assert ts_status.intact and ts_status.valid and ts_status.trusted
    applicant = reader.embedded_signatures[1]
    assert ("ledger " + "ab" * 32) in str(applicant.sig_object["/Reason"])
    assert applicant.sig_object["/SubFilter"] == pdf_name("/ETSI.CAdES.detached")


async def test_turn_order_is_enforced(make_ceremony):
    ceremony = await make_ceremony()
    enrol(ceremony, "p-res")
    with pytest.raises(EsignError) as err:
        await ceremony.prepare("p-res")
    assert err.value.code == "not_your_turn"
    with pytest.raises(EsignError) as err:
        await ceremony.seal()
    assert err.value.code == "not_complete"


REFUSED_ENROLMENTS = [
    ("p-app", {"role": "counsel"}, "counsel_cannot_sign"),
    ("p-app", {"acting_for": "p-app"}, "counsel_cannot_sign"),
    ("p-app", {"session_id": "sess-other"}, "not_in_session"),
    ("p-app", {"checks": ["invitation_token"]}, "identity_not_verified"),
    ("p-app", {"name": "Someone Else"}, "identity_not_verified"),
    ("p-app", {"id_digest": "PID-" + "00" * 8}, "identity_not_verified"),
    ("p-app", {"checks": ["invitation_token", "trust_me"]}, "invalid_attestation"),
    ("p-med", {"checks": []}, "identity_not_verified"),
    ("p-med", {"role": "party"}, "identity_not_verified"),
    ("p-observer", {"role": "observer", "name": "Obs"}, "not_a_signer"),
]


async def test_only_verified_signers_of_this_session_enrol(make_ceremony):
    ceremony = await make_ceremony()
    for pid, changes, code in REFUSED_ENROLMENTS:
        phone = PythonPhone(pid)
        request = phone.enrol_request(ceremony.challenge(pid))
        with pytest.raises(EsignError) as err:
            ceremony.enrol(request, attestation(pid, **changes))
        assert err.value.code == code, (pid, changes)
    assert ceremony.to_dict()["signed"] == []
    enrol(ceremony, "p-app")  # the real attestation still works


async def test_proof_of_possession_and_challenge_are_checked(make_ceremony):
    ceremony = await make_ceremony()
    phone, other = PythonPhone("p-app"), PythonPhone("p-app")
    request = phone.enrol_request(ceremony.challenge("p-app"))
    same_nonce = EnrolChallenge(nonce=request.nonce, expires_at="")
    forged = msgspec.structs.replace(
        request, proof_of_possession=other.enrol_request(same_nonce).proof_of_possession
    )
    with pytest.raises(EsignError) as err:
        ceremony.enrol(forged, attestation("p-app"))
    assert err.value.code == "bad_proof_of_possession"
    with pytest.raises(EsignError) as err:  # the challenge was used up
        ceremony.enrol(request, attestation("p-app"))
    assert err.value.code == "bad_challenge"


@pytest.mark.parametrize("curve", [ec.SECP384R1(), ec.SECP256K1()])
async def test_wrong_curve_is_refused(make_ceremony, curve):
    ceremony = await make_ceremony()
    phone = PythonPhone("p-app", curve=curve)
    with pytest.raises(EsignError) as err:
        ceremony.enrol(phone.enrol_request(ceremony.challenge("p-app")), attestation("p-app"))
    assert err.value.code == "wrong_key_type"


async def test_malformed_and_wrong_signatures_change_nothing(make_ceremony):
    ceremony = await make_ceremony()
    phone = enrol(ceremony, "p-app")
    phone.review(ceremony.pdf)
    before = ceremony.pdf
    request, _ = await ceremony.prepare("p-app")
    good = phone.sign(request)
    raw = base64.b64decode(good.signature_p1363)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    cases = {
        "not base64!": "malformed_signature",
        base64.b64encode(raw[:63]).decode(): "malformed_signature",
        base64.b64encode(der).decode(): "malformed_signature",
        base64.b64encode(bytes(64)).decode(): "malformed_signature",
        base64.b64encode(b"\x01" * 64).decode(): "bad_signature",
        base64.b64encode(raw[:32] + bytes([raw[32] ^ 1]) + raw[33:]).decode(): "bad_signature",
    }
    for value, code in cases.items():
        with pytest.raises(EsignError) as err:
            await ceremony.finish(msgspec.structs.replace(good, signature_p1363=value))
        assert err.value.code == code, value
        assert ceremony.pdf == before and ceremony.signed == []
    receipt, _ = await ceremony.finish(good)  # the real one still works afterwards
    assert receipt.field_name == "Applicant1"
    with pytest.raises(EsignError) as err:  # and cannot be replayed
        await ceremony.finish(good)
    assert err.value.code == "unknown_token"


async def test_signature_replayed_into_another_agreement_is_refused(make_ceremony):
    first = await make_ceremony()
    second = await make_ceremony(sample_agreement(terms=["A different agreement."]))
    phone = enrol(first, "p-app")
    phone.review(first.pdf)
    signed_first = phone.sign((await first.prepare("p-app"))[0])
    enrol(second, "p-app", phone)  # same phone key, certified for the second agreement too
    request, _ = await second.prepare("p-app")
    replay = SignatureReply(
        type="esign.signature", token=request.token, signature_p1363=signed_first.signature_p1363
    )
    with pytest.raises(EsignError) as err:
        await second.finish(replay)
    assert err.value.code == "bad_signature"
    assert second.signed == []


async def test_phone_refuses_wrong_document_or_wrong_signed_attributes(make_ceremony):
    ceremony = await make_ceremony()
    other = await make_ceremony(sample_agreement(terms=["Something else entirely."]))
    phone = enrol(ceremony, "p-app")
    phone.review(ceremony.pdf)
    request, _ = await ceremony.prepare("p-app")
    enrol(other, "p-app")
    other_request, _ = await other.prepare("p-app")
    with pytest.raises(PhoneRefusal, match="extend the reviewed"):
        phone.sign(msgspec.structs.replace(request, prepared_pdf=other_request.prepared_pdf))
    with pytest.raises(PhoneRefusal, match="messageDigest"):
        phone.sign(msgspec.structs.replace(request, signed_attrs=other_request.signed_attrs))
    with pytest.raises(PhoneRefusal):
        phone.sign(msgspec.structs.replace(request, byte_range=[0, 10, 20, 30]))
    assert phone.sign(request).token == request.token


def _append_page_text(pdf: bytes, text: bytes) -> bytes:
    """A malicious incremental update: new drawing on page 1 (not a signature)."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    stream = StreamObject(stream_data=b"BT /F1 12 Tf 56 400 Td (" + text + b") Tj ET")
    writer.add_stream_to_page(0, writer.add_object(stream))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


async def test_content_appended_between_signers_is_refused_before_next_signature(
    make_ceremony, pki
):
    ceremony = await make_ceremony()
    await sign_turn(ceremony, "p-app")
    respondent = enrol(ceremony, "p-res")
    respondent.review(ceremony.pdf)  # what the respondent saw
    tampered = _append_page_text(ceremony.pdf, b"Respondent also pays 1,000,000")
    ceremony.path.write_bytes(tampered)  # someone with access to storage
    with pytest.raises(EsignError) as err:
        await ceremony.prepare("p-res")
    assert err.value.code == "document_modified"
    assert ceremony.signed == ["Applicant1"]
    # and if a server prepared on top of it anyway, the phone's prefix check refuses
    prepared = await pdfsign.prepare_signature(
        tampered,
        field_name="Respondent1",
        cert=respondent.cert,
        chain=[pki.signer_ca, pki.root],
        reason="x",
        location="x",
        timestamper=ceremony.timestamper,
    )
    request = SignatureRequest(
        type="esign.sign_request",
        token="t" * 32,
        case_no="MED-2026-000123",
        version=1,
        field_name="Respondent1",
        fingerprint=respondent.reviewed_fingerprint,
        prepared_pdf=b64e(prepared.prepared_pdf),
        byte_range=prepared.byte_range,
        signed_attrs=b64e(prepared.signed_attrs_der),
        certificate="",
        reviewed_base_len=len(tampered),
        reviewed_base_sha256=hashlib.sha256(tampered).hexdigest(),
        expires_at="",
    )
    with pytest.raises(PhoneRefusal, match="extend the reviewed"):
        respondent.sign(request)


async def test_edit_after_a_signature_makes_version_two_and_discards_signatures(make_ceremony, pki):
    ceremony = await make_ceremony()
    phone, _, _ = await sign_turn(ceremony, "p-app")
    old_request_phone = enrol(ceremony, "p-res")
    old_request_phone.review(ceremony.pdf)
    stale, _ = await ceremony.prepare("p-res")
    v2 = sample_agreement(version=2, terms=["Amended: the respondent pays CNY 40,000."])
    events = await ceremony.supersede(v2)
    assert events[0]["type"] == "agreement.superseded"
    assert events[0]["data"]["discarded_signatures"] == ["Applicant1"]
    assert ceremony.agreement.version == 2 and ceremony.agreement.supersedes.version == 1
    assert ceremony.signed == []
    with pytest.raises(EsignError) as err:  # the request on version 1 is gone
        await ceremony.finish(old_request_phone.sign(stale))
    assert err.value.code == "unknown_token"
    reader = PdfFileReader(io.BytesIO(ceremony.pdf))
    assert [s.field_name for s in reader.embedded_signatures] == ["PlatformCertification"]
    await sign_turn(ceremony, "p-app", phone)  # same certificate, new version
    with pytest.raises(EsignError) as err:
        await ceremony.supersede(sample_agreement(version=4))
    assert err.value.code == "bad_version"


async def test_text_changed_inside_the_pdf_after_signature_is_detected(make_ceremony, pki):
    ceremony = await make_ceremony()
    await sign_turn(ceremony, "p-app")
    tampered = _append_page_text(ceremony.pdf, b"changed")
    result = await statuses(tampered, pki.root)
    assert (
        not result["Applicant1"].docmdp_ok
        or str(result["Applicant1"].modification_level) != "ModificationLevel.FORM_FILLING"
    )


async def test_certificate_for_another_case_is_refused(make_ceremony, pki, clock):
    ceremony = await make_ceremony()
    phone = PythonPhone("p-app")
    wrong = pki.issue_event_certificate(
        phone._key.public_key(),
        name="张三",
        id_digest="PID-" + "ab" * 8,
        case_no="MED-2026-999999",
        role="applicant",
        now=clock(),
    )
    ceremony.attach_certificate("p-app", wrong, attestation("p-app"))
    with pytest.raises(EsignError) as err:
        await ceremony.prepare("p-app")
    assert err.value.code == "certificate_wrong_case"


async def test_signature_after_the_window_closed_is_refused(make_ceremony, clock):
    ceremony = await make_ceremony()
    phone = enrol(ceremony, "p-app")
    phone.review(ceremony.pdf)
    request, _ = await ceremony.prepare("p-app")
    clock.advance(minutes=6)  # the prepare token lives five minutes
    with pytest.raises(EsignError) as err:
        await ceremony.finish(phone.sign(request))
    assert err.value.code == "prepare_expired"
    clock.advance(minutes=26)  # the event certificate lives thirty
    with pytest.raises(EsignError) as err:
        await ceremony.prepare("p-app")
    assert err.value.code == "certificate_expired"
    assert ceremony.signed == []
    await sign_turn(ceremony, "p-app")  # enrolling again opens a new window


async def test_decline_mid_way_keeps_what_was_signed(make_ceremony, pki):
    ceremony = await make_ceremony()
    applicant, _, _ = await sign_turn(ceremony, "p-app")
    with pytest.raises(EsignError) as err:
        await ceremony.decline(applicant.decline("changed my mind"))
    assert err.value.code == "already_signed"
    signed_pdf = ceremony.pdf
    respondent = enrol(ceremony, "p-res")
    respondent.review(ceremony.pdf)
    await ceremony.prepare("p-res")
    events = await ceremony.decline(respondent.decline("I do not agree with term 2"))
    assert events[0]["type"] == "signature.declined"
    assert events[0]["data"]["signed_before"] == ["Applicant1"]
    assert ceremony.status == "declined" and ceremony.pdf == signed_pdf
    for call in (ceremony.prepare("p-med"), ceremony.seal()):
        with pytest.raises(EsignError):
            await call
    result = await statuses(ceremony.pdf, pki.root)
    assert result["Applicant1"].intact and result["Applicant1"].valid


async def test_phone_vanishing_mid_signature_leaves_agreement_consistent(make_ceremony):
    ceremony = await make_ceremony()
    phone = enrol(ceremony, "p-app")
    phone.review(ceremony.pdf)
    before = ceremony.pdf
    request, _ = await ceremony.prepare("p-app")  # ... and the phone is never heard of again
    assert ceremony.pdf == before
    events = await ceremony.cancel("p-app")
    assert events[0]["type"] == "signature.aborted"
    with pytest.raises(EsignError):
        await ceremony.finish(phone.sign(request))
    assert ceremony.pdf == before and ceremony.to_dict()["next"] == "p-app"
    await sign_turn(ceremony, "p-app", phone)  # a reloaded phone simply asks again
    assert ceremony.signed == ["Applicant1"]


async def test_excluded_case_type_cannot_be_frozen(make_ceremony):
    with pytest.raises(EsignError) as err:
        await make_ceremony(sample_agreement(case_type="inheritance"))
    assert err.value.code == "case_type_excluded"


async def test_certificate_expiring_between_prepare_and_finish_is_refused(make_ceremony, clock):
    ceremony = await make_ceremony()
    phone = enrol(ceremony, "p-app")
    phone.review(ceremony.pdf)
    clock.advance(minutes=28)
    request, _ = await ceremony.prepare("p-app")
    before = ceremony.pdf
    clock.advance(minutes=3)
    with pytest.raises(EsignError) as err:
        await ceremony.finish(phone.sign(request))
    assert err.value.code == "certificate_expired"
    assert ceremony.pdf == before and ceremony.signed == []


async def test_resume_after_restart_keeps_signatures_and_turn(make_ceremony, pki, clock):
    ceremony = await make_ceremony()
    await sign_turn(ceremony, "p-app")
    resumed = await SignatureCeremony.resume(pki, ceremony.timestamper, ceremony.path, clock)
    assert resumed.status == "signing" and resumed.signed == ["Applicant1"]
    assert resumed.agreement == ceremony.agreement
    with pytest.raises(EsignError) as err:  # enrolments were not kept: enrol again
        await resumed.prepare("p-res")
    assert err.value.code == "not_enrolled"
    await sign_turn(resumed, "p-res")
    await sign_turn(resumed, "p-med")
    await resumed.seal()
    again = await SignatureCeremony.resume(pki, ceremony.timestamper, resumed.path, clock)
    assert again.status == "sealed"
    ceremony.path.write_bytes(_append_page_text(ceremony.pdf, b"x"))
    with pytest.raises(EsignError) as err:
        await SignatureCeremony.resume(pki, ceremony.timestamper, ceremony.path, clock)
    assert err.value.code == "document_modified"


class _FailingTimeStamper(AuthorityTimeStamper):
    """A TSA that is down after `ok` successful answers."""

    def __init__(self, authority, ok: int) -> None:
        super().__init__(authority)
        self.ok = ok

    async def async_request_tsa_response(self, req):
        if self.ok <= 0:
            raise OSError("TSA unreachable")
        self.ok -= 1
        return await super().async_request_tsa_response(req)


async def test_tsa_outage_during_finish_changes_nothing_and_can_be_retried(make_ceremony, pki):
    ceremony = await make_ceremony()
    phone = enrol(ceremony, "p-app")
    phone.review(ceremony.pdf)
    request, _ = await ceremony.prepare("p-app")
    reply = phone.sign(request)
    working = ceremony.timestamper
    ceremony.timestamper = _FailingTimeStamper(local_timestamp_authority(pki), ok=0)
    before = ceremony.pdf
    with pytest.raises(EsignError) as err:
        await ceremony.finish(reply)
    assert err.value.code == "embed_failed" and "TSA unreachable" in err.value.message
    assert ceremony.pdf == before and ceremony.signed == []
    ceremony.timestamper = working  # the TSA is back: the same reply still completes
    receipt, _ = await ceremony.finish(reply)
    assert receipt.field_name == "Applicant1"
