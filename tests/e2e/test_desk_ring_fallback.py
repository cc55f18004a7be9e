"""The mediator's panel when no duty lawyer is on shift: the ringing line says at once that
nobody can answer, in the page's language (and in the other after the language button), and
only then shows the link to send by hand."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TEST_TIMEOUT_S
from tests.e2e.flows import open_case

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]

SAYS = "(key) => document.getElementById('lawyer-ring').textContent === i18n.t(key)"


def test_nobody_on_shift_shows_the_reason_and_the_link_at_once(console_server, launch, new_page):
    med = new_page(launch())
    open_case(med, console_server, case_number="M-9", title="邻里纠纷 Neighbours")
    med.fill("#lawyer-question", "相邻通行权如何主张？")
    med.click("#form-lawyer button[type=submit]")
    med.wait_for_selector("#lawyer-ring[data-reason=no_lawyer_on_shift]")
    med.wait_for_selector("#lawyer-invite:not([hidden]) #lawyer-link[href*='/j/']")
    med.wait_for_function(SAYS, arg="ring_no_lawyer")
    first = med.text_content("#lawyer-ring")
    med.click("#lang")  # the other language: the line follows
    med.wait_for_function(SAYS, arg="ring_no_lawyer")
    assert med.text_content("#lawyer-ring") != first
    assert not med.text_content("#lawyer-ring").startswith("ring_")  # a sentence, not a key
