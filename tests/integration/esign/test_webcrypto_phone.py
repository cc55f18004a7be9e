"""Interop with real WebCrypto: a headless Chromium holds the non-extractable P-256 key,
proves possession, checks the ByteRange digest and signs the signed attributes; the server
converts its P1363 signature, verifies and embeds it. (The full signing page is the web
part's; this proves the cryptographic contract it relies on.)

Without Chromium the test fails, never skips: a skipped interop test reads as a pass.
``PARLEY_CHROMIUM`` names another browser binary.
"""

import base64
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from asn1crypto import cms
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature

from esign import pdfsign
from esign.protocol import EnrolRequest, SignatureReply, b64d
from tests.integration.esign.conftest import attestation, sign_turn

CHROMIUM = Path(os.environ.get("PARLEY_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_PRESENT = CHROMIUM.exists()
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PAGE_JS = """
<html><body><script>
const b64 = buf => btoa(String.fromCharCode(...new Uint8Array(buf)));
const unb64 = s => Uint8Array.from(atob(s), c => c.charCodeAt(0));
let keyPair = null;
window.enrol = async (nonceB64) => {
  keyPair = await crypto.subtle.generateKey({name: "ECDSA", namedCurve: "P-256"}, false, ["sign"]);
  const spki = await crypto.subtle.exportKey("spki", keyPair.publicKey);
  const prefix = new TextEncoder().encode("parley-esign-pop-v1\\0");
  const nonce = unb64(nonceB64);
  const msg = new Uint8Array(prefix.length + nonce.length);
  msg.set(prefix); msg.set(nonce, prefix.length);
  const pop = await crypto.subtle.sign({name: "ECDSA", hash: "SHA-256"}, keyPair.privateKey, msg);
  return {spki: b64(spki), pop: b64(pop), extractable: keyPair.privateKey.extractable};
};
window.signRequest = async (preparedB64, byteRange, expectedDigestB64, signedAttrsB64) => {
  const pdf = unb64(preparedB64);
  const [s1, l1, s2, l2] = byteRange;
  const covered = new Uint8Array(l1 + l2);
  covered.set(pdf.subarray(s1, s1 + l1)); covered.set(pdf.subarray(s2, s2 + l2), l1);
  const digest = b64(await crypto.subtle.digest("SHA-256", covered));
  if (digest !== expectedDigestB64) return {refused: "messageDigest mismatch"};
  const sig = await crypto.subtle.sign(
    {name: "ECDSA", hash: "SHA-256"}, keyPair.privateKey, unb64(signedAttrsB64));
  return {signature: b64(sig)};
};
</script></body></html>
"""


def _message_digest(signed_attrs_b64: str) -> str:
    attrs = cms.CMSAttributes.load(b64d(signed_attrs_b64, "signed_attrs"))
    value = next(a["values"][0].native for a in attrs if a["type"].native == "message_digest")
    return base64.b64encode(value).decode()


async def test_chromium_webcrypto_key_signs_the_agreement(make_ceremony, pki):
    from playwright.async_api import async_playwright

    if not CHROMIUM_PRESENT:
        pytest.fail(f"{CHROMIUM} is not installed: run scripts/test (it installs it when root)")
    ceremony = await make_ceremony()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page()

            async def serve(route):
                await route.fulfill(body=PAGE_JS, content_type="text/html")

            await page.route("http://localhost/**", serve)  # localhost: a secure context
            await page.goto("http://localhost/sign")
            challenge = ceremony.challenge("p-app")
            key = await page.evaluate("n => window.enrol(n)", challenge.nonce)
            assert key["extractable"] is False
            request = EnrolRequest(
                type="esign.enrol",
                participant_id="p-app",
                public_key_spki=key["spki"],
                nonce=challenge.nonce,
                proof_of_possession=key["pop"],
            )
            enrolment, _ = ceremony.enrol(request, attestation("p-app"))
            sign_request, _ = await ceremony.prepare("p-app", "ef" * 32)
            result = await page.evaluate(
                "a => window.signRequest(a[0], a[1], a[2], a[3])",
                [
                    sign_request.prepared_pdf,
                    sign_request.byte_range,
                    _message_digest(sign_request.signed_attrs),
                    sign_request.signed_attrs,
                ],
            )
            assert "signature" in result, result
            assert len(base64.b64decode(result["signature"])) == 64  # P1363 r||s
            # a wrong digest is refused in the browser
            refused = await page.evaluate(
                "a => window.signRequest(a[0], a[1], a[2], a[3])",
                [
                    sign_request.prepared_pdf,
                    sign_request.byte_range,
                    base64.b64encode(hashlib.sha256(b"other").digest()).decode(),
                    sign_request.signed_attrs,
                ],
            )
            assert refused == {"refused": "messageDigest mismatch"}
        finally:
            await browser.close()
    receipt, events = await ceremony.finish(
        SignatureReply(
            type="esign.signature", token=sign_request.token, signature_p1363=result["signature"]
        )
    )
    assert events[-1]["type"] == "signature.embedded"
    reader = PdfFileReader(io.BytesIO(ceremony.pdf))
    status = await async_validate_pdf_signature(
        reader.embedded_signatures[1], pdfsign.validation_context(pki.root)
    )
    assert status.intact and status.valid and status.trusted
    await sign_turn(ceremony, "p-res")  # the Python phone continues after the browser
    assert ceremony.signed == ["Applicant1", "Respondent1"]


def test_a_missing_chromium_fails_the_test_instead_of_skipping_it(tmp_path):
    env = {**os.environ, "PARLEY_CHROMIUM": str(tmp_path / "no-chromium")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            __file__,
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "test_chromium_webcrypto_key_signs_the_agreement",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[3],
        timeout=120,
    )
    assert "1 failed" in out.stdout and "skipped" not in out.stdout, out.stdout + out.stderr
    assert "no-chromium is not installed" in out.stdout
