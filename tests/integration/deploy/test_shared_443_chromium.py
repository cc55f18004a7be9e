"""Chromium itself through the shared port (docs/operations.md, "One port 443"): it loads the
verification page over HTTPS from the front (its ALPN routes it to the HTTPS block; the page's
scripts pass their Subresource Integrity check), and its own TURN/TLS client allocates a relay
through the same port, with the TURN host name as SNI and with an address (no SNI). Headless
Chromium (Debian's build, driven by Playwright); the same processes as test_shared_443.py."""

from __future__ import annotations

import shutil
import time

import pytest

from signaling.turn import TurnCredentials
from tests.integration.deploy.test_shared_443 import SECRET, TURN_NAME, stack  # noqa: F401

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WAIT_S = 120
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="chromium is not installed"),
]
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    # self-signed test certificates, for the page and for TURN/TLS alike
    "--ignore-certificate-errors",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
RELAY = """async ({url, username, credential}) => {
  const pc = new RTCPeerConnection(
    {iceServers: [{urls: url, username, credential}], iceTransportPolicy: 'relay'});
  pc.createDataChannel('probe');
  const found = new Promise(resolve => {
    pc.onicecandidate = e => {
      if (!e.candidate) resolve(null);
      else if (e.candidate.type === 'relay') resolve(e.candidate.candidate);
    };
  });
  await pc.setLocalDescription(await pc.createOffer());
  const candidate = await found;
  pc.close();
  return candidate;
}"""


def wait_for(predicate, within: float = WAIT_S) -> None:
    end = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < end, "condition not met"
        time.sleep(0.05)


def test_chromium_uses_the_shared_port_for_the_page_and_for_turn_tls(stack):  # noqa: F811
    from playwright.sync_api import sync_playwright

    nginx = stack["nginx"]
    creds = TurnCredentials(SECRET, [stack["turns_url"]]).issue("p-chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(WAIT_S * 1000)
            problems = []
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.goto(f"https://127.0.0.1:{nginx.port}/verify")
            page.wait_for_selector("#verify-go")
            # both scripts ran (asn1.js defines window.asn1, verify.js the form's handler): a
            # script failing its integrity check is not run, and says so on the console
            ran = "() => typeof window.asn1 === 'object' && "
            ran += "typeof document.getElementById('verify-form').onsubmit === 'function'"
            assert page.evaluate(ran), problems
            assert not [p for p in problems if "integrity" in p.lower()], problems

            for host in (TURN_NAME, "127.0.0.1"):
                url = f"turns:{host}:{nginx.port}?transport=tcp"
                candidate = page.evaluate(
                    RELAY,
                    {"url": url, "username": creds.username, "credential": creds.credential},
                )
                assert candidate and " typ relay " in candidate, (host, candidate)
        finally:
            browser.close()

    def routed(sni: str) -> bool:
        return any(
            f'sni="{sni}"' in line and "to=parley_turn_tls" in line for line in nginx.stream_log()
        )

    # Chromium sent the TURN host name as SNI (rule 1) and nothing for the address (rule 3);
    # its page request went to the HTTPS block by ALPN (rule 2)
    wait_for(lambda: routed(TURN_NAME) and routed(""))
    wait_for(lambda: any("to=parley_https" in ln for ln in nginx.stream_log()))
    assert ":p-chromium" in stack["turn"].output()
