"""The static verification page (/verify) in headless Chromium: it checks a sealed agreement
picked from disk against the organisation's root fingerprint, entirely in the browser — valid
for the real file, invalid for a tampered copy or another root, and no request carries the file."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from esign.ceremony import SignatureCeremony
from esign.pki import LocalPki, local_timestamp_authority
from esign.tsa import AuthorityTimeStamper
from tests.e2e.conftest import WAIT_S
from tests.integration.esign.conftest import enrol, sample_agreement, sign_turn
from tests.support.server_proc import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """(sealed PDF path, tampered copy path, root fingerprint), made before Playwright runs."""
    base = tmp_path_factory.mktemp("sealed")

    async def make():
        pki = LocalPki.open(base / "pki", b"verify page passphrase", "Test Org")
        ceremony = SignatureCeremony(
            pki, AuthorityTimeStamper(local_timestamp_authority(pki)), base / "store"
        )
        await ceremony.freeze(sample_agreement())
        for pid in ("p-app", "p-res", "p-med"):
            await sign_turn(ceremony, pid, enrol(ceremony, pid))
        await ceremony.seal()
        return ceremony.pdf, hashlib.sha256(pki.root.public_bytes(Encoding.DER)).hexdigest()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pdf, root = pool.submit(asyncio.run, make()).result()
    good, bad = base / "agreement.pdf", base / "tampered.pdf"
    good.write_bytes(pdf)
    changed = bytearray(pdf)
    at = pdf.index(b"/Annots")  # a byte every signature covers
    changed[at + 1] ^= 0x01
    bad.write_bytes(bytes(changed))
    return good, bad, root


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = ServerProcess(tmp_path_factory.mktemp("data"), "--no-demo").start_quiet(timeout=WAIT_S)
    yield proc
    proc.stop()


def test_verify_page_checks_in_the_browser(sealed, server, launch, new_page):
    good, bad, root = sealed
    page = new_page(launch())
    requests = []
    page.on("request", lambda r: requests.append(r))
    page.goto(server.url + "/verify")

    def verdict(path, fingerprint):
        page.set_input_files("#verify-file", str(path))
        page.fill("#verify-root", fingerprint)
        page.evaluate("document.getElementById('verify-result').dataset.result = ''")
        page.click("#verify-go")
        page.wait_for_function(
            "() => document.getElementById('verify-result').dataset.result !== ''"
        )
        return page.get_attribute("#verify-result", "data-result"), page.inner_text(
            "#verify-result"
        )

    result, text = verdict(good, root)
    assert result == "valid", text
    assert (
        page.locator("#verify-checks li").count() == 6
    )  # certification, 3 signers, seal, timestamp
    result, text = verdict(bad, root)
    assert result == "invalid" and "changed" in text, text
    result, text = verdict(good, "00" * 32)
    assert result == "invalid" and "root" in text, text

    data = good.read_bytes()
    for r in requests:
        body = r.post_data_buffer or b""
        assert r.method == "GET" and data[:2000] not in body, r.url
    assert {r.url.split("/", 3)[3] for r in requests} <= {
        "verify",
        "static/style.css",
        "static/asn1.js",
        "static/verify.js",
    }
