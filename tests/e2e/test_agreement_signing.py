"""The mediation agreement signed in three headless Chromium pages with real WebCrypto keys.

The mediator (logged in through the console, so its link carries the staff login) drafts the
agreement live, freezes it; each party signs on its own page, then the mediator; the mediator
seals and downloads agreement.pdf and evidence.zip, which the offline ``verify`` CLI and
pyHanko's own validator accept against the root certificate. And the page refuses, and never
signs, a prepared PDF that was changed on the way (one byte flipped in the server's answer).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.e2e.conftest import TEST_TIMEOUT_S, WAIT_S
from tests.e2e.flows import join
from tests.e2e.flows import open_case as console_case
from tests.support.server_proc import ROOT, ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]
TERMS = ["李四于2026年12月31日前向张三支付人民币5000元。", "双方就本纠纷再无其他争议。"]

# Wrap the page's socket so that the ``prepare`` answer arrives with one byte of the prepared
# PDF flipped at ``where`` ("prefix": inside the reviewed bytes; "tail": after the signature
# hole), and remember every esign action the page sends.
TAMPER = """where => {
  const socket = window.parley.socket;
  window.__esignActions = [];
  const original = socket.emitWithAck.bind(socket);
  socket.emitWithAck = async (event, payload) => {
    if (event === 'esign') window.__esignActions.push(payload.action);
    const reply = await original(event, payload);
    if (event === 'esign' && payload.action === 'prepare' && reply.ok) {
      const pdf = Uint8Array.from(atob(reply.request.prepared_pdf), c => c.charCodeAt(0));
      const at = where === 'prefix' ? 200 : pdf.length - 20;
      pdf[at] ^= 0x01;
      let s = ''; for (const x of pdf) s += String.fromCharCode(x);
      reply.request.prepared_pdf = btoa(s);
    }
    return reply;
  };
}"""
UNTAMPER = "() => { delete window.parley.socket.emitWithAck; }"  # back to the prototype's


ERRORS: list[str] = []


def watched(page):
    """Accept the page's confirm() dialogs; collect its uncaught errors."""
    page.on("dialog", lambda d: d.accept())
    page.on("pageerror", lambda e: ERRORS.append(str(e)))
    return page


def open_case(browser, new_page, server):
    """Console: log in, create the case with two parties, enter as the mediator."""
    med = watched(new_page(browser))
    links = console_case(
        med, server, case_number="(2026)京0105民调77号", title="借款纠纷 Loan dispute"
    )
    return med, links


def agreement(page) -> dict:
    return page.evaluate("() => window.parley.view.agreement")


def sign(page, fingerprint: str) -> None:
    """The signer's turn: Sign now, every check passes, read, confirm, receipt."""
    page.click("#ag-sign-now:not([hidden]):not([disabled])")
    page.wait_for_selector("#ag-confirm:not([disabled])")
    assert page.is_visible("#ag-review-pages canvas")
    assert fingerprint[:8] in page.inner_text("#ag-review-fingerprint")
    page.click("#ag-confirm")
    page.wait_for_selector("#ag-receipt:not([hidden])")


def refuses(page, where: str) -> str:
    page.click("#ag-sign-now:not([hidden]):not([disabled])")
    page.wait_for_selector("#ag-sign-step[data-refused='1']")
    assert page.is_disabled("#ag-confirm") and page.is_hidden("#ag-review")
    return page.inner_text("#ag-sign-step")


def test_parties_and_mediator_sign_in_the_browser_and_the_pdf_verifies(
    console_server, launch, new_page, tmp_path
):
    ERRORS.clear()
    browser = launch()
    med, (link_a, link_b) = open_case(browser, new_page, console_server)
    parties = []
    for link in (link_a, link_b):
        page = watched(new_page(browser))
        join(page, link)
        pid = page.evaluate("() => window.parley.me")
        row = f'#people li[data-participant="{pid}"]'
        med.click(f'{row} button[data-action="admit"]')
        med.click(f'{row} button[data-action="identity"]')
        med.wait_for_selector(f"{row} >> text=✔ID")
        parties.append(page)
    a, b = parties

    # The mediator drafts; the parties see the terms live. A party has no editor.
    med.select_option("#ag-case-type", "debt")
    med.select_option("#ag-language", "zh-CN")
    med.fill("#ag-terms", "\n".join(TERMS) + "\n\n")
    med.click("#ag-save")
    for page in (a, b):
        page.wait_for_selector("#ag-draft li >> text=支付人民币5000元")
        assert page.is_hidden("#ag-editor")
    assert a.inner_text("#ag-draft").count("\n") == 1  # two terms, the blank lines dropped

    med.click("#ag-freeze")
    for page in (med, a, b):
        page.wait_for_selector("#ag-fingerprint[data-fingerprint]")
    fp = agreement(med)["fingerprint"]
    for page in (med, a, b):  # each page read the fingerprint out of the PDF itself
        assert page.get_attribute("#ag-fingerprint", "data-fingerprint") == fp
        assert page.locator("#ag-pages canvas").count() >= 1
    assert "5000" in a.evaluate("() => window.parleyAgreement.shownText")  # pdf.js read the text
    assert b.is_visible("#ag-wait-turn") and b.is_hidden("#ag-sign-now")

    # A's page is handed a prepared PDF with one byte changed: it refuses and never signs.
    a.evaluate(TAMPER, "tail")
    assert "digest" in refuses(a, "tail")
    a.evaluate(UNTAMPER)
    a.evaluate(TAMPER, "prefix")
    assert "does not extend" in refuses(a, "prefix")
    assert "sign" not in a.evaluate("() => window.__esignActions")
    assert agreement(med)["signed"] == []
    a.evaluate(UNTAMPER)

    # B declines with a reason; the mediator edits the terms: version 2, signed from scratch.
    b.fill("#ag-decline-reason", "金额不对 the amount is wrong")
    b.click("#ag-decline-form button")
    med.wait_for_selector("#agreement-panel[data-status='declined']")
    assert "李四" in med.inner_text("#ag-status")
    assert med.is_visible("#ag-edit-warning")  # the UI says an edit makes a new version
    med.fill("#ag-terms", "\n".join([TERMS[0].replace("5000", "4500"), TERMS[1]]))
    med.click("#ag-save")
    for page in (med, a, b):
        page.wait_for_selector("#agreement-panel[data-version='2'][data-status='signing']")
        page.wait_for_function(
            f"() => document.querySelector('#ag-fingerprint').dataset.fingerprint !== '{fp}'"
        )
    v1, fp = fp, agreement(med)["fingerprint"]
    assert fp != v1 and a.get_attribute("#ag-fingerprint", "data-fingerprint") == fp
    assert "4500" in a.evaluate("() => window.parleyAgreement.shownText")

    sign(a, fp)
    b.wait_for_selector("#ag-sign-now:not([hidden])")
    sign(b, fp)
    sign(med, fp)
    med.wait_for_selector("#agreement-panel[data-status='complete']")
    med.click("#ag-seal")
    for page in (med, a, b):
        page.wait_for_selector("#agreement-panel[data-status='sealed']")
    view = agreement(a)
    assert view["signed"] == view["signers"] and len(view["signers"]) == 3

    with med.expect_download() as got:
        med.click("#ag-download-pdf")
    pdf = tmp_path / "agreement.pdf"
    got.value.save_as(pdf)
    assert hashlib.sha256(pdf.read_bytes()).hexdigest() == view["pdf_sha256"]
    with med.expect_download() as got:
        med.click("#ag-download-evidence")
    bundle = tmp_path / "evidence.zip"
    got.value.save_as(bundle)

    root_pem = Path(console_server.data_dir) / "esign-pki" / "root.pem"
    root = x509.load_pem_x509_certificate(root_pem.read_bytes())
    root_fp = hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).hexdigest()
    for target in (pdf, bundle):
        out = subprocess.run(
            [sys.executable, str(ROOT / "server.py"), "verify", str(target), "--root", root_fp],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=WAIT_S,
        )
        assert out.returncode == 0, out.stdout + out.stderr
    pyhanko = Path(sys.executable).parent / "pyhanko"
    out = subprocess.run(
        [str(pyhanko), "sign", "adesverify", "--trust-replace", "--trust", str(root_pem), str(pdf)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=WAIT_S,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("INTACT:TRUSTED") >= 4, out.stdout
    assert ERRORS == []


def test_pdfjs_files_are_served_and_nothing_else(tmp_path):
    """/vendor/pdfjs serves the library, its worker and font data; no other path of the package."""
    import urllib.error
    import urllib.request

    server = ServerProcess(tmp_path / "data", "--no-demo").start_quiet(timeout=WAIT_S)
    try:

        def get(path: str) -> tuple[int, str, bytes]:
            try:
                with urllib.request.urlopen(server.url + path, timeout=WAIT_S) as r:
                    return r.status, r.headers.get("Content-Type", ""), r.read()
            except urllib.error.HTTPError as exc:
                return exc.code, "", b""

        status, kind, body = get("/vendor/pdfjs/build/pdf.min.mjs")
        assert status == 200 and kind.startswith("text/javascript") and len(body) > 100_000
        status, kind, _ = get("/vendor/pdfjs/build/pdf.worker.min.mjs")
        assert status == 200 and kind.startswith("text/javascript")
        assert get("/vendor/pdfjs/cmaps/UniGB-UCS2-H.bcmap")[0] == 200
        for bad in (
            "/vendor/pdfjs/package.json",
            "/vendor/pdfjs/build/pdf.mjs.map",
            "/vendor/pdfjs/build/../package.json",
            "/vendor/pdfjs/build/%2e%2e/%2e%2e/socket.io-client/package.json",
            "/vendor/pdfjs/cmaps/../../../../server.py",
            "/vendor/pdfjs/cmaps/no-such-map.bcmap",
        ):
            assert get(bad)[0] == 404, bad
    finally:
        server.stop()
