"""The mediation agreement signed in three headless Chromium pages with real WebCrypto keys.

The mediator (logged in through the console, so its link carries the staff login) drafts the
agreement live, freezes it; each party signs on its own page, then the mediator; the mediator
seals and downloads agreement.pdf and evidence.zip, which the offline ``verify`` CLI and
pyHanko's own validator accept against the root certificate. The page refuses, and never
signs, a prepared PDF changed on the way (one byte flipped in the server's answer), a
certificate that does not chain to the root named by the invitation link (``#root=``), and —
with a fault patched into a real server — a PDF whose text is not the agreement data and a
certificate that names another person or role.
A server error is shown as a plain sentence, never its code.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.e2e.conftest import TEST_TIMEOUT_S, WAIT_S
from tests.e2e.flows import (
    ERRORS,
    TERMS,
    agreement,
    draft,
    freeze,
    refusal,
    sign,
    signing_case,
)
from tests.support.server_proc import ROOT, ServerProcess, add_staff

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]

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
# The enrolment request leaves the page with its proof of possession broken: the real server
# answers ``bad_proof_of_possession``.
BAD_PROOF = """() => {
  const socket = window.parley.socket;
  const original = socket.emitWithAck.bind(socket);
  socket.emitWithAck = (event, payload) => {
    if (event === 'esign' && payload.action === 'enrol') {
      const pop = payload.request.proof_of_possession;
      payload = {...payload, request: {...payload.request,
        proof_of_possession: (pop[0] === 'A' ? 'B' : 'A') + pop.slice(1)}};
    }
    return original(event, payload);
  };
}"""
UNTAMPER = "() => { delete window.parley.socket.emitWithAck; }"  # back to the prototype's
SET_HASH = "h => { location.hash = h; }"
RAW_CODE = re.compile(r"\b[a-z]+_[a-z_]+\b|Error|出错了")


def root_fingerprint(server) -> str:
    pem = Path(server.data_dir) / "esign-pki" / "root.pem"
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def test_parties_and_mediator_sign_in_the_browser_and_the_pdf_verifies(
    console_server, launch, new_page, tmp_path
):
    ERRORS.clear()
    # B opens its link without the root fragment (an old link): it may sign, and is told that
    # the issuer of its certificate could not be checked.
    med, (a, b), links = signing_case(
        launch(), new_page, console_server, links=lambda i, url: url.split("#")[0] if i else url
    )
    root = root_fingerprint(console_server)
    assert links[0].endswith(f"#root={root}")  # the console's invitation names the root
    assert a.evaluate("() => location.hash") == f"#root={root}"

    # The mediator drafts; the parties see the terms live. A party has no editor.
    draft(med, [*TERMS, "", ""])
    for page in (a, b):
        page.wait_for_selector("#ag-draft li >> text=支付人民币5000元")
        assert page.is_hidden("#ag-editor")
    assert a.inner_text("#ag-draft").count("\n") == 1  # two terms, the blank lines dropped

    fp = freeze(med, (a, b))
    for page in (med, a, b):  # each page read the fingerprint out of the PDF itself
        page.wait_for_selector("#ag-fingerprint[data-fingerprint]")
        assert page.get_attribute("#ag-fingerprint", "data-fingerprint") == fp
        assert page.locator("#ag-pages canvas").count() >= 1
    assert a.get_attribute("#ag-fingerprint", "data-text") == "same"
    shown = a.evaluate("() => window.parleyAgreement.shownText")  # what pdf.js read
    assert "5000" in shown and "案号：(2026)京0105民调77号" in shown  # the case number exactly
    assert b.is_visible("#ag-wait-turn") and b.is_hidden("#ag-sign-now")

    # A's page is handed a prepared PDF with one byte changed: it refuses and never signs.
    a.evaluate(TAMPER, "tail")
    assert "digest" in refusal(a)
    a.evaluate(UNTAMPER)
    a.evaluate(TAMPER, "prefix")
    assert "does not extend" in refusal(a)
    assert "sign" not in a.evaluate("() => window.__esignActions")
    a.evaluate(UNTAMPER)
    # Its link named another root: the certificate does not chain to it.
    a.evaluate(SET_HASH, "#root=" + "ab" * 32)
    said = refusal(a)
    assert "organisation root named in your invitation link" in said and "Tell the mediator" in said
    a.evaluate(SET_HASH, f"#root={root}")
    assert agreement(med)["signed"] == []

    # A server error on the signing screen is a sentence with a next step, never the code.
    a.evaluate(BAD_PROOF)
    a.click("#ag-sign-now:not([hidden]):not([disabled])")
    expected = a.evaluate("() => i18n.error('bad_proof_of_possession')")
    a.wait_for_function(
        "t => document.getElementById('ag-sign-step').textContent === t", arg=expected
    )
    assert "bad_proof_of_possession" in a.evaluate("() => window.parleyAgreement.lastError")
    shown = a.inner_text("#ag-sign-step")
    assert not RAW_CODE.search(shown), shown
    a.evaluate(UNTAMPER)
    a.click("#lang")  # and in Chinese
    a.evaluate(BAD_PROOF)
    a.click("#ag-sign-now:not([hidden]):not([disabled])")
    expected = a.evaluate("() => i18n.error('bad_proof_of_possession')")
    assert "请重新点" in expected
    a.wait_for_function(
        "t => document.getElementById('ag-sign-step').textContent === t", arg=expected
    )
    assert not RAW_CODE.search(a.inner_text("#ag-sign-step"))
    a.evaluate(UNTAMPER)
    a.click("#lang")

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
    assert a.get_attribute("#ag-review-root", "data-root") == "checked"
    b.wait_for_selector("#ag-sign-now:not([hidden])")
    b.click("#ag-sign-now:not([hidden]):not([disabled])")
    b.wait_for_selector("#ag-confirm:not([disabled])")
    assert b.get_attribute("#ag-review-root", "data-root") == "missing"
    assert "does not carry the organisation's root fingerprint" in b.inner_text("#ag-review-root")
    assert b.is_visible("#ag-review-root")
    b.click("#ag-confirm")
    b.wait_for_selector("#ag-receipt:not([hidden])")
    assert med.evaluate("() => location.hash") == f"#root={root}"  # "Enter" carries it too
    sign(med, fp)
    assert med.get_attribute("#ag-review-root", "data-root") == "checked"
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
    for target in (pdf, bundle):
        out = subprocess.run(
            [sys.executable, str(ROOT / "server.py"), "verify", str(target), "--root", root],
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

    # The mediator ends the session: each party's end screen offers the sealed agreement.
    med.click("#btn-end")
    for page in (a, b):
        page.wait_for_selector("#end-agreement:not([hidden])")
    with b.expect_download() as got:
        b.click("#end-download")
    kept = tmp_path / "kept.pdf"
    got.value.save_as(kept)
    assert kept.read_bytes() == pdf.read_bytes()
    # ... and so does the link opened again later.
    b.reload()
    b.wait_for_selector("#screen-end:not([hidden]) #end-agreement:not([hidden])")
    assert b.inner_text("#end-title") in ("调解已结束", "The mediation has ended")
    with b.expect_download() as got:
        b.click("#end-download")
    got.value.save_as(kept)
    assert kept.read_bytes() == pdf.read_bytes()
    assert ERRORS == []


# Faulty servers, made by a sitecustomize installed in the server process. The renderer prints
# one term more than the data it embeds and fingerprints (the attack of issue #11, item 4;
# tests/integration/esign/test_render_binding.py does it to the Python phone).
FAULTY_RENDERER = """
import msgspec
import esign.ceremony
from esign import document

EXTRA = "申请人另向被申请人支付违约金人民币壹拾万元整。"
honest = document.render_agreement_pdf


def faulty(agreement):
    data, fp = document.canonical_json(agreement), document.fingerprint(agreement)
    saved = document.canonical_json, document.fingerprint
    document.canonical_json, document.fingerprint = (lambda _: data), (lambda _: fp)
    try:
        return honest(msgspec.structs.replace(agreement, terms=[*agreement.terms, EXTRA]))
    finally:
        document.canonical_json, document.fingerprint = saved


esign.ceremony.render_agreement_pdf = faulty
"""
# The CA certifies the phone's key under another name, or for the other side's role (issue #11,
# item 7; with the Python phone: tests/integration/esign/test_phone_checks.py).
FORGED_CERTIFICATE = """
import esign.pki

issue = esign.pki.LocalPki.issue_event_certificate
SWAP = {"applicant": "respondent", "respondent": "applicant", "mediator": "applicant"}


def forged(self, public_key, **kw):
    if "%s" == "name":
        kw["name"] = kw["name"] + "某"
    else:
        kw["role"] = SWAP[kw["role"]]
    return issue(self, public_key, **kw)


esign.pki.LocalPki.issue_event_certificate = forged
"""
# The server asks the phone to sign a signature whose /Reason names another case and version.
FORGED_REASON = """
import esign.pdfsign

prepare = esign.pdfsign.prepare_signature


async def forged(pdf, **kw):
    return await prepare(pdf, **{**kw, "reason": "Signed OTHER-1 v9; ledger "})


esign.pdfsign.prepare_signature = forged
"""
FAULTY_SERVERS = {
    "renderer": (
        FAULTY_RENDERER,
        "the text of the PDF differs from the agreement data",
        "PDF 上的文字与协议数据不一致",
    ),
    "name": (
        FORGED_CERTIFICATE % "name",
        "the name or ID number in the signing certificate differs from the agreement",
        "签名证书上的姓名或身份编号与协议不一致",
    ),
    "role": (
        FORGED_CERTIFICATE % "role",
        "the signing certificate is not for this case and your signing role",
        "签名证书不是为本案和您的签署身份签发的",
    ),
    "reason": (
        FORGED_REASON,
        "the signature's details (case, version, signature field, reason or type) do not match",
        "待签的签名信息（案号、版本、签名栏、签署理由或类型）与协议不符",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTY_SERVERS))
def test_the_page_refuses_what_a_faulty_server_made(fault, tmp_path, launch, new_page):
    ERRORS.clear()
    patch, english, chinese = FAULTY_SERVERS[fault]
    site = tmp_path / "patch"
    site.mkdir()
    (site / "sitecustomize.py").write_text(patch, encoding="utf-8")
    data = tmp_path / "data"
    add_staff(data)
    env = {"PYTHONPATH": f"{site}:{ROOT}"}
    server = ServerProcess(data, "--no-demo", env=env).start_quiet(timeout=WAIT_S)
    try:
        med, (a,), _ = signing_case(launch(), new_page, server, parties=1, lang="en")
        draft(med)
        a.wait_for_selector("#ag-draft li >> text=支付人民币5000元")
        freeze(med, (a,))
        text = "differs" if fault == "renderer" else "same"
        for page in (med, a):  # everyone's panel says whether the pages differ from the data
            page.wait_for_selector(f"#ag-fingerprint[data-text='{text}']")
        if fault == "renderer":
            assert "违约金" in a.evaluate("() => window.parleyAgreement.shownText")  # printed
            assert med.is_visible("#ag-fingerprint .ag-text-differs")
        said = refusal(a)
        assert english in said, said
        assert "Tell the mediator" in said and not RAW_CODE.search(said)
        assert agreement(med)["signed"] == []
        a.click("#lang")
        said = refusal(a)
        assert chinese in said and "请告诉调解员" in said, said
    finally:
        server.stop()
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
