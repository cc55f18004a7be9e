"""The call's state is always on screen (390×844): "Connecting…" at the top until the call is
up, and in a private room, whom the person is in it with."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TEST_TIMEOUT_S, WAIT_S
from tests.e2e.flows import join
from tests.support.server_proc import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]
PHONE = {"width": 390, "height": 844}

UNCOVERED = """sel => { const el = document.querySelector(sel); if (!el) return 'missing';
  const r = el.getBoundingClientRect(); if (r.width < 1 || r.height < 1) return 'not rendered';
  if (r.left < 0 || r.top < 0 || r.right > innerWidth || r.bottom > innerHeight)
    return `outside the viewport: ${JSON.stringify(r)}`;
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return el.contains(hit) ? 'ok' : 'covered by ' + (hit ? hit.outerHTML.slice(0, 80) : 'nothing'); }"""

# Hold the page's offer until the test releases it: the call stays "connecting" meanwhile.
HOLD_OFFER = """() => { const socket = window.parley.socket; const original = socket.emitWithAck;
  let release; window.__offerHeld = new Promise(r => { release = r; }); window.__release = release;
  socket.emitWithAck = async function (event, ...args) {
    if (event === 'offer') { window.__offerSeen = true; await window.__offerHeld; }
    return original.call(this, event, ...args); }; }"""


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path / "data").start(timeout=WAIT_S)
    yield srv
    srv.stop()


def test_connecting_is_on_screen_until_the_call_is_up(server, launch, new_page):
    page = new_page(launch())
    page.set_viewport_size(PHONE)
    page.goto(server.links["mediator"][0])
    page.wait_for_function("() => window.parley && window.parley.socket.connected")
    page.evaluate(HOLD_OFFER)
    join(page, None, consents=False)
    page.wait_for_function("() => window.__offerSeen")
    page.wait_for_selector("#reconnect-banner:not([hidden])")
    assert page.evaluate(UNCOVERED, "#reconnect-banner") == "ok"
    text = {"zh": "正在连接…", "en": "Connecting…"}[page.evaluate("() => i18n.lang")]
    assert page.inner_text("#reconnect-banner") == text
    page.evaluate("() => window.__release()")
    page.wait_for_selector("#reconnect-banner", state="hidden")


def test_in_a_private_room_the_line_says_with_whom(server, launch, new_page):
    browser = launch()
    med, party = new_page(browser), new_page(browser)
    for page in (med, party):
        page.set_viewport_size(PHONE)
    join(med, server.links["mediator"][0], consents=False)
    join(party, server.links["party"][0])
    pid = party.evaluate("() => window.parley.me")
    side = party.evaluate("() => window.parley.view.you.side")
    med_name = med.evaluate("() => window.parley.view.you.name")
    party_name = party.evaluate("() => window.parley.view.you.name")
    med.click(f'#people li[data-participant="{pid}"] button[data-action="admit"]')
    party.wait_for_selector("#waiting", state="hidden")

    med.fill("#caucus-name", "a")
    med.click("#form-caucus button")
    med.click(f'#caucuses li[data-caucus="a"] button[data-action="move-side-{side}"]')
    only = {"zh": "只有您一人", "en": "only you"}[party.evaluate("() => i18n.lang")]
    party.wait_for_function(
        "t => document.getElementById('space-label').textContent.includes(t)", arg=only
    )
    assert party.evaluate(UNCOVERED, "#space-label") == "ok"

    med.click('#caucuses li[data-caucus="a"] button[data-action="visit"]')
    party.wait_for_function(
        "n => document.getElementById('space-label').textContent.includes(n)", arg=med_name
    )
    assert party.evaluate(UNCOVERED, "#space-label") == "ok"
    med.wait_for_function(
        "n => document.getElementById('space-label').textContent.includes(n)", arg=party_name
    )
    party.click("#lang")  # the other language
    lang = party.evaluate("() => i18n.lang")
    label = party.inner_text("#space-label")
    assert ("单独会谈室 a" if lang == "zh" else "Private room a") in label, label
    assert ("在场：" if lang == "zh" else "with ") + med_name in label, label
