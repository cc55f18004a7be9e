import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from esign.errors import EsignError
from esign.pki import ID_KP_DOCUMENT_SIGNING, LocalPki, event_san

NOW = dt.datetime.now(dt.UTC)


def test_created_on_first_use_and_reloaded_with_the_same_keys(tmp_path):
    first = LocalPki.open(tmp_path, b"a long passphrase", "Org")
    again = LocalPki.open(tmp_path, b"a long passphrase", "Org")
    assert first.root == again.root and first.tsa_cert == again.tsa_cert
    for name in ("root", "signer-ca", "seal", "tsa"):
        pem = (tmp_path / "esign-pki" / f"{name}.key.pem").read_bytes()
        assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert (tmp_path / "esign-pki" / f"{name}.key.pem").stat().st_mode & 0o077 == 0


def test_wrong_or_short_passphrase_is_refused(tmp_path):
    LocalPki.open(tmp_path, b"a long passphrase", "Org")
    with pytest.raises(EsignError) as err:
        LocalPki.open(tmp_path, b"another passphrase", "Org")
    assert err.value.code == "pki_locked"
    with pytest.raises(EsignError):
        LocalPki.open(tmp_path / "other", b"short", "Org")


def test_hierarchy_root_signer_ca_tsa(pki):
    assert pki.root.issuer == pki.root.subject
    assert pki.signer_ca.issuer == pki.root.subject
    pki.signer_ca.verify_directly_issued_by(pki.root)
    pki.tsa_cert.verify_directly_issued_by(pki.root)
    eku = pki.tsa_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]


def test_event_certificate_binds_name_case_role_for_thirty_minutes(pki):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = pki.issue_event_certificate(
        key.public_key(),
        name="张三",
        id_digest="PID-abababab",
        case_no="MED-1",
        role="applicant",
        now=NOW,
    )
    cert.verify_directly_issued_by(pki.signer_ca)
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(minutes=29) < life <= dt.timedelta(minutes=31)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        event_san("MED-1", "applicant")
    ]
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "张三"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ID_KP_DOCUMENT_SIGNING in list(eku)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment


@pytest.mark.parametrize("curve", [ec.SECP384R1(), ec.SECP256K1()])
def test_event_certificate_refuses_other_curves(pki, curve):
    key = ec.generate_private_key(curve)
    with pytest.raises(EsignError) as err:
        pki.issue_event_certificate(
            key.public_key(),
            name="x",
            id_digest="PID-ab",
            case_no="C1",
            role="applicant",
            now=NOW,
        )
    assert err.value.code == "wrong_key_type"


def test_ocsp_good_then_revoked_and_crl_lists_revocation(tmp_path):
    local = LocalPki.open(tmp_path, b"a long passphrase", "Org")
    seal = local.issue_seal_certificate(NOW)
    response = ocsp.load_der_ocsp_response(local.ocsp_response(seal, NOW))
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == seal.serial_number
    local.revoke(seal)
    response = ocsp.load_der_ocsp_response(local.ocsp_response(seal, NOW))
    assert response.certificate_status == ocsp.OCSPCertStatus.REVOKED
    crl = x509.load_der_x509_crl(local.crl(local.signer_ca, NOW))
    assert crl.is_signature_valid(local.signer_ca.public_key())
    assert crl.get_revoked_certificate_by_serial_number(seal.serial_number) is not None
    root_crl = x509.load_der_x509_crl(local.crl(local.root, NOW))
    assert root_crl.is_signature_valid(local.root.public_key())
