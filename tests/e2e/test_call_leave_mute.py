"""The call as a party lives it on a phone (360×780 and 390×844) and a mediator on a desktop
(1366×800), in zh and en.

Leaving asks first and can be undone: the party comes back through the same link into the
waiting room and the mediator admits them again (they hear each other again). When the mediator
mutes a party, the party's page says so and its microphone button follows; every tile shows a
name card with mute and camera-off icons, an avatar card while the camera is off, and who is
speaking. No screen of the flow scrolls sideways at 360 px.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TEST_TIMEOUT_S, WAIT_S, wait_stat
from tests.e2e.flows import DESKTOP, PHONE, UNCOVERED, join, set_lang
from tests.e2e.test_call_reconnect import hears, tile
from tests.support.server_proc import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]
NARROW = {"width": 360, "height": 780}

OVERFLOW = """() => { const d = document.documentElement;
  return d.scrollWidth <= d.clientWidth ? 'ok' : `scrollWidth ${d.scrollWidth} > ${d.clientWidth}`; }"""


def no_overflow(page, where: str) -> None:
    assert page.evaluate(OVERFLOW) == "ok", where


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path / "data").start(timeout=WAIT_S)
    yield srv
    srv.stop()


def admit(mediator, party_id) -> None:
    mediator.click(f'#people li[data-participant="{party_id}"] button[data-action="admit"]')


def test_leave_asks_first_and_the_party_comes_back_through_the_link(server, launch, new_page):
    mediator, party = new_page(launch(440)), new_page(launch(1000))
    mediator.set_viewport_size(DESKTOP)
    party.set_viewport_size(NARROW)
    join(mediator, server.links["mediator"][0], consents=False)
    party.goto(server.links["party"][0])
    party.wait_for_selector("#btn-confirm:not([disabled])")
    no_overflow(party, "intro")
    party.click("#btn-confirm")
    party.wait_for_selector("#screen-consent:not([hidden])")
    no_overflow(party, "consent")
    for box in party.query_selector_all("#consent-list input"):
        box.check()
    party.click("#btn-consent:not([disabled])")
    party.wait_for_selector("#btn-join:not([disabled])")
    no_overflow(party, "device check")
    party.click("#btn-join")
    party.wait_for_selector("#waiting:not([hidden])")
    no_overflow(party, "waiting room")
    assert party.evaluate(UNCOVERED, "#self-tile") == "ok"  # I see myself while I wait

    party_id = party.evaluate("() => window.parley.me")
    mediator_id = mediator.evaluate("() => window.parley.me")
    admit(mediator, party_id)
    party.wait_for_selector("#waiting", state="hidden")
    sel_p = tile(party, mediator_id)
    hears(party, sel_p, 440)
    no_overflow(party, "in the call")

    # Leave asks first, in the page's language; "Stay" keeps the call
    for lang, title, stay in (
        ("zh", "确定离开调解吗？", "留下"),
        ("en", "Leave the mediation?", "Stay"),
    ):
        set_lang(party, lang)
        party.click("#btn-leave")
        party.wait_for_selector("#leave-dialog[open]")
        assert party.inner_text("#leave-title") == title
        assert party.inner_text("#leave-no") == stay
        assert "link" in party.inner_text("#leave-text") or "链接" in party.inner_text(
            "#leave-text"
        )
        for sel in ("#leave-yes", "#leave-no"):
            assert party.evaluate(UNCOVERED, sel) == "ok", sel
        no_overflow(party, "leave dialog")
        party.click("#leave-no")
        party.wait_for_selector("#leave-dialog:not([open])", state="attached")
    assert party.is_visible("#screen-call") and party.evaluate(
        "() => window.parley.socket.connected"
    )

    party.click("#btn-leave")
    party.click("#leave-yes")
    party.wait_for_selector("#screen-end:not([hidden]) #btn-rejoin:not([hidden])")
    assert party.evaluate(UNCOVERED, "#btn-rejoin") == "ok"
    assert party.inner_text("#btn-rejoin") == "Join again"
    no_overflow(party, "end page")
    mediator.wait_for_selector(f'#people li[data-participant="{party_id}"]')

    # back through the same link: the waiting room, until the mediator admits them again
    party.click("#btn-rejoin")
    join(party, None, consents=False)
    party.wait_for_selector("#waiting:not([hidden])")
    admit(mediator, party_id)
    party.wait_for_selector("#waiting", state="hidden")
    hears(party, tile(party, mediator_id), 440)
    hears(mediator, tile(mediator, party_id), 1000)


def test_mute_and_camera_off_are_visible_on_every_tile(server, launch, new_page):
    mediator, party = new_page(launch(440)), new_page(launch(1000))
    mediator.set_viewport_size(DESKTOP)
    party.set_viewport_size(PHONE)
    join(mediator, server.links["mediator"][0], consents=False)
    join(party, server.links["party"][0])
    party_id = party.evaluate("() => window.parley.me")
    mediator_id = mediator.evaluate("() => window.parley.me")
    party_name = party.evaluate("() => window.parley.view.you.name")
    admit(mediator, party_id)
    wait_stat(mediator, "video")
    sel_m, sel_p = tile(mediator, party_id), tile(party, mediator_id)

    # name cards: name and role on every tile, mine says it is me
    assert party_name in mediator.inner_text(f"{sel_m} .tile-name")
    set_lang(party, "en")
    party.wait_for_function(
        "() => document.querySelector('#self-tile .tile-name').textContent.includes('(you)')"
    )
    assert "Mediator" in party.inner_text(f"{sel_p} .tile-name")
    # my own network, and the self-view never over the controls (phone and desktop)
    words = {
        "zh": ("网络良好", "网络一般", "网络较差"),
        "en": ("Network good", "Network fair", "Network poor"),
    }
    for page in (party, mediator):
        page.wait_for_selector("#net-quality[data-quality]:not([hidden])")
        lang = page.evaluate("() => i18n.lang")
        assert page.inner_text("#net-quality") in words[lang]
        for sel in ("#btn-mic", "#btn-cam", "#btn-leave", "#net-quality"):
            assert page.evaluate(UNCOVERED, sel) == "ok", sel
    # the party's tone makes its tile the speaker on the mediator's screen
    mediator.wait_for_selector(f"{sel_m}.speaking")

    mediator.click(f'#people li[data-participant="{party_id}"] button[data-action="mute"]')
    for lang, notice, button in (
        ("en", "The mediator muted you", "Muted"),
        ("zh", "调解员已将您静音", "已被静音"),
    ):
        set_lang(party, lang)
        party.wait_for_selector("#host-notice:not([hidden])")
        assert notice in party.inner_text("#host-notice")
        assert party.evaluate(UNCOVERED, "#host-notice") == "ok"
        assert party.inner_text("#btn-mic") == button and party.is_disabled("#btn-mic")
    party.wait_for_selector("#self-tile .tile-icon.muted")
    mediator.wait_for_selector(f"{sel_m} .tile-icon.muted")
    mediator.locator(f"{sel_m}").scroll_into_view_if_needed()
    assert mediator.evaluate(UNCOVERED, f"{sel_m} .tile-icon.muted") == "ok"
    mediator.wait_for_selector(f"{sel_m}:not(.speaking)")  # its audio goes nowhere now

    mediator.click(f'#people li[data-participant="{party_id}"] button[data-action="unmute"]')
    party.wait_for_function(
        "() => document.getElementById('host-notice').textContent.includes('取消静音')"
    )
    mediator.wait_for_selector(f"{sel_m} .tile-icon.muted", state="detached")
    assert party.inner_text("#btn-mic") == "取消静音" and party.is_enabled("#btn-mic")
    party.click("#btn-mic")
    mediator.wait_for_selector(f"{sel_m}.speaking")

    # camera off: the mediator sees the party's card (initial and name), not a black tile
    party.click("#btn-cam")
    party.wait_for_selector("#self-tile.camera-off .tile-icon.camera_off")
    mediator.wait_for_selector(f"{sel_m}.camera-off .tile-icon.camera_off")
    assert mediator.evaluate(UNCOVERED, f"{sel_m} .avatar-initial") == "ok"
    assert mediator.inner_text(f"{sel_m} .avatar-initial") == party_name[0]
    party.click("#btn-cam")
    mediator.wait_for_selector(f"{sel_m}:not(.camera-off)")
