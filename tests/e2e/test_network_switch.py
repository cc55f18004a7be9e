"""A phone moves from Wi-Fi to 4G mid-call: its address changes, the call goes on.

The party's Chromium runs in a network namespace (tests/support/netpath.py) whose only address
is replaced by one on another subnet (new gateway, the old address gone at once), as when a
phone leaves the Wi-Fi. The page must notice (web/static/call.js: the browser's network type
changes, ICE "disconnected" for 1 s, or media stops for 0.5 s and the socket does not answer
within 1 s) and make a fresh connection (new socket, new offer): the offer is sent within 2 s
of the change (trickle ICE: its candidates follow it; asserted with a looser bound on a loaded
machine, the figure printed), and both pages hear each other's tone again within 5 s (same).
Figures: docs/benchmarks.md, "Real networks".
"""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.conftest import TEST_TIMEOUT_S
from tests.e2e.netpages import call_over, heard_at, page_now
from tests.support.netns import entered_or_skip
from tests.support.netpath import PhoneNetns

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]

# What the party's page saw, in performance.now() ms: ICE and connection states of every
# RTCPeerConnection, the socket's disconnects and connects.
TIMELINE = """(() => { window.__net = []; const log = (what) => window.__net.push([performance.now(), what]);
  const Orig = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Orig { constructor(...a) { super(...a); log('pc new');
    this.addEventListener('iceconnectionstatechange', () => log('ice ' + this.iceConnectionState));
    this.addEventListener('connectionstatechange', () => log('pc ' + this.connectionState)); } };
  if (navigator.connection) navigator.connection.addEventListener('change', () => log('navigator.connection change'));
  addEventListener('offline', () => log('offline')); addEventListener('online', () => log('online'));
})();"""

# The page's socket into the same timeline once joined: the liveness probe ("emit media"), the
# reconnect (disconnect, connect, welcome) and the new offer ("emit offer"): where the time goes.
SOCKET_TIMELINE = """() => { const s = window.parley.socket;
  const log = (what) => window.__net.push([performance.now(), what]);
  s.on('connect', () => log('socket connect')); s.on('disconnect', (r) => log('socket disconnect ' + r));
  s.on('welcome', () => log('socket welcome'));
  const emit = s.emit;
  s.emit = function (ev, ...a) { if (['offer', 'media', 'candidate'].includes(ev)) log('emit ' + ev);
    return emit.call(this, ev, ...a); }; }"""


@pytest.fixture
def netns():
    yield from entered_or_skip(PhoneNetns)


def test_wifi_to_4g_new_address_recovers_and_both_hear_again(pw, new_page, tmp_path, netns):
    with call_over(netns, pw, new_page, tmp_path, party_init=TIMELINE) as (
        _server,
        mediator,
        party,
        sel_m,
        sel_p,
    ):
        party.evaluate(SOCKET_TIMELINE)
        pcs_before = party.evaluate("() => window.__pcs.length")
        t0_party, t0_med = page_now(party), page_now(mediator)
        wall0 = time.monotonic()
        netns.switch_address()
        switch_s = time.monotonic() - wall0  # the ip commands themselves
        party.wait_for_function(
            f"() => window.__pcs.length > {pcs_before} && "
            "window.__pcs.at(-1).connectionState === 'connected'"
        )
        new_pc = party.evaluate(f"() => window.__pcTimes[{pcs_before}]")
        connected = page_now(party)
        heard_party = heard_at(party, sel_p, 440)
        heard_med = heard_at(mediator, sel_m, 1000)
        assert heard_party is not None and heard_med is not None
        timeline = party.evaluate("() => window.__net")
        sent = next((t for t, what in timeline if t >= t0_party and what == "emit offer"), None)
        figures = {
            "switch_commands_s": round(switch_s, 2),
            "new_offer_s": round((new_pc - t0_party) / 1000, 2),
            "offer_sent_s": None if sent is None else round((sent - t0_party) / 1000, 2),
            "connected_by_s": round((connected - t0_party) / 1000, 2),
            "party_hears_s": round((heard_party - t0_party) / 1000, 2),
            "mediator_hears_s": round((heard_med - t0_med) / 1000, 2),
            "timeline": [
                [round((t - t0_party) / 1000, 2), what] for t, what in timeline if t >= t0_party
            ],
        }
        print("NETWORK_SWITCH", json.dumps(figures))
        # Targets: a new offer sent within 2 s (trickle ICE: it leaves without waiting for the
        # browser to gather), tones back within 5 s. Asserted looser (a busy two-core CI
        # machine); the measured figures are in docs/benchmarks.md.
        assert figures["offer_sent_s"] is not None and figures["offer_sent_s"] < 4, figures
        assert figures["party_hears_s"] < 10 and figures["mediator_hears_s"] < 10, figures
