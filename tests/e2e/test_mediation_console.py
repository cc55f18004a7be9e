"""The mediator's whole path in Chromium: log in, create the case, invite, admit, caucus, end.
And recovery: the server is SIGKILLed mid-session; both phones come back by themselves into
the space they were in."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.e2e.conftest import TEST_TIMEOUT_S, WAIT_S, received_while, rising, wait_stat
from tests.e2e.flows import join, open_case
from tests.support.server_proc import ROOT, ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_console_to_caucus_to_end(console_server, launch, new_page):
    browser = launch()
    med = new_page(browser)
    (party_link,) = open_case(
        med,
        console_server,
        case_number="(2026)京0105民调123号",
        title="房屋租赁纠纷 Tenancy dispute",
        parties=("张三",),
    )

    party = new_page(browser)
    join(party, party_link)
    party.wait_for_selector("#waiting:not([hidden])")
    pid = party.evaluate("() => window.parley.me")
    row = f'#people li[data-participant="{pid}"]'
    med.click(f'{row} button[data-action="admit"]')
    med.click(f'{row} button[data-action="identity"]')
    med.wait_for_selector(f"{row} >> text=✔ID")
    wait_stat(med, "video")
    wait_stat(party, "video")

    # A one-minute caucus for side A: the party moves, sees the countdown in warning colour.
    med.fill("#caucus-name", "a")
    med.fill("#caucus-minutes", "1")
    med.click("#form-caucus button")
    med.click('#caucuses li[data-caucus="a"] button[data-action="move-side-A"]')
    party.wait_for_selector("#caucus-timer.warn:not([hidden])")
    assert "0:5" in party.inner_text("#caucus-timer") or "1:00" in party.inner_text("#caucus-timer")
    received_while(party, med, frames=10)  # what was already on the way arrives
    assert received_while(party, med) <= 2, "a party alone in a caucus must receive nobody"
    party.click("#btn-ask")
    med.wait_for_selector(f"{row} >> text=✋")

    # The mediator visits: they see each other again; the chat stays in the caucus.
    med.click('#caucuses li[data-caucus="a"] button[data-action="visit"]')
    rising(party)
    rising(med)
    party.fill("#chat-text", "我们可以接受分期 we can accept instalments")
    party.click("#form-chat button")
    med.wait_for_selector("#chat-list >> text=we can accept instalments")

    med.click('#caucuses li[data-caucus="a"] button[data-action="close-caucus"]')
    party.wait_for_selector("#caucus-timer", state="hidden")
    med.once("dialog", lambda d: d.accept())
    med.click("#btn-end")
    party.wait_for_selector("#screen-end:not([hidden])")


def test_sigkill_and_restart_participants_return_to_their_space(tmp_path, launch, new_page):
    data, port = tmp_path / "data", free_port()
    server = ServerProcess(data, "--port", str(port)).start(timeout=WAIT_S)
    browser = launch()
    med, party = new_page(browser), new_page(browser)
    try:
        join(med, server.links["mediator"][0], consents=False)
        join(party, server.links["party"][0])
        pid = party.evaluate("() => window.parley.me")
        med.click(f'#people li[data-participant="{pid}"] button[data-action="admit"]')
        wait_stat(party, "video")
        pcs_before = party.evaluate("() => window.__pcs.length")
        med_pcs_before = med.evaluate("() => window.__pcs.length")

        server.stop(sig_kill=True)
        server = ServerProcess(data, "--port", str(port)).start(timeout=WAIT_S)

        # Nobody touches the pages: they reconnect, offer again, and the party is still admitted.
        party.wait_for_function(f"() => window.__pcs.length > {pcs_before}")
        med.wait_for_function(f"() => window.__pcs.length > {med_pcs_before}")
        wait_stat(party, "video")  # the new connection's counters start at zero
        wait_stat(med, "video")
        assert party.is_hidden("#waiting")
        assert party.evaluate("() => window.parley.view.space") == "joint"
        rising(party)
        rising(med)
        verify = subprocess.run(
            [
                sys.executable,
                str(ROOT / "server.py"),
                "ledger",
                "verify",
                party.evaluate("() => window.parley.view.session.id"),
                "--data-dir",
                str(data),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=WAIT_S,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        server.stop()
