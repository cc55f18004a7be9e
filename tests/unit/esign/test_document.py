import io

from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import enumerate_sig_fields

from esign import document
from esign.agreement import canonical_json, fingerprint
from esign.document import (
    attached_agreement_data,
    page_texts,
    render_agreement_pdf,
    signature_field_names,
)
from tests.unit.esign.samples import sample_agreement


def test_same_data_gives_same_bytes_and_other_data_other_bytes():
    a = sample_agreement()
    document._RENDERED.clear()
    first = render_agreement_pdf(a)
    assert first.startswith(b"%PDF-")
    document._RENDERED.clear()  # rendered again from nothing, not taken from the memo
    assert render_agreement_pdf(a) == first
    assert render_agreement_pdf(sample_agreement(version=2)) != first


def test_the_memo_of_renderings_is_bounded_and_keyed_by_the_data():
    document._RENDERED.clear()
    pdfs = [render_agreement_pdf(sample_agreement(version=v)) for v in range(1, 11)]
    assert len(document._RENDERED) == document._RENDERED_KEEP
    assert len(set(pdfs)) == 10
    assert render_agreement_pdf(sample_agreement(version=10)) == pdfs[-1]


def test_pdf_embeds_canonical_data_and_prints_fingerprint_on_every_page():
    long_terms = [f"Term {n}: " + "the respondent shall pay the applicant " * 25 for n in range(12)]
    for agreement in (sample_agreement(), sample_agreement("en", terms=long_terms)):
        reader = PdfFileReader(io.BytesIO(render_agreement_pdf(agreement)))
        assert attached_agreement_data(reader) == canonical_json(agreement)
        pages = page_texts(reader)
        if agreement.language == "en":
            assert len(pages) > 1
        fp = fingerprint(agreement)
        for lines in pages:
            assert any(fp in line for line in lines)
        text = "\n".join(line for lines in pages for line in lines)
        for party in agreement.parties:
            assert party.name in text
        assert agreement.terms[0][:20] in text


def test_chinese_text_is_readable_back_from_the_pdf():
    agreement = sample_agreement()
    reader = PdfFileReader(io.BytesIO(render_agreement_pdf(agreement)))
    text = "".join(line for lines in page_texts(reader) for line in lines)
    assert "调解协议书" in text and "伍万元整" in text


def test_one_empty_signature_field_per_signer_plus_seal():
    agreement = sample_agreement()
    reader = PdfFileReader(io.BytesIO(render_agreement_pdf(agreement)))
    found = [(name, value) for name, value, _ in enumerate_sig_fields(reader)]
    assert [name for name, _ in found] == signature_field_names(agreement)
    assert signature_field_names(agreement) == [
        "Applicant1",
        "Respondent1",
        "Mediator",
        "OrganisationSeal",
    ]
    assert all(value is None for _, value in found)


def test_words_wider_than_a_line_are_cut_not_lost():
    word = "x" * 300
    agreement = sample_agreement("en", terms=[word])
    reader = PdfFileReader(io.BytesIO(render_agreement_pdf(agreement)))
    text = "".join(line for lines in page_texts(reader) for line in lines)
    assert word in text.replace(" ", "")
