"""The real phone page joins from a network that blocks all UDP, over TURN.

The party's Chromium runs inside a network namespace whose nftables firewall drops every UDP
datagram (tests/support/netns.py); the mediator's Chromium, Parley and coturn run outside it.
The page gets its ``iceServers`` (time-limited TURN credentials) from the welcome and passes
them to its RTCPeerConnection (web/static/call.js): the only path for its media is a TURN
allocation over TCP or TLS. The test checks the page's selected candidate pair is a relay, that
both pages decode the other's video, and that the firewall did drop UDP.
"""

from __future__ import annotations

import shutil

import pytest

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, TEST_TIMEOUT_S, WAIT_MS, WAIT_S, rising
from tests.e2e.flows import join
from tests.support.netns import UdpBlockedNetns, entered_or_skip
from tests.support.procs import Coturn, self_signed
from tests.support.server_proc import ServerProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(TEST_TIMEOUT_S),
    pytest.mark.skipif(
        not shutil.which("turnserver"),
        reason="turnserver missing: scripts/setup.sh --test installs coturn",
    ),
]
SECRET = "e2e-udp-blocked-turn-secret"

# The candidate types of the page's selected ICE pair (local, remote), from getStats().
SELECTED_PAIR = """async () => { const pc = window.__pcs.at(-1); const s = await pc.getStats();
  let pair = null; s.forEach(r => { if (r.type === 'transport' && r.selectedCandidatePairId)
    pair = s.get(r.selectedCandidatePairId); });
  if (!pair) return null;
  const l = s.get(pair.localCandidateId), r = s.get(pair.remoteCandidateId);
  return {local: l.candidateType, relayProtocol: l.relayProtocol || null, url: l.url || null,
          remote: r.candidateType}; }"""

# The page's own view: audio-only and why, its frozen share, its connection's state.
PAGE_STATE = """() => ({weak: window.parley.weak || null, frozen: window.parley.videoFrozen ?? null,
  audioOnly: window.parley.audioOnly, pcs: window.__pcs.length,
  state: window.__pcs.length ? window.__pcs.at(-1).connectionState : null})"""


@pytest.fixture
def netns():
    yield from entered_or_skip(UdpBlockedNetns)


@pytest.mark.parametrize("turn", ["tcp", "tls"])
def test_phone_behind_udp_blocking_firewall_joins_over_turn(pw, new_page, tmp_path, netns, turn):
    tls = self_signed(tmp_path, [netns.host_ip]) if turn == "tls" else None
    coturn = Coturn(
        tmp_path / "coturn", SECRET, listen=netns.host_ip, relay=netns.host_ip, tls=tls
    ).start()
    server = ServerProcess(
        tmp_path / "data",
        "--host",
        netns.host_ip,
        env={
            "PARLEY_ICE_HOST_ADDRESSES": netns.host_ip,
            "PARLEY_TURN_SECRET": SECRET,
            # only the transport under test, so the relay protocol seen is the one tested
            "PARLEY_TURN_URLS": coturn.url(turn),
        },
    )
    browsers = []
    try:
        server.start(timeout=WAIT_S)
        origin = server.links["mediator"][0].split("/j/")[0]
        # http://10.x is not a secure context by default: no camera without this flag
        args = [
            a + f", EXCLUDE {netns.host_ip}" if a.startswith("--host-resolver-rules") else a
            for a in CHROMIUM_ARGS
        ] + [f"--unsafely-treat-insecure-origin-as-secure={origin}"]
        if tls:
            args.append("--ignore-certificate-errors")  # the self-signed TURN certificate
        wrapper = tmp_path / "chromium-in-netns"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {netns.name} {CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)
        outside = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        browsers.append(outside)
        inside = pw.chromium.launch(executable_path=str(wrapper), headless=True, args=args)
        browsers.append(inside)
        mediator, party = new_page(outside), new_page(inside)

        join(mediator, server.links["mediator"][0], consents=False)
        join(party, server.links["party"][0])
        party.wait_for_selector("#waiting:not([hidden])")
        party_id = party.evaluate("() => window.parley.me")
        mediator.click(f'#people li[data-participant="{party_id}"] button[data-action="admit"]')
        party.wait_for_selector("#waiting", state="hidden")
        party.wait_for_function(
            "() => window.__pcs.length && window.__pcs.at(-1).connectionState === 'connected'",
            timeout=WAIT_MS,
        )
        try:
            for page in (mediator, party):
                rising(page, "video", by=10)
        finally:  # what each page saw, when video did not come (or did)
            for who, page in (("mediator", mediator), ("party", party)):
                print("UDP_BLOCKED", who, page.evaluate(PAGE_STATE))
        pair = party.evaluate(SELECTED_PAIR)
        assert pair["local"] == "relay", pair
        assert pair["relayProtocol"] == ("tls" if tls else "tcp"), pair
        assert netns.udp_dropped() > 0
        assert f":{party_id}" in coturn.output()
    finally:
        for b in browsers:
            b.close()
        server.stop()
        coturn.stop()
