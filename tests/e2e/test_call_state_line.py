"""The call's state is always on screen (390×844): "Connecting…" at the top until the call is
up, and in a private room, whom the person is in it with; each space has one name on every page."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TEST_TIMEOUT_S, WAIT_S
from tests.e2e.flows import DESKTOP, PHONE, UNCOVERED, join
from tests.support.server_proc import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]


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


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["390x844", "1366x800"])
def test_connecting_is_on_screen_until_the_call_is_up(server, launch, new_page, size):
    """The banner (the same one that says "Reconnecting…") is in the viewport and uncovered on
    a phone and on the mediator's desktop."""
    page = new_page(launch())
    page.set_viewport_size(size)
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
    # the room has the name the mediator's page and the console give it, never "a"
    assert ("申请方单独会谈室" if lang == "zh" else "Applicant's private room") in label, label
    assert ("在场：" if lang == "zh" else "with ") + med_name in label, label
    med_room = med.inner_text('#caucuses li[data-caucus="a"]')
    assert med.evaluate("() => i18n.t('host_room_a')") in med_room, med_room


def test_each_space_has_one_name_on_every_page(server, launch, new_page):
    """The party's page, the mediator's page and the console name the joint session, the
    waiting room and the applicant's / respondent's private rooms alike, in both languages."""
    from signaling.console import ROOM_LABELS, SPACE_LABELS

    page = new_page(launch())
    page.goto(server.links["party"][0])
    page.wait_for_function("() => window.i18n && window.parley")
    for lang in ("zh", "en"):
        page.evaluate("l => { if (i18n.lang !== l) i18n.toggle(); }", lang)
        names = page.evaluate(
            """() => ({party: [i18n.space('joint'), i18n.space('waiting'), i18n.space('caucus:a'),
                        i18n.space('caucus:b')],
                       host: [i18n.t('host_joint'), i18n.t('host_waiting'), i18n.t('host_room_a'),
                        i18n.t('host_room_b')]})"""
        )
        assert names["party"] == names["host"], (lang, names)
        console = [
            SPACE_LABELS["joint"],
            SPACE_LABELS["waiting"],
            ROOM_LABELS["a"],
            ROOM_LABELS["b"],
        ]
        for name, label in zip(names["party"], console, strict=True):
            assert name in label, (lang, name, label)  # the console prints "中文 English"


def test_the_mediator_leaving_is_said_in_the_waiting_room(server, launch, new_page):
    """The safety hold moves the party to the waiting room; the page says why (not "please
    wait to be let in"), and says the usual sentence again once re-admitted and waiting anew."""
    browser = launch()
    med, party = new_page(browser), new_page(browser)
    party.set_viewport_size(PHONE)
    join(med, server.links["mediator"][0], consents=False)
    join(party, server.links["party"][0])
    pid = party.evaluate("() => window.parley.me")
    med.click(f'#people li[data-participant="{pid}"] button[data-action="admit"]')
    party.wait_for_selector("#waiting", state="hidden")
    med.click("#btn-leave")
    med.click("#leave-yes")
    party.wait_for_selector("#waiting:not([hidden])")
    said = {
        "zh": "调解员暂时离开了会谈",
        "en": "The mediator has stepped out",
    }[party.evaluate("() => i18n.lang")]
    party.wait_for_function(
        "t => document.getElementById('waiting-text').textContent.includes(t)", arg=said
    )
    assert party.evaluate(UNCOVERED, "#waiting-text") == "ok"


def test_a_refused_code_request_is_a_sentence_not_a_code(server, launch, new_page):
    """The mediator's "send code" answered with an error shows the plain sentence for its code
    (this demo server has no mail set up), never "出错了：" and the server's English text."""
    browser = launch()
    med, party = new_page(browser), new_page(browser)
    join(med, server.links["mediator"][0], consents=False)
    join(party, server.links["party"][0])
    pid = party.evaluate("() => window.parley.me")
    med.on("dialog", lambda dialog: dialog.accept("party@example.org"))
    med.click(f'#people li[data-participant="{pid}"] button[data-action="send-code"]')
    med.wait_for_function("() => document.getElementById('call-status').textContent !== ''")
    shown = med.inner_text("#call-status")
    assert shown == med.evaluate("() => i18n.error('unavailable')"), shown
    assert "出错了" not in shown and "configured" not in shown and "_" not in shown
