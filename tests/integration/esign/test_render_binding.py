"""A faulty renderer prints a term the signed data does not hold: the phone refuses to sign
it, and `verify` refuses the sealed result (issue: the visible terms must be bound)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import sys

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

import esign.ceremony
import esign.phone
from esign import document
from esign.agreement import canonical_json, fingerprint
from esign.binding import check_rendering
from esign.errors import EsignError
from esign.phone import PhoneRefusal
from server import DESK
from tests.integration.esign.conftest import enrol, sample_agreement, sign_turn
from tests.integration.signaling.conftest import running  # noqa: F401 - fixture
from tests.integration.signaling.test_agreement_session import TERMS, session_with_signers
from tests.support.server_proc import ROOT

EXTRA = "申请人另向被申请人支付违约金人民币壹拾万元整。"


def faulty_renderer(agreement):
    """Prints one more term than the data holds; embeds and fingerprints the honest data."""
    honest_json, honest_fp = canonical_json(agreement), fingerprint(agreement)
    original_json, original_fp = document.canonical_json, document.fingerprint
    document.canonical_json, document.fingerprint = (lambda _: honest_json), (lambda _: honest_fp)
    try:
        changed = msgspec.structs.replace(agreement, terms=[*agreement.terms, EXTRA])
        return document.render_agreement_pdf(changed)
    finally:
        document.canonical_json, document.fingerprint = original_json, original_fp


def test_honest_rendering_is_bound_and_faulty_one_is_not():
    agreement = sample_agreement()
    assert check_rendering(document.render_agreement_pdf(agreement)).first_revision_identical
    with pytest.raises(EsignError, match="rendering_differs") as caught:
        check_rendering(faulty_renderer(agreement))
    assert "content differs" in str(caught.value)


async def test_signed_and_sealed_pdf_is_still_bound(make_ceremony):
    ceremony = await make_ceremony()
    for pid in ("p-app", "p-res", "p-med"):
        await sign_turn(ceremony, pid, enrol(ceremony, pid))
    await ceremony.seal()
    binding = check_rendering(ceremony.pdf)
    assert binding.pages == 1 and binding.first_revision_identical


def test_an_annotation_drawn_over_the_page_is_refused():
    pdf = document.render_agreement_pdf(sample_agreement())
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    page_ref, _ = writer.find_page_for_modification(0)
    note = generic.DictionaryObject(
        {
            generic.pdf_name("/Type"): generic.pdf_name("/Annot"),
            generic.pdf_name("/Subtype"): generic.pdf_name("/FreeText"),
            generic.pdf_name("/Rect"): generic.ArrayObject(
                map(generic.FloatObject, (56, 400, 500, 420))
            ),
            generic.pdf_name("/Contents"): generic.TextStringObject(EXTRA),
        }
    )
    page = page_ref.get_object()
    page["/Annots"] = generic.ArrayObject([writer.add_object(note)])
    writer.update_container(page)
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(EsignError, match="FreeText"):
        check_rendering(out.getvalue())


@pytest.mark.slow
async def test_faulty_renderer_in_a_real_server(running, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setattr(esign.ceremony, "render_agreement_pdf", faulty_renderer)
    state, (med, a, b) = await session_with_signers(running)
    draft = {"action": "draft", "case_type": "debt", "language": "zh-CN", "terms": TERMS}
    assert (await med.call("agreement", draft))["ok"]
    assert (await med.call("agreement", {"action": "freeze"}))["ok"]
    for signer in (a, b, med):
        await signer.enrol()
        with pytest.raises(PhoneRefusal, match="rendering_differs|third|differs"):
            signer.phone.review(await signer.pdf())

    # Phones that do not compare (the old behaviour) let it through to the seal ...
    monkeypatch.setattr(esign.phone, "check_rendering", lambda pdf: None)
    for signer in (a, b, med):
        await signer.sign()
    assert (await med.call("agreement", {"action": "seal"}))["ok"]
    (tmp_path / "agreement.pdf").write_bytes(await a.pdf())
    # ... and the offline verifier refuses the result.
    root = running.app[DESK].pki().root
    root_fp = hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).hexdigest()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "server.py"),
        "verify",
        str(tmp_path / "agreement.pdf"),
        "--root",
        root_fp,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 1, out.decode()
    assert "[FAIL] pages are the rendering of the agreement data" in out.decode()


def test_a_corrupt_page_stream_is_a_difference_not_a_crash():
    pdf = bytearray(document.render_agreement_pdf(sample_agreement()))
    start = pdf.index(b"stream\n", pdf.index(b"/FlateDecode")) + 7
    pdf[start + 40] ^= 0x01  # inside the compressed page content
    with pytest.raises(EsignError, match="rendering_differs"):
        check_rendering(bytes(pdf))
