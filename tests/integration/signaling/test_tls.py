"""`serve --tls self-signed`: the server makes its certificate on first use and serves HTTPS."""

from __future__ import annotations

import ssl
import urllib.request

from cryptography import x509

from tests.support.server_proc import ServerProcess


def test_self_signed_https(tmp_path):
    data = tmp_path / "data"
    server = ServerProcess(data, "--tls", "self-signed", "--host", "127.0.0.1").start()
    try:
        url = server.url.replace("http://", "https://")
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        with urllib.request.urlopen(url + "/healthz", context=insecure, timeout=10) as r:
            assert r.status == 200
        cert = x509.load_pem_x509_certificate((data / "tls-cert.pem").read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in sans.get_values_for_type(x509.DNSName)
        assert any(str(ip) == "127.0.0.1" for ip in sans.get_values_for_type(x509.IPAddress))
        assert (data / "tls-key.pem").stat().st_mode & 0o777 == 0o600
        # The printed join links use https too, and verify against this very certificate.
        assert all(link.startswith("https://") for links in server.links.values() for link in links)
        pinned = ssl.create_default_context(cafile=str(data / "tls-cert.pem"))
        pinned.check_hostname = False
        with urllib.request.urlopen(url + "/healthz", context=pinned, timeout=10) as r:
            assert r.status == 200
    finally:
        server.stop()
