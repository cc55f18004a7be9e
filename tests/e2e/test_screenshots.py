"""A party's phone (390×844) through every state of a mediation, in Chromium, with the mediator
driving it from the console: the test asserts each state is on screen; with
``PARLEY_SCREENSHOTS=<dir>`` it also saves a JPEG of each (``<state>-<lang>.jpg``).
``scripts/screenshots`` runs it and writes docs/states.md from ``STATES``, so the pictures in
the docs are what the page shows today. A state whose element the page does not have yet is
left out (the docs say "not yet"), never faked.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.e2e.conftest import PC_TRACKER, TEST_TIMEOUT_S, WAIT_MS, WAIT_S, wait_stat
from tests.e2e.flows import PHONE, draft, join, open_case, set_lang
from tests.support.server_proc import ServerProcess, add_staff

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]
OUT = os.environ.get("PARLEY_SCREENSHOTS")

# (state, languages, what the party sees) — in the order a party lives them.
STATES = [
    (
        "link",
        ("zh", "en"),
        "Link opened: the phone shows the name and role and asks “Is this you?”",
    ),
    ("consents", ("zh", "en"), "Consents: online mediation and the session rules (required)"),
    ("device-check", ("zh",), "Device check: own camera preview, microphone level, network"),
    ("waiting", ("zh", "en"), "Waiting room: told to keep the page open until admitted"),
    ("call", ("zh", "en"), "In the call (joint session) with the mediator"),
    ("recording-asked", ("zh", "en"), "Asked in the call whether the session may be recorded"),
    ("recording", ("zh", "en"), "Recording: the REC mark and who started it"),
    ("private-room", ("zh",), "In a private room (caucus): who is there and the time left"),
    ("held", ("zh", "en"), "The mediator stepped out: back in the waiting room, told why"),
    ("muted", ("zh", "en"), "Muted by the mediator: a notice says so and how to ask to speak"),
    ("reconnecting", ("zh", "en"), "Connection lost: “Reconnecting…” and the frozen tile"),
    ("sign-turn", ("zh", "en"), "Your turn to sign the agreement: “Sign now”"),
    ("signed", ("zh",), "Signed: the receipt of your signature"),
    ("ended", ("zh", "en"), "Session ended by the mediator"),
]
LANGS = dict((key, langs) for key, langs, _ in STATES)
TAKEN: list[str] = []
NOT_YET: list[str] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snap(page, key: str, sel: str, *, scroll: str | None = None) -> bool:
    """Assert ``sel`` is visible, then save the screen in each of the state's languages. False
    (and the state is "not yet") when the page has no such element at all."""
    if page.locator(sel.split(":")[0]).count() == 0:
        NOT_YET.append(key)
        return False
    page.wait_for_selector(sel, state="visible")
    for lang in LANGS[key]:
        set_lang(page, lang)
        if scroll:
            page.locator(scroll).scroll_into_view_if_needed()
        if OUT:
            Path(OUT).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=f"{OUT}/{key}-{lang}.jpg", type="jpeg", quality=60)
    set_lang(page, "zh")
    TAKEN.append(key)
    return True


def test_a_party_through_every_state(tmp_path, launch, new_page):
    data, port = tmp_path / "data", free_port()
    add_staff(data)
    args = ("--no-demo", "--port", str(port))
    server = ServerProcess(data, *args).start_quiet(timeout=WAIT_S)
    try:
        med = new_page(launch(440))
        med.on("dialog", lambda d: d.accept())
        # two parties: an agreement needs an applicant and a respondent; the phone is the first's
        link, _ = open_case(med, server, case_number="(2026)京0105民调8号", title="借款纠纷")
        ctx = launch(1000).new_context(viewport=PHONE, locale="zh-CN")
        ctx.set_default_timeout(WAIT_MS)
        ctx.add_init_script(PC_TRACKER)
        party = ctx.new_page()
        party.on("dialog", lambda d: d.accept())

        party.goto(link)
        snap(party, "link", "#btn-confirm:not([disabled])")
        party.click("#btn-confirm")
        snap(party, "consents", "#screen-consent #btn-consent")
        for box in party.query_selector_all("#consent-list input"):
            box.check()
        party.click("#btn-consent:not([disabled])")
        snap(party, "device-check", "#btn-join:not([disabled])")
        party.click("#btn-join")
        snap(party, "waiting", "#waiting:not([hidden])")

        pid = party.evaluate("() => window.parley.me")
        row = f'#people li[data-participant="{pid}"]'
        med.click(f'{row} button[data-action="admit"]')
        med.click(f'{row} button[data-action="identity"]')
        party.wait_for_selector("#waiting", state="hidden")
        wait_stat(party, "video")
        snap(party, "call", ".tile:not([hidden]) video")

        # recording: the mediator agrees first, then the party is asked; REC once all agreed
        med.click("#btn-recording:not([hidden])")
        med.click("#rec-self:not([hidden]) button[data-action='rec-self-yes']")
        snap(party, "recording-asked", "#rec-ask[data-state='asked']:not([hidden])")
        party.click("#rec-ask button[data-action='rec-yes']")
        snap(party, "recording", "#rec:not([hidden])")
        # the REC mark does not push the language button off a 390 px screen
        assert party.evaluate(
            "() => { const r = document.getElementById('lang').getBoundingClientRect();"
            " return r.right <= innerWidth && r.width > 0"
            " && document.documentElement.scrollWidth <= innerWidth; }"
        )
        med.click("#btn-recording:not([hidden])")
        party.wait_for_selector("#rec", state="hidden")

        med.fill("#caucus-name", "a")
        med.click("#form-caucus button")
        med.click('#caucuses li[data-caucus="a"] button[data-action="move-side-A"]')
        snap(party, "private-room", "#caucus-timer:not([hidden])")
        med.click('#caucuses li[data-caucus="a"] button[data-action="close-caucus"]')
        party.wait_for_selector("#caucus-timer", state="hidden")

        # the mediator leaves (safety hold), comes back through the same page and re-admits
        med.click("#btn-leave")
        med.click("#leave-yes")
        snap(party, "held", "#waiting:not([hidden]) #waiting-text")
        med.click("#btn-rejoin")
        join(med, None, consents=False)
        med.click(f'{row} button[data-action="admit"]')
        party.wait_for_selector("#waiting", state="hidden")

        med.click(f'{row} button[data-action="mute"]')
        if snap(party, "muted", "#host-notice:not([hidden])", scroll="#host-notice"):
            med.click(f'{row} button[data-action="unmute"]')

        draft(med)
        party.wait_for_selector("#ag-draft li")
        med.click("#ag-freeze")
        snap(party, "sign-turn", "#ag-sign-now:not([hidden])", scroll="#ag-sign-now")
        party.click("#ag-sign-now")
        party.wait_for_selector("#ag-confirm:not([disabled])")
        party.click("#ag-confirm")
        snap(party, "signed", "#ag-receipt:not([hidden])", scroll="#ag-receipt")

        party.evaluate("() => window.scrollTo(0, 0)")
        server.stop(sig_kill=True)
        party.wait_for_selector(".tile.frozen:not([hidden])")
        snap(party, "reconnecting", "#reconnect-banner:not([hidden])")
        server = ServerProcess(data, *args).start_quiet(timeout=WAIT_S)
        party.wait_for_selector("#reconnect-banner", state="hidden")
        med.wait_for_function("() => window.parley.socket.connected")

        med.click("#btn-end")
        snap(party, "ended", "#screen-end:not([hidden])")
        ctx.close()
    finally:
        server.stop()
    assert TAKEN, "no state was on screen"
    if OUT:
        (Path(OUT) / "not-yet.txt").write_text("".join(k + "\n" for k in NOT_YET))
