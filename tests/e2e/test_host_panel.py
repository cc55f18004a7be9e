"""The mediator's panel on a phone-sized screen (390×844), as the mediator uses it.

Calling a duty lawyer shows the lawyer's link at once, with a copy button and a QR code, and the
link opens a valid join page for that lawyer. (Recording, now offered: test_recorded_mediation.py.)
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TEST_TIMEOUT_S
from tests.e2e.flows import PHONE, UNCOVERED, open_case

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]

# "ok" when the element's box is inside the viewport and the element (or a descendant) is what
# a finger touching its centre would hit; otherwise what is wrong.


def test_calling_a_duty_lawyer_shows_the_link_and_qr_at_once(console_server, launch, new_page):
    browser = launch()
    med = new_page(browser)
    med.set_viewport_size(PHONE)
    med.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_case(med, console_server, case_number="(2026)京0105民调9号", title="借款纠纷")

    med.fill("#lawyer-name", "周律师")
    med.click("#form-lawyer button[type=submit]")
    med.wait_for_selector("#lawyer-invite:not([hidden]) #lawyer-link[href*='/j/']")
    # the QR code is a real image (the console's QR route for this participant)
    med.wait_for_function(
        "() => { const i = document.getElementById('lawyer-qr'); return i.complete && i.naturalWidth > 0; }"
    )
    # on screen without scrolling: the page brings it into view, clear of the bottom bar
    for sel in ("#lawyer-link", "#lawyer-copy", "#lawyer-qr"):
        assert med.evaluate(UNCOVERED, sel) == "ok", sel
    url = med.get_attribute("#lawyer-link", "href")
    med.click("#lawyer-copy")
    med.wait_for_function("u => navigator.clipboard.readText().then(t => t === u)", arg=url)

    lawyer = new_page(browser)
    lawyer.goto(url)
    lawyer.wait_for_selector("#btn-confirm:not([disabled])")
    assert lawyer.inner_text("#my-name") == "周律师"
    assert lawyer.evaluate("() => window.parley.role") == "duty_lawyer"
