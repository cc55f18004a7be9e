"""Two phones see and hear each other through Parley (headless Chromium, fake devices).

The mediator's fake microphone plays 440 Hz, the party's 1000 Hz: each page must hear the
*other* participant's tone in its remote tile, proving the server routes media (the party in the
waiting room receives nothing until the mediator admits it).
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import (
    DOMINANT_FREQ,
    TEST_TIMEOUT_S,
    WAIT_S,
    received_while,
    rising,
    stat,
    wait_stat,
)
from tests.e2e.flows import join
from tests.support.server_proc import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path / "data").start(timeout=WAIT_S)
    yield srv
    srv.stop()


def remote_tile_of(page, participant_id):
    sel = f'.tile[data-participant="{participant_id}"]:not([hidden])'
    page.wait_for_selector(sel)
    return sel


def test_mediator_admits_party_and_both_see_and_hear_each_other(server, launch, new_page):
    mediator_link = server.links["mediator"][0]
    party_link = server.links["party"][0]
    mediator = new_page(launch(440))
    party = new_page(launch(1000))

    join(mediator, mediator_link, consents=False)
    join(party, party_link)
    party.wait_for_selector("#waiting:not([hidden])")
    party_id = party.evaluate("() => window.parley.me")
    mediator_id = mediator.evaluate("() => window.parley.me")

    # The party waits: its connection is up but the server forwards nothing to it yet, while
    # both cameras send (the window is 30 frames of each side's camera, not a time).
    party.wait_for_function(
        "() => window.__pcs.length && window.__pcs.at(-1).connectionState === 'connected'"
    )
    assert received_while(party, mediator) == 0 and stat(party, "video") == 0
    assert received_while(mediator, party) == 0 and stat(mediator, "video") == 0

    # The mediator admits the party from the participant list.
    mediator.click(f'#people li[data-participant="{party_id}"] button[data-action="admit"]')
    party.wait_for_selector("#waiting", state="hidden")

    wait_stat(mediator, "video")
    wait_stat(party, "video")
    sel_m = remote_tile_of(mediator, party_id)
    sel_p = remote_tile_of(party, mediator_id)
    assert "张三" in mediator.inner_text(sel_m + " figcaption")

    # Both keep receiving: more video frames decoded and audio packets, each way.
    for page in (mediator, party):
        rising(page, "video", by=10)
        rising(page, "audio", by=50)

    heard_by_mediator = mediator.evaluate(DOMINANT_FREQ, {"selector": sel_m + " video", "ms": 1500})
    heard_by_party = party.evaluate(DOMINANT_FREQ, {"selector": sel_p + " video", "ms": 1500})
    assert abs(heard_by_mediator["freq"] - 1000) < 15 and heard_by_mediator["peak"] > 0.02, (
        heard_by_mediator
    )
    assert abs(heard_by_party["freq"] - 440) < 15 and heard_by_party["peak"] > 0.02, heard_by_party

    # Back to the waiting room: forwarding to and from the party stops.
    mediator.click(f'#people li[data-participant="{party_id}"] button[data-action="to-waiting"]')
    party.wait_for_selector("#waiting:not([hidden])")
    received_while(party, mediator, frames=10)  # what was already on the way arrives
    assert received_while(party, mediator) <= 2


def test_bad_link_shows_a_clear_page(server, launch, new_page):
    page = new_page(launch())
    resp = page.goto(server.url + "/j/not-a-token")
    assert resp.status == 403
    assert page.get_attribute("main", "data-error") == "token_invalid"
    assert "not valid" in page.inner_text("main")
