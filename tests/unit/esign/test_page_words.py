"""The signing page compares the PDF's text with the agreement data using its own copy of the
document's fixed wording (web/static/agreement.js, ``DOC_WORDS``): it must be the wording the
renderer prints (esign/templates.py), or every honest agreement would be refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

from esign.templates import TEMPLATES

PAGE = Path(__file__).resolve().parents[3] / "web" / "static" / "agreement.js"


def test_the_signing_page_words_are_the_documents():
    source = PAGE.read_text(encoding="utf-8")
    block = re.search(r"const DOC_WORDS = (\{.*?\n  \});", source, re.S)
    assert block, "DOC_WORDS not found in agreement.js"
    words = json.loads(block.group(1))
    assert set(words) == set(TEMPLATES)
    for language, page_words in words.items():
        for key, text in page_words.items():
            assert text == TEMPLATES[language][key], (language, key)
    # every key the page prints from: title to the signature labels, footer and page number
    printed = set(
        "title case_no version date organisation applicant respondent mediator preamble closing "
        "signatures sig_applicant sig_respondent sig_mediator sig_seal footer page supersedes".split()
    )
    assert all(printed <= set(w) for w in words.values())
