"""Two phones see and hear each other through Parley (headless Chromium, fake devices).

The mediator's fake microphone plays 440 Hz, the party's 1000 Hz: each page must hear the
*other* participant's tone in its remote tile, proving the server routes media (the party in the
waiting room receives nothing until the mediator admits it).
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import DOMINANT_FREQ, INBOUND, WAIT_FRAMES
from tests.e2e.flows import join
from tests.support.server_proc import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path / "data").start()
    yield srv
    srv.stop()


def remote_tile_of(page, participant_id, timeout=15000):
    sel = f'.tile[data-participant="{participant_id}"]:not([hidden])'
    page.wait_for_selector(sel, timeout=timeout)
    return sel


def test_mediator_admits_party_and_both_see_and_hear_each_other(server, launch, new_page):
    mediator_link = server.links["mediator"][0]
    party_link = server.links["party"][0]
    mediator = new_page(launch(440))
    party = new_page(launch(1000))

    join(mediator, mediator_link, consents=False)
    join(party, party_link)
    party.wait_for_selector("#waiting:not([hidden])", timeout=15000)
    party_id = party.evaluate("() => window.parley.me")
    mediator_id = mediator.evaluate("() => window.parley.me")

    # The party waits: its connection is up but the server forwards nothing to it yet.
    party.wait_for_function(
        "() => window.__pcs.length && window.__pcs.at(-1).connectionState === 'connected'",
        timeout=15000,
    )
    mediator.wait_for_timeout(1000)
    assert party.evaluate(INBOUND)["video"].get("framesDecoded", 0) == 0
    assert mediator.evaluate(INBOUND)["video"].get("framesDecoded", 0) == 0

    # The mediator admits the party from the participant list.
    mediator.click(f'#people li[data-participant="{party_id}"] button[data-action="admit"]')
    party.wait_for_selector("#waiting", state="hidden", timeout=10000)

    assert mediator.evaluate(WAIT_FRAMES, 15000) >= 0
    assert party.evaluate(WAIT_FRAMES, 15000) >= 0
    sel_m = remote_tile_of(mediator, party_id)
    sel_p = remote_tile_of(party, mediator_id)
    assert "张三" in mediator.inner_text(sel_m + " figcaption")

    before_m, before_p = mediator.evaluate(INBOUND), party.evaluate(INBOUND)
    mediator.wait_for_timeout(3000)
    after_m, after_p = mediator.evaluate(INBOUND), party.evaluate(INBOUND)
    assert after_m["video"]["framesDecoded"] > before_m["video"]["framesDecoded"] + 10
    assert after_p["video"]["framesDecoded"] > before_p["video"]["framesDecoded"] + 10
    assert after_m["audio"]["packetsReceived"] > before_m["audio"].get("packetsReceived", 0) + 50
    assert after_p["audio"]["packetsReceived"] > before_p["audio"].get("packetsReceived", 0) + 50

    heard_by_mediator = mediator.evaluate(DOMINANT_FREQ, {"selector": sel_m + " video", "ms": 1500})
    heard_by_party = party.evaluate(DOMINANT_FREQ, {"selector": sel_p + " video", "ms": 1500})
    assert abs(heard_by_mediator["freq"] - 1000) < 15 and heard_by_mediator["peak"] > 0.02, (
        heard_by_mediator
    )
    assert abs(heard_by_party["freq"] - 440) < 15 and heard_by_party["peak"] > 0.02, heard_by_party

    # Back to the waiting room: forwarding to and from the party stops.
    mediator.click(f'#people li[data-participant="{party_id}"] button[data-action="to-waiting"]')
    party.wait_for_selector("#waiting:not([hidden])", timeout=10000)
    party.wait_for_timeout(800)
    frozen = party.evaluate(INBOUND)["video"]["framesDecoded"]
    party.wait_for_timeout(1500)
    assert party.evaluate(INBOUND)["video"]["framesDecoded"] - frozen <= 2


def test_bad_link_shows_a_clear_page(server, launch, new_page):
    page = new_page(launch())
    resp = page.goto(server.url + "/j/not-a-token")
    assert resp.status == 403
    assert page.get_attribute("main", "data-error") == "token_invalid"
    assert "not valid" in page.inner_text("main")
