"""The signer's screen on a small phone (390×844): the "your turn" prompt at the top (both
languages), a short check code that matches the mediator's, Sign apart from Decline, the receipt
after signing, and the full-screen PDF viewer (page n of m, zoom).

Reaches a party's turn through the shared flow (tests/e2e/flows.py, as test_agreement_signing.py):
console case, two parties admitted with their ID checked, a draft, freeze; the first party signs
first.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import TEST_TIMEOUT_S
from tests.e2e.flows import ERRORS, PHONE, TERMS, agreement, draft, signing_case

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]

# In the viewport, and the element at its centre is it (or inside it): nothing covers it.
SEEN = """sel => { const el = document.querySelector(sel); if (!el) return 'missing';
  const r = el.getBoundingClientRect();
  if (r.width <= 0 || r.height <= 0) return 'no box';
  if (r.top < 0 || r.left < 0 || r.bottom > innerHeight || r.right > innerWidth) return 'outside';
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return hit && (hit === el || el.contains(hit)) ? 'ok' : 'covered by ' + (hit && (hit.id || hit.className)); }"""
BOX = """sel => { const r = document.querySelector(sel).getBoundingClientRect();
  return {x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height}; }"""


def seen(page, sel: str) -> None:
    assert page.evaluate(SEEN, sel) == "ok", (sel, page.evaluate(SEEN, sel))


def scrolled_seen(page, sel: str) -> None:
    page.eval_on_selector(sel, "el => el.scrollIntoView({block: 'center'})")
    seen(page, sel)


def code_of(fp: str) -> str:
    d = f"{int(fp[:8], 16) % 1_000_000:06d}"
    return f"{d[:3]} {d[3:]}"


def apart(page, one: str, other: str, gap: float = 24) -> None:
    a, b = page.evaluate(BOX, one), page.evaluate(BOX, other)
    dx = max(b["x"] - (a["x"] + a["w"]), a["x"] - (b["x"] + b["w"]))
    dy = max(b["y"] - (a["y"] + a["h"]), a["y"] - (b["y"] + b["h"]))
    assert max(dx, dy) >= gap, (one, a, other, b)


def test_signing_screen_on_a_phone(console_server, launch, new_page):
    ERRORS.clear()
    med, (a, b), _ = signing_case(launch(), new_page, console_server, viewport=PHONE, lang="en")
    draft(med, TERMS)
    a.wait_for_selector("#ag-draft li >> text=支付人民币5000元")
    assert a.is_hidden("#ag-turn")  # drafting: nobody's turn yet
    med.click("#ag-freeze")
    for page in (med, a, b):
        page.wait_for_selector("#ag-check-code[data-code]")
    fp = agreement(med)["fingerprint"]

    # 1. A's turn: the prompt is at the top, visible and uncovered, in English and in Chinese,
    # also when the page is scrolled; B (not its turn) has none.
    a.wait_for_selector("#ag-turn:not([hidden])")
    assert a.inner_text("#ag-turn-text") == "Your turn to sign"
    a.evaluate("() => window.scrollTo(0, 0)")
    seen(a, "#ag-turn")
    assert a.evaluate(BOX, "#ag-turn")["y"] < 120  # the top of the screen
    a.click("#lang")
    assert a.inner_text("#ag-turn-text") == "轮到您签署"
    a.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    seen(a, "#ag-turn")
    assert a.evaluate("() => document.querySelector('#ag-turn').getBoundingClientRect().top") <= 1
    a.click("#lang")
    assert a.inner_text("#ag-turn-text") == "Your turn to sign"
    assert b.is_hidden("#ag-turn")
    a.click("#ag-turn-go")  # takes the person to the Sign button
    seen(a, "#ag-sign-now")

    # 2. The check code: short, the same on every page, derived from the fingerprint; the full
    # fingerprint behind "Details".
    code = a.get_attribute("#ag-check-code", "data-code")
    assert re.fullmatch(r"\d{3} \d{3}", code) and code == code_of(fp)
    assert med.get_attribute("#ag-check-code", "data-code") == code
    assert med.inner_text("#ag-check-code") == code == b.inner_text("#ag-check-code")
    assert a.is_hidden("#ag-fingerprint .ag-fp-full")
    a.click("#ag-fingerprint .ag-fp-toggle")
    assert a.is_visible("#ag-fingerprint .ag-fp-full")
    assert fp[:8] in a.inner_text("#ag-fingerprint .ag-fp-full")

    # Sign (primary, large) and Decline (secondary) are well apart.
    apart(a, "#ag-sign-now", "#ag-decline-form button")
    sign_box = a.evaluate(BOX, "#ag-sign-now")
    decline_box = a.evaluate(BOX, "#ag-decline-form button")
    assert sign_box["h"] >= 64 and sign_box["w"] > 300
    assert sign_box["w"] * sign_box["h"] > 1.5 * decline_box["w"] * decline_box["h"]

    # 4. Full-screen reading of the frozen PDF: page 1 of N, zoom changes the canvas width.
    pages = a.locator("#ag-pages canvas").count()
    scrolled_seen(a, "#ag-read")
    a.click("#ag-read")
    a.wait_for_selector("#ag-viewer:not([hidden]) #ag-viewer-canvas")
    assert a.inner_text("#ag-viewer-page") == f"1 / {pages}"
    seen(a, "#ag-viewer-close")
    seen(a, "#ag-viewer-in")
    width = a.evaluate("() => document.querySelector('#ag-viewer-canvas').width")
    css_width = a.evaluate(BOX, "#ag-viewer-canvas")["w"]
    assert css_width <= PHONE["width"] and css_width > 300  # fit width on the phone
    a.click("#ag-viewer-in")
    a.wait_for_function(f"() => document.querySelector('#ag-viewer-canvas').width > {width}")
    a.click("#ag-viewer-fit")
    a.wait_for_function(f"() => document.querySelector('#ag-viewer-canvas').width === {width}")
    if pages > 1:
        a.click("#ag-viewer-next")
        a.wait_for_selector(f"#ag-viewer-page >> text='2 / {pages}'")
    a.click("#ag-viewer-close")
    assert a.is_hidden("#ag-viewer")

    # Review: the code again, next to the Sign button; then sign.
    a.click("#ag-sign-now:not([hidden]):not([disabled])")
    a.wait_for_selector("#ag-confirm:not([disabled])")
    assert a.inner_text("#ag-review-code") == code
    assert a.is_hidden("#ag-review-fingerprint")
    assert fp[:8] in a.inner_text("#ag-review-fingerprint")  # behind "Details"
    apart(a, "#ag-confirm", "#ag-decline-form button")
    a.click("#ag-review-read")
    a.wait_for_selector("#ag-viewer:not([hidden]) #ag-viewer-canvas")
    assert a.inner_text("#ag-viewer-page") == f"1 / {pages}"
    a.click("#ag-viewer-close")
    a.click("#ag-confirm")

    # 3. The receipt: "You have signed", the time, the code, what happens next; no more prompt.
    a.wait_for_selector("#ag-receipt:not([hidden])")
    seen(a, "#ag-receipt")
    text = a.inner_text("#ag-receipt")
    assert "You have signed" in text and "Next:" in text and code in text
    assert a.inner_text("#ag-receipt-code") == code
    assert re.search(r"\d{1,2}:\d{2}", text)
    a.wait_for_selector("#ag-turn", state="hidden")
    a.click("#lang")
    assert "您已签署" in a.inner_text("#ag-receipt")
    b.wait_for_selector("#ag-turn:not([hidden])")
    assert ERRORS == []
