"""A self-signed certificate for development: phones allow the camera only on a secure origin.

Generated once with ``cryptography`` into the data directory and reused; its SubjectAltNames
cover localhost, 127.0.0.1 and the machine's LAN addresses so a phone on the same network can
open the join link after accepting the warning once.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from signaling.keyfile import write_private


def lan_addresses() -> list[str]:
    """This machine's addresses other than loopback: the self-signed certificate names them,
    and the printed links use the first."""
    import ifaddr

    out = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("127."):
                out.append(ip.ip)
    return out


def ensure_self_signed(directory: Path, addresses: list[str]) -> tuple[Path, Path]:
    # cryptography (~10 MB resident) only for a server that makes its own certificate
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = directory / "tls-cert.pem", directory / "tls-key.pem"
    wanted = sorted({"127.0.0.1", *addresses})
    if cert_path.exists() and key_path.exists() and _covers(cert_path, wanted):
        key_path.chmod(0o600)  # a key left readable by an older version
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Parley development server")])
    now = dt.datetime.now(dt.UTC)
    sans = [x509.DNSName("localhost")] + [x509.IPAddress(ipaddress.ip_address(a)) for a in wanted]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _covers(cert_path: Path, addresses: list[str]) -> bool:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    have = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    expires = cert.not_valid_after_utc
    return set(addresses) <= have and expires > dt.datetime.now(dt.UTC) + dt.timedelta(days=7)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx
