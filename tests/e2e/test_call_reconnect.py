"""The call as a party and a mediator live it when the connection drops and comes back.

The mediator's fake microphone plays 440 Hz, the party's 1000 Hz. After any reconnect (the
socket.io transport drops, the server restarts) each page makes a new RTCPeerConnection: its
remote tile must show that connection's live tracks, and each must hear the other's tone again.
While the connection is down, a "Reconnecting…" banner is on screen (not hidden under the chat
or the bottom bar) and the frozen remote tile says so; both go away when the call is back.
"""

from __future__ import annotations

import socket

import pytest

from tests.e2e.conftest import DOMINANT_FREQ, TEST_TIMEOUT_S, WAIT_S, wait_stat
from tests.e2e.flows import PHONE, UNCOVERED, join
from tests.support.server_proc import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]

# "ok" when the element's box is inside the viewport and the element (or a descendant) is what
# a finger touching its centre would hit; otherwise what is wrong.

# The tracks the visible remote tile plays, and whether they are the last connection's.
TILE_TRACKS = """sel => { const v = document.querySelector(sel + ' video');
  const s = v && v.srcObject; if (!s) return null; const pc = window.__pcs.at(-1);
  const mine = new Set(pc.getReceivers().map(r => r.track.id));
  return s.getTracks().map(t => ({kind: t.kind, state: t.readyState, current: mine.has(t.id)})); }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tile(page, participant_id) -> str:
    sel = f'.tile[data-participant="{participant_id}"]:not([hidden])'
    page.wait_for_selector(sel)
    return sel


def hears(page, sel, hz) -> dict:
    """Measure the tile's dominant tone until it is ``hz`` (media takes a moment to resume after
    a reconnect); the last measurement. Each window is 1.5 s of audio, the deadline WAIT_S."""
    page.wait_for_function(
        """async ({sel, hz, fn}) => { const r = await (eval(fn))({selector: sel + ' video', ms: 1500});
           window.__heard = r; return Math.abs(r.freq - hz) < 15 && r.peak > 0.02; }""",
        arg={"sel": sel, "hz": hz, "fn": DOMINANT_FREQ},
        polling=100,
    )
    return page.evaluate("() => window.__heard")


def live_tile(page, sel) -> None:
    """The tile is bound to the current connection's receivers, and they are live."""
    page.wait_for_function(
        f"() => {{ const t = ({TILE_TRACKS})({sel!r}); return t && t.length === 2 && "
        "t.every(x => x.state === 'live' && x.current); }"
    )


def in_call(server, launch, new_page):
    mediator = new_page(launch(440))
    party = new_page(launch(1000))
    for page in (mediator, party):
        page.set_viewport_size(PHONE)
    join(mediator, server.links["mediator"][0], consents=False)
    join(party, server.links["party"][0])
    party_id = party.evaluate("() => window.parley.me")
    mediator_id = mediator.evaluate("() => window.parley.me")
    mediator.click(f'#people li[data-participant="{party_id}"] button[data-action="admit"]')
    party.wait_for_selector("#waiting", state="hidden")
    wait_stat(mediator, "video")
    wait_stat(party, "video")
    sel_m, sel_p = tile(mediator, party_id), tile(party, mediator_id)
    hears(mediator, sel_m, 1000)
    hears(party, sel_p, 440)
    return mediator, party, sel_m, sel_p


def back_in_call(mediator, party, sel_m, sel_p, pcs_before):
    for page, before in zip((mediator, party), pcs_before, strict=True):
        page.wait_for_function(f"() => window.__pcs.length > {before}")
        page.wait_for_function(
            "() => window.__pcs.at(-1).connectionState === 'connected' && "
            "window.parley.socket.connected"
        )
    live_tile(mediator, sel_m)
    live_tile(party, sel_p)
    assert abs(hears(mediator, sel_m, 1000)["freq"] - 1000) < 15
    assert abs(hears(party, sel_p, 440)["freq"] - 440) < 15


def pcs(*pages) -> list[int]:
    return [p.evaluate("() => window.__pcs.length") for p in pages]


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path / "data").start(timeout=WAIT_S)
    yield srv
    srv.stop()


# Known flaky inside the full suite (seen twice on 2026-11-30, waiting for the end page after
# Leave; passes alone): one rerun, and the flakiness is on record.
@pytest.mark.flaky(reruns=1)
def test_socket_drop_rebinds_tiles_and_both_hear_again(server, launch, new_page):
    mediator, party, sel_m, sel_p = in_call(server, launch, new_page)
    before = pcs(mediator, party)
    # The transport drops under both pages (as on a network switch); socket.io reconnects.
    for page in (mediator, party):
        page.evaluate("() => window.parley.socket.io.engine.transport.ws.close()")
    back_in_call(mediator, party, sel_m, sel_p, before)
    # Leaving closes the socket on purpose: the end page, not "Reconnecting…"
    party.click("#btn-leave")
    party.click("#leave-dialog[open] #leave-yes")  # leaving asks first
    party.wait_for_selector("#screen-end:not([hidden])")
    assert party.is_hidden("#reconnect-banner")


def test_ice_failure_new_offer_rebinds_the_tile(server, launch, new_page):
    """The "ICE failed → new offer" path: the page's own connection fails, the socket stays."""
    mediator, party, sel_m, sel_p = in_call(server, launch, new_page)
    before = pcs(party)[0]
    party.evaluate(
        "() => { const pc = window.__pcs.at(-1);"
        " Object.defineProperty(pc, 'connectionState', {get: () => 'failed'});"
        " pc.dispatchEvent(new Event('connectionstatechange')); }"
    )
    party.wait_for_function(f"() => window.__pcs.length > {before}")
    live_tile(party, sel_p)
    hears(party, sel_p, 440)
    hears(mediator, sel_m, 1000)


def test_server_restart_banner_frozen_tile_then_both_hear_again(tmp_path, launch, new_page):
    data, port = tmp_path / "data", free_port()
    server = ServerProcess(data, "--port", str(port)).start(timeout=WAIT_S)
    try:
        mediator, party, sel_m, sel_p = in_call(server, launch, new_page)
        before = pcs(mediator, party)
        assert party.is_hidden("#reconnect-banner")

        server.stop(sig_kill=True)
        for page, sel in ((party, sel_p), (mediator, sel_m)):
            page.wait_for_selector("#reconnect-banner:not([hidden])")
            assert page.evaluate(UNCOVERED, "#reconnect-banner") == "ok"
            page.wait_for_selector(f"{sel}.frozen")
            page.locator(sel).scroll_into_view_if_needed()  # where the user looks at the video
            assert page.evaluate(UNCOVERED, f"{sel} .tile-state") == "ok"
        for _ in range(2):  # in both languages
            lang = party.evaluate("() => i18n.lang")
            banner, frozen = {
                "zh": ("正在重新连接…", "画面已暂停"),
                "en": ("Reconnecting…", "Video paused"),
            }[lang]
            assert party.inner_text("#reconnect-banner") == banner
            assert frozen in party.inner_text(f"{sel_p} .tile-state")
            party.click("#lang")

        server = ServerProcess(data, "--port", str(port)).start(timeout=WAIT_S)
        back_in_call(mediator, party, sel_m, sel_p, before)
        for page, sel in ((party, sel_p), (mediator, sel_m)):
            page.wait_for_selector("#reconnect-banner", state="hidden")
            page.wait_for_selector(f"{sel}:not(.frozen)")
    finally:
        server.stop()
