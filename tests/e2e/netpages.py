"""A mediator's Chromium outside and a party's Chromium inside a phone namespace
(tests/support/netpath.py), both joined and hearing each other: shared by the network tests.

The mediator's fake microphone plays 440 Hz, the party's 1000 Hz. ``call_over(ns, ...)`` starts
Parley on the namespace's root-side address (ICE host candidate there too), joins both pages,
admits the party and returns once each page decodes video and hears the other's tone.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, DOMINANT_FREQ, WAIT_S, rising, tone_wav
from tests.e2e.flows import join
from tests.support.server_proc import ServerProcess

# Each new RTCPeerConnection's creation time (performance.now()), next to window.__pcs.
PC_TIMES = """(() => { const Orig = window.RTCPeerConnection; window.__pcTimes = [];
  window.RTCPeerConnection = class extends Orig {
    constructor(...a) { super(...a); window.__pcTimes.push(performance.now()); } }; })();"""

# Until the tile's dominant tone is ``hz`` (windows of ``ms``): performance.now() at the end of
# the first window that hears it, or null after ``timeoutMs``. DOMINANT_FREQ is written into
# the source, not eval'd in the page: the page's CSP (script-src 'self') refuses eval.
HEARD_AT = (
    """async ({sel, hz, ms, timeoutMs}) => { const t0 = performance.now(); const fn = """
    + DOMINANT_FREQ
    + """;
  while (performance.now() - t0 < timeoutMs) {
    const r = await fn({selector: sel + ' video', ms});
    if (Math.abs(r.freq - hz) < 15 && r.peak > 0.02) return performance.now(); }
  return null; }"""
)


def tile(page, participant_id) -> str:
    sel = f'.tile[data-participant="{participant_id}"]:not([hidden])'
    page.wait_for_selector(sel)
    return sel


def heard_at(page, sel, hz, *, ms=400, timeout_s=WAIT_S) -> float | None:
    """performance.now() (ms) when the page first hears ``hz`` on that tile."""
    return page.evaluate(
        HEARD_AT,
        {"sel": sel, "hz": hz, "ms": ms, "timeoutMs": timeout_s * 1000},
    )


def page_now(page) -> float:
    return page.evaluate("() => performance.now()")


@contextmanager
def call_over(ns, pw, new_page, tmp_path, *, extra_env=None, party_init=None, second_party=False):
    """Yields (server, mediator, party, sel_on_mediator, sel_on_party). ``second_party``: the
    other side's party joins too, outside the namespace (700 Hz), as ``mediator.second``; the
    party in the namespace then receives two pictures."""
    server = ServerProcess(
        tmp_path / "data",
        "--host",
        ns.host_ip,
        env={"PARLEY_ICE_HOST_ADDRESSES": ns.host_ip, **(extra_env or {})},
    )
    browsers = []
    try:
        server.start(timeout=WAIT_S)
        origin = server.links["mediator"][0].split("/j/")[0]
        args = [
            a + f", EXCLUDE {ns.host_ip}" if a.startswith("--host-resolver-rules") else a
            for a in CHROMIUM_ARGS
        ] + [f"--unsafely-treat-insecure-origin-as-secure={origin}"]
        wrapper = tmp_path / "chromium-in-netns"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns.name} {CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)

        def launch(executable, hz):
            wav = tone_wav(tmp_path / f"{hz}.wav", hz)
            b = pw.chromium.launch(
                executable_path=executable,
                headless=True,
                args=args + [f"--use-file-for-fake-audio-capture={wav}"],
            )
            browsers.append(b)
            return b

        mediator = new_page(launch(CHROMIUM, 440))
        party = new_page(launch(str(wrapper), 1000))
        party.context.add_init_script(PC_TIMES)
        if party_init:
            party.context.add_init_script(party_init)
        join(mediator, server.links["mediator"][0], consents=False)
        join(party, server.links["party"][0])
        party.wait_for_selector("#waiting:not([hidden])")
        party_id = party.evaluate("() => window.parley.me")
        mediator_id = mediator.evaluate("() => window.parley.me")
        mediator.click(f'#people li[data-participant="{party_id}"] button[data-action="admit"]')
        party.wait_for_selector("#waiting", state="hidden")
        if second_party:
            other = new_page(launch(CHROMIUM, 700))
            join(other, server.links["party"][1])
            other.wait_for_selector("#waiting:not([hidden])")
            other_id = other.evaluate("() => window.parley.me")
            mediator.click(f'#people li[data-participant="{other_id}"] button[data-action="admit"]')
            other.wait_for_selector("#waiting", state="hidden")
            mediator.second = other
        for page in (mediator, party):
            rising(page, "video", by=10)
        sel_m, sel_p = tile(mediator, party_id), tile(party, mediator_id)
        assert heard_at(mediator, sel_m, 1000) is not None
        assert heard_at(party, sel_p, 440) is not None
        yield server, mediator, party, sel_m, sel_p
    finally:
        for b in browsers:
            b.close()
        server.stop()


def elapsed_since(page, t0_page_ms: float, t_page_ms: float | None) -> float | None:
    return None if t_page_ms is None else (t_page_ms - t0_page_ms) / 1000


def wall() -> float:
    return time.monotonic()
