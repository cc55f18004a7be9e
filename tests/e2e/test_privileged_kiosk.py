"""A lawyer visit in headless Chromium (R2): the bureau's kiosk (the lawyer's side) and the
facility's kiosk against a real server process. While the visit runs the lawyer's kiosk shows the
server's signed statement — no recorder, no observer — and no REC; the inmate's kiosk shows no
statement. The facility's supervisor ends the visit from the live console; the lawyer's kiosk then
shows the final statement with a QR code, and the file it offers verifies offline with the
deployment's root, as ``server.py verify`` does.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.e2e.conftest import TEST_TIMEOUT_S, WAIT_S, rising
from tests.e2e.flows import UNCOVERED
from tests.e2e.test_visit_kiosk import ZONE, kiosk, visit_now
from tests.support.province import build
from tests.support.server_proc import STAFF_PASSWORD, ServerProcess, add_staff
from visits.checkin import CheckIns
from visits.directory import insert_visitor
from visits.privilege import ASSERTION, verify_bytes
from visits.reservations import Request

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]
LAWYER_ID = "LAW12345678"


@pytest.fixture
def lawyer_visit(tmp_path):
    """A privileged visit approved for now, its lawyer checked in, tokens for both rooms, and the
    facility's supervisor ``sup-a``."""
    data = tmp_path / "data"
    store, directory, res, ids = build(data, "1-7 00:00-24:00")
    lawyer = directory.add(
        insert_visitor,
        {
            "facility": "prison-a",
            "inmate_number": "A-001",
            "name": "律师 张",
            "relationship": "lawyer",
            "id_number": LAWYER_ID,
            "evidence": "LICENCE-1",
            "approved_by": "officer-a",
            "reason": "engaged by the family",
            "expires": "2031-12-31",
        },
    )
    start, minutes = visit_now()
    before = start - dt.timedelta(days=2)
    bid = res.request(
        "staff:op",
        Request(ids["a1"], "bx-1", "pa-1", start, minutes, (lawyer,), kind="privileged"),
        before,
    )
    res.decide("staff:off-a", bid, approve=True, reason="", supervisor=False, now=before)
    now = dt.datetime.now(ZONE).replace(tzinfo=None, microsecond=0)
    CheckIns(store, res).check_in(
        "staff:op", bid, lawyer, LAWYER_ID, method="id_card", pledge=True, now=now
    )
    tokens = {t: directory.issue_credential(t, 0.0) for t in ("bx-1", "pa-1")}
    store.close()
    add_staff(data, "sup-a", "王科长", "supervisor")
    server = ServerProcess(data, "--no-demo").start_quiet(timeout=WAIT_S)
    yield server, tokens, data
    server.stop()


def test_the_lawyer_sees_and_takes_the_signed_statement(lawyer_visit, launch, new_page):
    server, tokens, data = lawyer_visit
    lawyer = new_page(launch(440))
    inmate = new_page(launch(1000))
    kiosk(lawyer, server.url, tokens["bx-1"])
    kiosk(inmate, server.url, tokens["pa-1"])
    for page in (lawyer, inmate):
        page.wait_for_function(
            "() => window.parleyKiosk.view && window.parleyKiosk.view.space === 'visit'"
        )
        rising(page, "video")
    # during the visit: the statement on the lawyer's side, as of the ledger head; no REC
    lawyer.wait_for_selector("#k-statement:not([hidden])")
    assert lawyer.text_content("#k-st-zh") == ASSERTION["zh"]
    assert lawyer.text_content("#k-st-en") == ASSERTION["en"]
    assert lawyer.is_hidden("#k-st-qr") and lawyer.is_hidden("#k-rec")
    assert inmate.is_hidden("#k-statement") and inmate.is_hidden("#k-rec")

    chief = new_page(launch())
    chief.goto(server.url + "/login")
    chief.fill("input[name=username]", "sup-a")
    chief.fill("input[name=password]", STAFF_PASSWORD)
    chief.click("button[type=submit]")
    chief.wait_for_url("**/visits")
    chief.goto(server.url + "/visits/sites/prison-a/live")
    assert chief.locator("#live-list a[href$='/watch']").count() == 0  # never watched (R2)
    chief.select_option("form[action$='/end'] select[name=reason]", "security")
    chief.click("form[action$='/end'] button[type=submit]")

    # the end: the final statement, its QR code for the phone, the file that verifies offline
    lawyer.wait_for_selector("#k-end:not([hidden])")
    lawyer.wait_for_selector("#k-st-qr:not([hidden])")
    lawyer.wait_for_function("() => document.querySelector('#k-st-qr-img').naturalWidth > 0")
    for selector in ("#k-st-download", "#k-st-qr-img"):
        lawyer.locator(selector).scroll_into_view_if_needed()
        assert lawyer.evaluate(UNCOVERED, selector) == "ok", selector
    assert inmate.is_hidden("#k-statement")
    body = lawyer.evaluate(
        "async () => { const r = await fetch(document.querySelector('#k-st-download').href);"
        " return Array.from(new Uint8Array(await r.arrayBuffer())); }"
    )
    root = x509.load_pem_x509_certificate((data / "esign-pki" / "root.pem").read_bytes())
    fingerprint = hashlib.sha256(root.public_bytes(Encoding.DER)).hexdigest()
    failed, lines = verify_bytes(bytes(body), fingerprint)
    assert failed == 0, lines
    assert '"ended":true' in bytes(body).decode()
    assert fingerprint in lawyer.text_content("#k-st-facts")  # the offline check command
