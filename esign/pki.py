"""Embedded PKI: root CA, signer CA, organisation seal key and TSA key in the data directory.

Created on first use; every private key is stored PKCS#8-encrypted with the passphrase from
configuration, so a copy of the data directory alone cannot sign. The signer CA issues the
~30-minute event certificates for phone keys and the short-lived seal certificates (a short
life lets them validate years later through timestamps alone, see research §9). The same
objects answer OCSP and CRL for embedding in the PDF: nothing is fetched over the network.

`CertificateAuthority` is the interface the ceremony uses; a licensed CA's API can sit
behind it instead of `LocalPki`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from esign.errors import EsignError

EVENT_CERT_MINUTES = 30
SEAL_CERT_HOURS = 24
REVOCATION_VALID_DAYS = 7
ID_KP_DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")  # RFC 9336
# Private-arc (UUID-based, X.667) OID naming Parley's identity-proofing policy for event certs.
EVENT_CERT_POLICY = x509.ObjectIdentifier(
    "2.25." + str(uuid.UUID("5b0e2f3c-7a1d-4c55-9d0e-5e1a9c2f4b71").int)
)
# The organisation seal's own policy OID: only a certificate carrying it may seal (a party's
# event certificate chains to the same root, so the chain alone does not say "organisation").
SEAL_CERT_POLICY = x509.ObjectIdentifier(
    "2.25." + str(uuid.UUID("c7a3e0d2-52b4-4f0e-8a51-0f6d2b93e8a4").int)
)
SAN_PREFIX = "urn:x-parley:case:"
TSA_CERT_YEARS = 10
SIGNER_CA_YEARS = 5


def event_san(case_no: str, role: str) -> str:
    """The SAN URI binding an event certificate to one case and one signer role."""
    return f"{SAN_PREFIX}{case_no}:role:{role}"


def cert_sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def spki_sha256(public_key) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


class CertificateAuthority(Protocol):
    """What the signing ceremony needs from a CA (local or a licensed CA's API)."""

    root: x509.Certificate
    signer_ca: x509.Certificate

    def issue_event_certificate(
        self,
        public_key: ec.EllipticCurvePublicKey,
        *,
        name: str,
        id_digest: str,
        case_no: str,
        role: str,
        now: dt.datetime,
    ) -> x509.Certificate: ...

    def ocsp_response(self, cert: x509.Certificate, now: dt.datetime) -> bytes: ...

    def crl(self, issuer: x509.Certificate, now: dt.datetime) -> bytes: ...


class _KeyFile:
    """One encrypted private key + certificate pair on disk."""

    def __init__(self, directory: Path, name: str, passphrase: bytes) -> None:
        self.key_path = directory / f"{name}.key.pem"
        self.cert_path = directory / f"{name}.pem"
        self.passphrase = passphrase

    def exists(self) -> bool:
        return self.key_path.exists()

    def load(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate | None]:
        try:
            key = serialization.load_pem_private_key(
                self.key_path.read_bytes(), password=self.passphrase
            )
        except (ValueError, TypeError) as exc:
            raise EsignError("pki_locked", f"cannot decrypt {self.key_path.name}") from exc
        cert = None
        if self.cert_path.exists():
            cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        return key, cert

    def save(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate | None) -> None:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self.passphrase),
        )
        _write_private(self.key_path, pem)
        if cert is not None:
            self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _name(common_name: str, organisation: str, serial: str | None = None) -> x509.Name:
    attrs = [
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
    ]
    if serial:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
    return x509.Name(attrs)


class LocalPki:
    """The embedded CA hierarchy of one Parley deployment (see module docstring)."""

    def __init__(self, directory: Path, passphrase: bytes, organisation: str, base_url: str):
        if len(passphrase) < 12:
            raise EsignError("pki_config", "the PKI passphrase must have at least 12 bytes")
        self.directory = directory
        self.organisation = organisation
        self.base_url = base_url.rstrip("/")
        self._revoked_path = directory / "revoked.json"
        files = {
            n: _KeyFile(directory, n, passphrase) for n in ("root", "signer-ca", "seal", "tsa")
        }
        if not files["root"].exists():
            directory.mkdir(parents=True, exist_ok=True)
            self._create(files)
        self.root_key, self.root = files["root"].load()
        self.signer_ca_key, self.signer_ca = files["signer-ca"].load()
        self.seal_key, _ = files["seal"].load()
        self.tsa_key, self.tsa_cert = files["tsa"].load()
        self._files = files

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike,
        passphrase: bytes,
        organisation: str = "Parley",
        base_url: str = "http://localhost:8080/esign",
    ) -> LocalPki:
        """Load the PKI under `<data_dir>/esign-pki`, creating it on first use."""
        return cls(Path(data_dir) / "esign-pki", passphrase, organisation, base_url)

    # --- creation ---------------------------------------------------------------------------

    def _create(self, files: dict[str, _KeyFile]) -> None:
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        org = self.organisation
        root_key = ec.generate_private_key(ec.SECP384R1())
        root_name = _name(f"{org} Root CA", org)
        root = self._build(
            root_name, root_name, root_key.public_key(), root_key, now, dt.timedelta(days=20 * 365)
        )
        root = root.add_extension(x509.BasicConstraints(ca=True, path_length=1), True)
        root = root.add_extension(_ca_usage(), True).sign(root_key, hashes.SHA384())

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = self._signer_ca_certificate(ca_key, f"{org} Signer CA", root, root_key, now)

        tsa_key = ec.generate_private_key(ec.SECP256R1())
        tsa = self._tsa_certificate(tsa_key, root, root_key, now)

        files["root"].save(root_key, root)
        files["signer-ca"].save(ca_key, ca)
        files["seal"].save(ec.generate_private_key(ec.SECP256R1()), None)
        files["tsa"].save(tsa_key, tsa)

    def _tsa_certificate(self, tsa_key, root, root_key, now: dt.datetime) -> x509.Certificate:
        org = self.organisation
        tsa = self._build(
            _name(f"{org} Time-Stamping Authority", org),
            root.subject,
            tsa_key.public_key(),
            root_key,
            now,
            dt.timedelta(days=TSA_CERT_YEARS * 365),
            issuer_cert=root,
        )
        tsa = tsa.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        tsa = tsa.add_extension(_leaf_usage(), True)
        tsa = tsa.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), True)
        return tsa.sign(root_key, hashes.SHA384())

    def _signer_ca_certificate(self, key, name: str, root, root_key, now) -> x509.Certificate:
        ca = self._build(
            _name(name, self.organisation),
            root.subject,
            key.public_key(),
            root_key,
            now,
            dt.timedelta(days=SIGNER_CA_YEARS * 365),
            issuer_cert=root,
        )
        ca = ca.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        return ca.add_extension(_ca_usage(), True).sign(root_key, hashes.SHA384())

    def roll_over_signer_ca(self, now: dt.datetime) -> x509.Certificate:
        """A new signer CA (its own name, with the year) for seal and event certificates.

        Certificates it issued earlier keep validating through the validation data embedded
        when they were used; new seals need a CA that is valid now."""
        old = self.signer_ca
        (self.directory / f"signer-ca-{old.serial_number:x}.pem").write_bytes(
            old.public_bytes(serialization.Encoding.PEM)
        )
        key = ec.generate_private_key(ec.SECP256R1())
        name = f"{self.organisation} Signer CA {now.year}"
        start = now - dt.timedelta(minutes=5)
        cert = self._signer_ca_certificate(key, name, self.root, self.root_key, start)
        self._files["signer-ca"].save(key, cert)
        self.signer_ca_key, self.signer_ca = key, cert
        return cert

    def roll_over_tsa(self, now: dt.datetime) -> x509.Certificate:
        """A new TSA key and certificate (the old certificate is kept as `tsa-<serial>.pem`).

        Archive timestamps must come from a TSA whose certificate outlives the next renewal;
        the archive job calls this when the current one is close to its end."""
        old = self.tsa_cert
        (self.directory / f"tsa-{old.serial_number:x}.pem").write_bytes(
            old.public_bytes(serialization.Encoding.PEM)
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._tsa_certificate(key, self.root, self.root_key, now - dt.timedelta(minutes=5))
        self._files["tsa"].save(key, cert)
        self.tsa_key, self.tsa_cert = key, cert
        return cert

    def _build(self, subject, issuer, public_key, issuer_key, not_before, life, issuer_cert=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_before + life)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
            )
        )
        if issuer_cert is not None:
            crl_name = "root" if issuer_cert.subject == issuer_cert.issuer else "signer-ca"
            builder = builder.add_extension(
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            [x509.UniformResourceIdentifier(f"{self.base_url}/crl/{crl_name}.crl")],
                            None,
                            None,
                            None,
                        )
                    ]
                ),
                False,
            ).add_extension(
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            x509.AuthorityInformationAccessOID.OCSP,
                            x509.UniformResourceIdentifier(f"{self.base_url}/ocsp"),
                        )
                    ]
                ),
                False,
            )
        return builder

    # --- issuance ---------------------------------------------------------------------------

    def issue_event_certificate(
        self,
        public_key: ec.EllipticCurvePublicKey,
        *,
        name: str,
        id_digest: str,
        case_no: str,
        role: str,
        now: dt.datetime,
    ) -> x509.Certificate:
        """A ~30-minute signing certificate for a phone's one-time P-256 key."""
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP256R1
        ):
            raise EsignError("wrong_key_type", "event certificates need an ECDSA P-256 key")
        builder = self._build(
            _name(name, self.organisation, id_digest),
            self.signer_ca.subject,
            public_key,
            self.signer_ca_key,
            now - dt.timedelta(seconds=30),
            dt.timedelta(minutes=EVENT_CERT_MINUTES, seconds=30),
            issuer_cert=self.signer_ca,
        )
        builder = _signing_leaf(builder, EVENT_CERT_POLICY).add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(event_san(case_no, role))]),
            False,
        )
        return builder.sign(self.signer_ca_key, hashes.SHA256())

    def issue_seal_certificate(self, now: dt.datetime) -> x509.Certificate:
        """A one-day certificate for the organisation's seal key."""
        builder = self._build(
            _name(f"{self.organisation} Seal", self.organisation),
            self.signer_ca.subject,
            self.seal_key.public_key(),
            self.signer_ca_key,
            now - dt.timedelta(seconds=30),
            dt.timedelta(hours=SEAL_CERT_HOURS),
            issuer_cert=self.signer_ca,
        )
        return _signing_leaf(builder, SEAL_CERT_POLICY).sign(self.signer_ca_key, hashes.SHA256())

    # --- revocation -------------------------------------------------------------------------

    def _issuer_of(self, cert: x509.Certificate):
        if cert.issuer == self.root.subject:
            return self.root, self.root_key
        if cert.issuer == self.signer_ca.subject:
            return self.signer_ca, self.signer_ca_key
        raise EsignError("unknown_issuer", f"{cert.issuer.rfc4514_string()} is not ours")

    def revoked_serials(self) -> set[int]:
        if not self._revoked_path.exists():
            return set()
        return {int(s) for s in json.loads(self._revoked_path.read_text())}

    def revoke(self, cert: x509.Certificate) -> None:
        serials = self.revoked_serials() | {cert.serial_number}
        self._revoked_path.write_text(json.dumps(sorted(str(s) for s in serials)))

    def ocsp_response(self, cert: x509.Certificate, now: dt.datetime) -> bytes:
        """A DER OCSP response for `cert`, signed by its issuer, valid for a week."""
        issuer, issuer_key = self._issuer_of(cert)
        revoked = cert.serial_number in self.revoked_serials()
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=cert,
            issuer=issuer,
            algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + dt.timedelta(days=REVOCATION_VALID_DAYS),
            revocation_time=now if revoked else None,
            revocation_reason=None,
        )
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
        return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def crl(self, issuer: x509.Certificate, now: dt.datetime) -> bytes:
        """A DER CRL of `issuer` (root or signer CA)."""
        issuer_cert, issuer_key = (
            (self.root, self.root_key)
            if issuer.subject == self.root.subject
            else (self.signer_ca, self.signer_ca_key)
        )
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer_cert.subject)
            .last_update(now)
            .next_update(now + dt.timedelta(days=REVOCATION_VALID_DAYS))
            .add_extension(x509.CRLNumber(int(now.timestamp() * 1000)), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
            )
        )
        for serial in sorted(self.revoked_serials()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
            )
        return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def trust_files(self) -> dict[str, bytes]:
        """The public PKI files for an evidence bundle (root, signer CA, TSA), PEM."""
        pem = serialization.Encoding.PEM
        return {
            "root-ca.pem": self.root.public_bytes(pem),
            "signer-ca.pem": self.signer_ca.public_bytes(pem),
            "tsa.pem": self.tsa_cert.public_bytes(pem),
        }


def is_seal_certificate(cert: x509.Certificate) -> bool:
    """Does `cert` carry the organisation seal's policy (event certificates never do)?"""
    try:
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        return False
    return [p.policy_identifier for p in policies] == [SEAL_CERT_POLICY]


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(False, False, False, False, False, True, True, False, False)


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(True, True, False, False, False, False, False, False, False)


def _signing_leaf(builder: x509.CertificateBuilder, policy) -> x509.CertificateBuilder:
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    builder = builder.add_extension(_leaf_usage(), True)
    builder = builder.add_extension(x509.ExtendedKeyUsage([ID_KP_DOCUMENT_SIGNING]), False)
    if policy is not None:
        builder = builder.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(policy, None)]), False
        )
    return builder


def local_timestamp_authority(pki: LocalPki, clock=None):
    """Parley's own TSA, keyed by this PKI's TSA key."""
    from esign.tsa import LocalTimestampAuthority

    return LocalTimestampAuthority(pki.tsa_key, pki.tsa_cert, [pki.root], clock=clock)
