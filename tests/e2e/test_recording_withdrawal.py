"""Consent withdrawn from the page while recording runs, in Chromium (R8, R15; issue #12).

A mediator and a party, recording on with both consents: the party's *Withdraw my consent to
recording* button pauses the recording for everyone (the demo's policy: ``withdrawal="pause"``),
the party stays in the joint room and is still heard, the mediator's panel names who withdrew,
the party's *I agree now* resumes it; the ledger holds the question, the answers, the withdrawal
and the gap (``recording.paused`` / ``recording.resumed``), each with its actor."""

from __future__ import annotations

import pytest

from rooms.ledger import SqliteLedgerStore
from tests.e2e.conftest import TEST_TIMEOUT_S, rising, wait_stat
from tests.e2e.test_recorded_mediation import RECORDING, _admit, _mediation

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]

PAUSED = "() => !!(window.parley.view && window.parley.view.session.recording_paused)"
RUNNING = "() => !!(window.parley.view && !window.parley.view.session.recording_paused)"
# the mediator's panel says who withdrew (host.js), in the page's language
WITHDRAWN_SHOWN = """() => document.getElementById('rec-status').textContent.includes(
  i18n.t('rec_withdrawn_by').split('{names}')[0])"""


def test_a_party_withdraws_consent_and_the_recording_pauses(tmp_path, launch, new_page):
    server, data, p = _mediation(tmp_path, launch, new_page, {"M": None, "A": None})
    med, a = p["M"], p["A"]
    session = med.evaluate("() => window.parley.view.session.id")
    try:
        pid = _admit(med, a)
        wait_stat(a, "video")
        assert a.is_hidden("#rec-withdraw")  # nothing to withdraw while nothing is recorded
        med.click("#btn-recording:not([hidden])")
        med.click("#rec-self:not([hidden]) button[data-action='rec-self-yes']")
        a.click("#rec-ask[data-state='asked']:not([hidden]) button[data-action='rec-yes']")
        for page in (med, a):
            page.wait_for_function(RECORDING)
        assert med.is_hidden("#rec-withdraw")  # the mediator stops instead

        a.click("#rec-withdraw:not([hidden])")
        for page in (med, a):
            page.wait_for_function(PAUSED)
        a.wait_for_selector("#rec-ask[data-state='paused']:not([hidden])")
        a.wait_for_selector("#rec-withdraw", state="hidden")
        med.wait_for_function(WITHDRAWN_SHOWN)
        assert "张三" in med.inner_text("#rec-status")
        assert a.evaluate("() => window.parley.view.space") == "joint"  # not ejected
        rising(med)  # the mediator still receives the party

        a.click("#rec-ask button[data-action='rec-yes']")
        for page in (med, a):
            page.wait_for_function(RUNNING)
        a.wait_for_selector("#rec-withdraw:not([hidden])")
        med.wait_for_function(f"() => !({WITHDRAWN_SHOWN})()")
    finally:
        server.stop()

    store = SqliteLedgerStore(data / "ledger.sqlite3")
    try:
        events = store.read(session)
    finally:
        store.close()
    med_id = next(e.actor for e in events if e.type == "recording.asked")
    steps = [
        (e.type, e.actor)
        for e in events
        if (
            e.type.startswith("recording.") and e.type not in ("recording.segment", "recording.gap")
        )
        or (e.type == "participant.consent" and e.data["topic"] == "recording")
    ]
    assert steps[:9] == [
        ("participant.consent", med_id),
        ("recording.asked", med_id),
        ("participant.consent", pid),
        ("recording.started", med_id),
        ("participant.consent", pid),
        ("recording.consent_withdrawn", pid),
        ("recording.paused", pid),
        ("participant.consent", pid),
        ("recording.resumed", pid),
    ], steps
    later = {t for t, _ in steps[9:]}  # the server's stop may end the session's run after
    assert not later & {"recording.paused", "recording.resumed", "recording.consent_withdrawn"}
    resumed = next(e for e in events if e.type == "recording.resumed")
    assert resumed.data["seconds"] > 0
