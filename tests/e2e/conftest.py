"""Headless Chromium (Debian's build, driven by Playwright) with fake camera and microphone.

Each distinct fake-microphone tone needs its own browser process; the init script exposes the
page's RTCPeerConnections as ``window.__pcs``.
"""

from __future__ import annotations

import math
import shutil
import struct
import wave

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
PC_TRACKER = """(() => { const Orig = window.RTCPeerConnection; window.__pcs = [];
  window.RTCPeerConnection = class extends Orig {
    constructor(...a) { super(...a); window.__pcs.push(this); } }; })();"""

INBOUND = """async () => { const out = {audio: {}, video: {}}; const pcs = window.__pcs || [];
  const pc = pcs[pcs.length - 1]; if (!pc) return out;
  (await pc.getStats()).forEach(r => { if (r.type !== 'inbound-rtp') return;
    const o = out[r.kind]; o.framesDecoded = (o.framesDecoded || 0) + (r.framesDecoded || 0);
    o.packetsReceived = (o.packetsReceived || 0) + (r.packetsReceived || 0); }); return out; }"""

DOMINANT_FREQ = """async ({selector, ms}) => {
  const el = document.querySelector(selector); if (!el || !el.srcObject) return {freq: -1, peak: 0};
  const ctx = new AudioContext(); if (ctx.state !== 'running') await ctx.resume();
  const an = ctx.createAnalyser(); an.fftSize = 8192; an.smoothingTimeConstant = 0;
  ctx.createMediaStreamSource(el.srcObject).connect(an);
  const db = new Float32Array(an.frequencyBinCount), power = new Float64Array(an.frequencyBinCount);
  const td = new Float32Array(an.fftSize); let peak = 0; const end = performance.now() + ms;
  while (performance.now() < end) {
    await new Promise(r => setTimeout(r, 100));
    an.getFloatFrequencyData(db); for (let i = 0; i < db.length; i++) power[i] += 10 ** (db[i] / 10);
    an.getFloatTimeDomainData(td); for (const x of td) peak = Math.max(peak, Math.abs(x)); }
  let best = 1; for (let i = 2; i < power.length; i++) if (power[i] > power[best]) best = i;
  const freq = best * ctx.sampleRate / an.fftSize; await ctx.close(); return {freq, peak}; }"""

WAIT_FRAMES = """async (timeoutMs) => { const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) { const pcs = window.__pcs || [];
    const pc = pcs[pcs.length - 1];
    if (pc) { let f = 0; (await pc.getStats()).forEach(r => {
        if (r.type === 'inbound-rtp' && r.kind === 'video') f += r.framesDecoded || 0; });
      if (f > 0) return performance.now() - t0; }
    await new Promise(r => setTimeout(r, 50)); }
  return -1; }"""


def tone_wav(path, hz: float, seconds: float = 5.0, rate: int = 48000) -> str:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = bytearray()
        for i in range(int(seconds * rate)):
            frames += struct.pack("<h", int(0.5 * 32767 * math.sin(2 * math.pi * hz * i / rate)))
        w.writeframes(bytes(frames))
    return str(path)


@pytest.fixture(scope="module")
def pw():
    """Module scope: sync Playwright runs an event loop in this thread while it is open, which
    would block pytest-asyncio's loops in the async tests that follow."""
    if not shutil.which("chromium") and not shutil.which("/usr/bin/chromium"):
        pytest.fail("chromium is not installed: run scripts/test (it installs it when root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def launch(pw, tmp_path_factory):
    """launch(tone_hz) -> a browser whose fake microphone plays that tone."""
    browsers = []
    wav_dir = tmp_path_factory.mktemp("wav")

    def _launch(tone_hz: float | None = None):
        args = list(CHROMIUM_ARGS)
        if tone_hz:
            args.append(
                f"--use-file-for-fake-audio-capture={tone_wav(wav_dir / f'{tone_hz}.wav', tone_hz)}"
            )
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        browsers.append(b)
        return b

    yield _launch
    for b in browsers:
        b.close()


@pytest.fixture
def new_page():
    contexts = []

    def _new_page(browser):
        ctx = browser.new_context()
        ctx.add_init_script(PC_TRACKER)
        contexts.append(ctx)
        return ctx.new_page()

    yield _new_page
    for c in contexts:
        c.close()


@pytest.fixture
def console_server(tmp_path):
    """A server without the demo session and with one mediator account (``wang``)."""
    from tests.support.server_proc import ServerProcess, add_staff

    data = tmp_path / "data"
    add_staff(data)
    server = ServerProcess(data, "--no-demo").start_quiet()
    yield server
    server.stop()
