"""A party on a bad mobile link: loss, delay, jitter, a rate cap. Real Chromium both sides.

The party's Chromium runs in a network namespace (tests/support/netpath.py); the mediator's
Chromium and Parley run outside. Every figure is printed (``LOSSY_LINK ...``, ``RATE_CAP ...``)
and recorded in docs/benchmarks.md ("Real networks"); the assertions are behaviour with generous
bounds (a loaded two-core CI machine), not the figures.

* 10 % random loss each way, 200 ms RTT, ±25 ms jitter each way: both still hear the other's
  tone; the concealed share of the audio is measured at both ends; Opus in-band FEC is
  negotiated (the answer's fmtp) and arrives (``fecPacketsReceived``); the same link with FEC
  refused by the party's page gives the "without" figure in the same run; video NACKs are
  answered by the server's relay (its ``packets_retransmitted`` counter) and the retransmissions
  arrive (``nackCount``, ``retransmittedPacketsReceived``); a 1 s burst of total loss (first,
  while both pages still have video): how long until each page decodes the other's video again,
  first frame and steady (target 1 s: docs/benchmarks.md); the page must not reconnect for it;
  then 24 s of 10 % loss with the pages' own audio-only rule live: both tiles keep playing (no
  audio-only); Opus DTX: the party's microphone off drops the packets reaching the mediator;
  the server's bitrate hints for the mediator's camera under loss and after it (printed).
* A 300 kbit/s cap: the party's page goes audio-only by itself (the server's loss hint and
  its received pictures frozen half the time) and every page shows "weak network: audio only / 网络较弱：仅音频"; the server's
  bitrate hints move the mediator's camera down, and back up when the cap is gone and the party
  turns video on again.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.e2e.conftest import TEST_TIMEOUT_S, WAIT_MS, WAIT_S, rising
from tests.e2e.netpages import call_over, heard_at, page_now
from tests.support.netns import NetnsUnavailable
from tests.support.netpath import PhoneNetns

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]
METRICS_TOKEN = "e2e-lossy-metrics"

# The page refuses Opus FEC from the next answer on (window.__noFec): the "without" run.
NO_FEC = """(() => { const orig = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = function (d) {
    if (window.__noFec && d && d.type === 'answer')
      d = {type: 'answer', sdp: d.sdp.replace(/useinbandfec=1/g, 'useinbandfec=0')};
    return orig.call(this, d); }; })();"""

# Sums over the page's last connection: audio and video receive/send counters.
COUNTERS = """async () => { const pc = window.__pcs.at(-1); const o = {};
  const add = (k, v) => { o[k] = (o[k] || 0) + (v || 0); };
  (await pc.getStats()).forEach(r => {
    if (r.type === 'inbound-rtp' && r.kind === 'audio') { add('a_concealed', r.concealedSamples);
      add('a_total', r.totalSamplesReceived); add('a_fec', r.fecPacketsReceived);
      add('a_lost', r.packetsLost); add('a_packets', r.packetsReceived); }
    if (r.type === 'inbound-rtp' && r.kind === 'video') { add('v_nack', r.nackCount);
      add('v_rtx', r.retransmittedPacketsReceived); add('v_frames', r.framesDecoded);
      add('v_lost', r.packetsLost); add('v_packets', r.packetsReceived);
      add('v_freezes', r.freezeCount); add('v_freeze_s', r.totalFreezesDuration); }
    if (r.type === 'outbound-rtp' && r.kind === 'video') { add('out_v_bytes', r.bytesSent);
      add('out_v_frames', r.framesSent);
      add('out_v_rtx', r.retransmittedPacketsSent); add('out_v_nack', r.nackCount); }
    if (r.type === 'candidate-pair' && r.nominated && r.availableOutgoingBitrate)
      o.uplink_bps = r.availableOutgoingBitrate;
  });
  o.answer_fmtp = (pc.remoteDescription.sdp.match(/a=fmtp:\\d+ [^\\r\\n]*useinbandfec[^\\r\\n]*/) || [''])[0];
  o.offer_fmtp = (pc.localDescription.sdp.match(/a=fmtp:\\d+ [^\\r\\n]*useinbandfec[^\\r\\n]*/) || [''])[0];
  return o; }"""

# framesDecoded of the last connection every 50 ms for ``ms``: [[performance.now(), frames]].
FRAME_TIMELINE = """async (ms) => { const out = []; const end = performance.now() + ms;
  while (performance.now() < end) { let f = 0, a = 0;
    (await window.__pcs.at(-1).getStats()).forEach(r => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') f += r.framesDecoded || 0;
      if (r.type === 'inbound-rtp' && r.kind === 'audio') a += r.packetsReceived || 0; });
    out.push([performance.now(), f, a]); await new Promise(r => setTimeout(r, 50)); }
  return out; }"""

# Hints the page gets and its camera's send rate, every 500 ms, into window.__trace.
TRACE = """() => { if (window.__trace) return; window.__trace = []; const t0 = window.__t0 = performance.now();
  window.parley.socket.on('hint', h => window.__trace.push([performance.now() - t0, 'hint', h]));
  let last = null; setInterval(async () => { const pc = window.__pcs.at(-1); if (!pc) return;
    let bytes = 0, up = null, inLost = 0, inGot = 0, outLoss = null; (await pc.getStats()).forEach(r => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') bytes += r.bytesSent || 0;
      if (r.type === 'inbound-rtp' && r.kind === 'video') { inLost += r.packetsLost || 0; inGot += r.packetsReceived || 0; }
      if (r.type === 'remote-inbound-rtp' && r.kind === 'video') outLoss = r.fractionLost;
      if (r.type === 'candidate-pair' && r.nominated && r.availableOutgoingBitrate) up = r.availableOutgoingBitrate; });
    const now = performance.now();
    if (last && bytes >= last[1]) window.__trace.push([now - t0, 'send',
      {video_kbps: Math.round((bytes - last[1]) * 8 / (now - last[0])), uplink_kbps: up && Math.round(up / 1000),
       in_video_lost: inLost, in_video_packets: inGot, out_video_fraction_lost: outLoss,
       frozen: window.parley.videoFrozen ?? null, freeze_s: window.parley.freezeMean ?? null,
       weak: window.parley.weak || null}]);
    last = [now, bytes]; }, 500); }"""


# What the person sees on one remote tile, once a second for ``ms``: [performance.now(), frames
# decoded (all inbound video of the page's last connection), the tile's <video> playing (not
# paused, a frame to show), its currentTime, the page's audio-only reason (null: video on), and
# the page's own frozen share (web/static/app.js measureQuality)].
WATCH = """async ({sel, ms}) => { const out = []; const end = performance.now() + ms;
  while (performance.now() < end) { let f = 0;
    (await window.__pcs.at(-1).getStats()).forEach(r => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') f += r.framesDecoded || 0; });
    const v = document.querySelector(sel + ' video');
    out.push([performance.now(), f, !!v && !v.paused && v.readyState >= 2 && v.videoWidth > 0,
      v ? v.currentTime : null, window.parley.weak || null, window.parley.videoFrozen ?? null]);
    await new Promise(r => setTimeout(r, 1000)); }
  return out; }"""


# The page's frozen share (measureQuality) and audio-only reason from its trace: [s, frozen, weak].
FROZEN_TRACE = """() => window.__trace.filter(e => e[1] !== 'hint').map(e => e[1] === 'mark'
  ? [Math.round(e[0] / 100) / 10, e[2]]
  : [Math.round(e[0] / 100) / 10, e[2].frozen === null ? null : Math.round(e[2].frozen * 100) / 100,
     e[2].weak])"""
# The page's connections (ICE, connection, signaling states) and its own view.
PCS_STATE = """() => ({pcs: window.__pcs.map(pc => [pc.iceConnectionState, pc.connectionState,
  pc.signalingState, pc.iceGatheringState]), lost: window.parley.lost, mediaUp: window.parley.mediaUp,
  pathLosses: window.parley.pathLosses || 0, socket: window.parley.socket.connected,
  status: (document.querySelector('#call-status') || {}).textContent || null})"""

# A mark in the trace ("loss on", "burst" ...).
MARK = "(m) => window.__trace.push([performance.now() - window.__t0, 'mark', m])"

# Audio packets per second arriving at the page (its last connection) over ``ms``.
AUDIO_RATE = """async (ms) => { const n = async () => { let a = 0;
    (await window.__pcs.at(-1).getStats()).forEach(r => {
      if (r.type === 'inbound-rtp' && r.kind === 'audio') a += r.packetsReceived || 0; });
    return a; };
  const a0 = await n(), t0 = performance.now(); await new Promise(r => setTimeout(r, ms));
  return Math.round((await n() - a0) * 10000 / (performance.now() - t0)) / 10; }"""

# The caps (max_bitrate hints) the page applied to its camera since it joined, up to 20, and
# after Date.now() ``since``.
HINTED_CAPS = """(since) => (window.parley.caps || []).filter(c => c[0] > since).map(c => c[1])"""


def counters(page) -> dict:
    return page.evaluate(COUNTERS)


def delta(after: dict, before: dict) -> dict:
    return {
        k: round(v - before.get(k, 0), 3) for k, v in after.items() if isinstance(v, int | float)
    }


def concealed_share(d: dict) -> float | None:
    return round(d["a_concealed"] / d["a_total"], 4) if d.get("a_total") else None


def burst_recovery(timeline: list, start_ms: float) -> dict:
    """From a FRAME_TIMELINE ([t, framesDecoded, audio packetsReceived]) and a page time inside
    the burst (``start_ms``: the loss rules were in place): the burst's end is when the other
    side's audio (a continuous tone, 50 packets/s) arrives again, not when the test changed the
    rules (nft takes 0.2-0.7 s on a busy machine). From there: when the first video frame was
    decoded, and when decoding was steady again (the next 0.5 s decoded at least half the
    pre-burst rate)."""
    before = [(t, f) for t, f, _ in timeline if t <= start_ms - 100]
    rate = (before[-1][1] - before[0][1]) / max(0.001, (before[-1][0] - before[0][0]) / 1000)
    mid = start_ms + 500  # half a second into the burst: nothing arrives any more
    audio_mid = max((a for t, _, a in timeline if t <= mid), default=0)
    frames_mid = max((f for t, f, _ in timeline if t <= mid), default=0)
    end = next((t for t, _, a in timeline if t > mid and a > audio_mid), None)
    if end is None:
        return {"fps_before": round(rate, 1), "burst_end_seen": False}
    at_end = max(f for t, f, _ in timeline if t <= end)
    after = [(t, f) for t, f, _ in timeline if t >= end]
    first = next((t for t, f in after if f > at_end), None)
    steady = None
    for t, f in after:
        if f <= at_end or after[-1][0] < t + 500:
            continue
        if max(g for u, g in after if u <= t + 500) - f >= max(2.0, rate / 4):
            steady = t
            break
    return {
        "fps_before": round(rate, 1),
        "burst_s": round((end - start_ms) / 1000, 2),
        "frames_in_burst": at_end - frames_mid,
        "first_frame_s": None if first is None else round((first - end) / 1000, 2),
        "steady_s": None if steady is None else round((steady - end) / 1000, 2),
        "frames_after_end": [[round((t - end) / 1000, 2), f] for t, f in after][::5],
    }


def video_on_figures(watch: list) -> dict:
    """From a WATCH run: how long it covered, the audio-only reasons seen, samples where the
    tile's video was not playing, 2 s windows in which no frame was decoded, and the frame rate
    and the page's frozen shares."""
    secs = (watch[-1][0] - watch[0][0]) / 1000
    windows = [watch[i : i + 3] for i in range(0, len(watch) - 2, 2)]
    return {
        "seconds": round(secs, 1),
        "weak": sorted({w[4] for w in watch}, key=str),
        "not_playing_samples": sum(1 for w in watch if not w[2]),
        "windows_without_frames": sum(1 for w in windows if w[-1][1] <= w[0][1]),
        "fps": round((watch[-1][1] - watch[0][1]) / max(secs, 0.001), 1),
        "frozen_shares": [w[5] for w in watch][::2],
    }


def metrics(server) -> dict:
    port = server.url.rsplit(":", 1)[1]
    host = server.links["mediator"][0].split("//", 1)[1].split(":", 1)[0]
    req = urllib.request.Request(
        f"http://{host}:{port}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=WAIT_S) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("parley_media_"):
            name, value = line.split(" ", 1)
            out[name.removeprefix("parley_media_")] = float(value)
    return out


def server_video_in(server) -> dict:
    """The server's video jitter buffers (media/passthrough.py VideoJitterBuffer)."""
    m = metrics(server)
    return {k: m[k] for k in m if k.startswith(("video_", "peer_rtt"))}


def wait_media_seconds(page, seconds: float) -> None:
    """Let ``seconds`` of audio arrive at the page (its own clock: totalSamplesReceived)."""
    got = page.evaluate(
        f"""async () => {{ const t0 = performance.now(); const start = (await ({COUNTERS})()).a_total;
          while (performance.now() - t0 < {WAIT_MS}) {{
            await new Promise(r => setTimeout(r, 250));
            if ((await ({COUNTERS})()).a_total >= start + {seconds * 48000}) return true; }}
          return false; }}"""
    )
    assert got, f"{seconds} s of audio did not arrive in {WAIT_MS} ms"


def netns_or_skip(**kw) -> PhoneNetns:
    try:
        return PhoneNetns(**kw).__enter__()
    except NetnsUnavailable as exc:
        pytest.skip(f"no network namespace here: {exc}")


def test_ten_percent_loss_200ms_rtt_jitter_audio_flows_video_recovers(pw, new_page, tmp_path):
    # The call starts on a clean link (0.1 ms relay); the delay and loss come once it runs.
    ns = netns_or_skip(delay_ms=0.1, jitter_ms=0)
    env = {"PARLEY_METRICS_TOKEN": METRICS_TOKEN}
    try:
        with call_over(ns, pw, new_page, tmp_path, extra_env=env, party_init=NO_FEC) as (
            server,
            mediator,
            party,
            sel_m,
            sel_p,
        ):
            fig: dict = {"link": "10 % loss each way, 100 ms ± 25 ms each way"}
            # FEC and DTX: what the server answered and the page offered
            c = counters(party)
            fig["answer_fmtp"], fig["offer_fmtp"] = c["answer_fmtp"], c["offer_fmtp"]
            assert "useinbandfec=1" in c["answer_fmtp"] and "usedtx=1" in c["answer_fmtp"]
            assert "useinbandfec=1" in c["offer_fmtp"] and "usedtx=1" in c["offer_fmtp"]

            for page in (mediator, party):
                page.evaluate(TRACE)
            ns.set_delay(100, 25)
            ns.set_loss(10)
            for page in (mediator, party):
                page.evaluate(MARK, "loss 10 %")
            rising(party, "audio", by=50)  # 1 s of packets on the new link

            # First a 1 s burst of total loss, then 10 % again (the pages' own audio-only rule
            # is on throughout). How long until each page decodes the other's video.
            for page in (mediator, party):
                page.evaluate(f"() => {{ window.__ft = ({FRAME_TIMELINE})(10000); }}")
            start, sent0 = page_now(party), counters(party).get("out_v_frames", 0)
            party.wait_for_function(f"() => performance.now() > {start + 2000}", polling=50)
            camera_fps = (
                (counters(party).get("out_v_frames", 0) - sent0) * 1000 / (page_now(party) - start)
            )
            ns.set_loss(100)
            party.evaluate(MARK, "burst")
            starts = {"party": page_now(party), "mediator": page_now(mediator)}
            party.wait_for_function(
                f"() => performance.now() > {starts['party'] + 1000}", polling=50
            )
            ns.set_loss(10)
            fig["burst"] = {"party_camera_fps_before": round(camera_fps, 1)}
            for who, page in (("party", party), ("mediator", mediator)):
                fig["burst"][who] = burst_recovery(
                    page.evaluate("async () => await window.__ft"), starts[who]
                )
                fig["burst"][who]["weak"] = page.evaluate("() => window.parley.weak || null")
            for who, page in (("party", party), ("mediator", mediator)):
                fig["burst"][who]["frozen_trace"] = page.evaluate(FROZEN_TRACE)
            fig["burst"]["party_path_losses"] = party.evaluate(
                "() => window.parley.pathLosses || 0"
            )
            fig["burst"]["server_video_in"] = server_video_in(server)
            print("LOSSY_LINK_BURST", json.dumps(fig["burst"]))
            # Target: video back within 1 s of the burst's end (the figure is printed and
            # recorded in docs/benchmarks.md). Asserted with a loaded-CI bound: both pages decode
            # the other's video again, steadily, and the page neither reconnects nor hangs.
            assert fig["burst"]["party_path_losses"] == 0, fig
            for who in ("party", "mediator"):
                back = fig["burst"][who].get("steady_s")
                assert back is not None and back < 4, fig["burst"]

            # Video stays on under 10 % loss: for 24 s (page clocks) each page's tile of the
            # other keeps playing, with its own audio-only rule live (NACK/RTX repair the loss).
            for page, sel in ((mediator, sel_m), (party, sel_p)):
                page.evaluate(
                    f"() => {{ window.__vw = ({WATCH})({{sel: {json.dumps(sel)}, ms: 24000}}); }}"
                )
            m0, p0, s0 = counters(mediator), counters(party), metrics(server)
            wait_media_seconds(mediator, 10)
            m1, p1, s1 = counters(mediator), counters(party), metrics(server)
            fig["video_on"] = {}
            for who, page in (("mediator", mediator), ("party", party)):
                watch = page.evaluate("async () => await window.__vw")
                fig["video_on"][who] = video_on_figures(watch)
            print("LOSSY_LINK_VIDEO_ON", json.dumps(fig["video_on"]))
            for who in ("mediator", "party"):
                v = fig["video_on"][who]
                assert v["seconds"] >= 20 and v["weak"] == [None], fig["video_on"]
                assert v["not_playing_samples"] == 0 and v["windows_without_frames"] == 0, v
            dm, dp = delta(m1, m0), delta(p1, p0)
            fig["with_fec"] = {
                "mediator_hears_party_concealed": concealed_share(dm),
                "mediator_fec_packets": dm.get("a_fec"),
                "party_hears_mediator_concealed": concealed_share(dp),
                "party_fec_packets": dp.get("a_fec"),
                "audio_loss_to_mediator": round(
                    dm["a_lost"] / max(1, dm["a_lost"] + dm["a_packets"]), 3
                ),
            }
            fig["nack_rtx"] = {
                "party_video_nacks_sent": dp.get("v_nack"),
                "party_video_rtx_received": dp.get("v_rtx"),
                "party_video_lost_after_rtx": dp.get("v_lost"),
                "party_video_packets": dp.get("v_packets"),
                "server_relay_retransmitted": s1["packets_retransmitted"]
                - s0["packets_retransmitted"],
                "party_camera_rtx_sent_to_server": dp.get("out_v_rtx"),
                "party_camera_nacks_from_server": dp.get("out_v_nack"),
                "party_frames_decoded_per_s": round(dp["v_frames"] / 10, 1),
                "mediator_frames_decoded_per_s": round(dm["v_frames"] / 10, 1),
                "party_freezes": dp.get("v_freezes"),
                "party_freeze_s": dp.get("v_freeze_s"),
                "drops_by_link": ns.dropped(),
                "party_weak_after": party.evaluate("() => window.parley.weak || null"),
            }
            print("LOSSY_LINK_PHASE1", json.dumps({**fig, "m0": m0, "m1": m1, "p0": p0, "p1": p1}))
            # audio keeps flowing under loss: both still hear the other's tone
            assert heard_at(mediator, sel_m, 1000) is not None
            assert heard_at(party, sel_p, 440) is not None
            assert fig["nack_rtx"]["server_relay_retransmitted"] > 0, fig
            assert dp.get("v_rtx", 0) > 0 and dp.get("v_nack", 0) > 0, fig

            # DTX (usedtx=1 in the answer): the party's microphone off sends silence, which
            # Opus DTX sends as ~1 packet per 400 ms instead of 50 per second.
            tone_rate = mediator.evaluate(AUDIO_RATE, 3000)
            party.click("#btn-mic")
            party.wait_for_function("() => !window.parley.micOn")
            silence_rate = mediator.evaluate(AUDIO_RATE, 3000)
            party.click("#btn-mic")
            party.wait_for_function("() => window.parley.micOn")
            fig["dtx"] = {"tone_packets_per_s": tone_rate, "silence_packets_per_s": silence_rate}
            print("LOSSY_LINK_DTX", json.dumps(fig["dtx"]))
            assert silence_rate < tone_rate / 3, fig["dtx"]
            rising(mediator, "audio", by=50)

            # the same link without FEC: the party's page refuses it on its next connection
            before = party.evaluate("() => window.__pcs.length")
            party.evaluate(
                "() => { window.__noFec = true; const pc = window.__pcs.at(-1);"
                " Object.defineProperty(pc, 'connectionState', {get: () => 'failed'});"
                " pc.dispatchEvent(new Event('connectionstatechange')); }"
            )
            try:
                party.wait_for_function(
                    f"() => window.__pcs.length > {before} && "
                    "window.__pcs.at(-1).connectionState === 'connected'"
                )
            finally:  # what the party's page saw of its connections
                print("LOSSY_LINK_RECONNECT", json.dumps(party.evaluate(PCS_STATE)))
            rising(party, "audio", by=50)
            assert "useinbandfec=0" in counters(party)["answer_fmtp"]
            m0 = counters(mediator)
            wait_media_seconds(mediator, 10)
            dm = delta(counters(mediator), m0)
            fig["without_fec"] = {
                "mediator_hears_party_concealed": concealed_share(dm),
                "mediator_fec_packets": dm.get("a_fec"),
                "audio_loss_to_mediator": round(
                    dm["a_lost"] / max(1, dm["a_lost"] + dm["a_packets"]), 3
                ),
            }
            # The loss goes (the delay stays): the server's hints move the mediator's camera up
            # (the party's REMB rises with what arrives).
            caps = mediator.evaluate(HINTED_CAPS, 0)
            t_end = mediator.evaluate("() => Date.now()")
            ns.set_loss(0)
            rising(party, "video", by=90)  # ~6 s of the mediator's camera at the party
            fig["hints_mediator_camera"] = {
                "until_loss_ends": caps,
                "after_loss": mediator.evaluate(HINTED_CAPS, t_end),
            }
            print("LOSSY_LINK_HINTS", json.dumps(fig["hints_mediator_camera"]))
            # hinted while the loss ran (the figures, down and up or not, are printed: the
            # party's REMB is delay-based and a cap moves only by > 15 %, so neither is certain
            # within a run; docs/benchmarks.md)
            assert caps, fig
            for who, page in (("mediator", mediator), ("party", party)):
                trace = page.evaluate("() => window.__trace")
                fig[f"{who}_hints"] = [
                    [round(t / 1000, 1), h.get("max_bitrate") or h]
                    for t, k, h in trace
                    if k == "hint"
                ]
                fig[f"{who}_send_kbps"] = [
                    [round(t / 1000, 1), s["video_kbps"], s["uplink_kbps"]]
                    for t, k, s in trace
                    if k == "send"
                ][::4]
            fig["server"] = {
                k: metrics(server).get(k) for k in ("hints_sent", "remb_reports", "loss_reports")
            }
            print("LOSSY_LINK", json.dumps(fig))
    finally:
        ns.close()


# Known flaky inside the full suite (1 of 2 full runs on 2026-11-30: the capped party never
# reached the call screen; it passes alone): one rerun, and the flakiness is on record.
@pytest.mark.flaky(reruns=1)
def test_300kbit_cap_party_goes_audio_only_and_everyone_sees_why(pw, new_page, tmp_path):
    ns = netns_or_skip()
    try:
        with call_over(ns, pw, new_page, tmp_path, second_party=True) as (
            server,
            mediator,
            party,
            sel_m,
            sel_p,
        ):
            for page in (mediator, party):
                page.evaluate(TRACE)
            t0 = time.monotonic()
            ns.set_rate(300)
            try:
                party.wait_for_function("() => !!window.parley.weak", timeout=WAIT_MS)
            finally:
                print(
                    "RATE_CAP_TRACE",
                    json.dumps(
                        {
                            "mediator": mediator.evaluate("() => window.__trace"),
                            "party": party.evaluate("() => window.__trace"),
                        }
                    ),
                )
            fig: dict = {
                "audio_only_after_s": round(time.monotonic() - t0, 1),
                "why": party.evaluate("() => window.parley.weak"),
            }
            # the party's own page and the mediator's tile of the party say so, in zh and en
            mediator.wait_for_selector(f"{sel_m} .tile-weak:not([hidden])")
            party.wait_for_selector("#net-quality[data-weak='1']")
            for _ in range(2):
                lang = mediator.evaluate("() => i18n.lang")
                text = {"zh": "网络较弱：仅音频", "en": "Weak network: audio only"}[lang]
                assert mediator.inner_text(f"{sel_m} .tile-weak") == text
                if party.evaluate("() => i18n.lang") != lang:
                    party.click("#lang")
                assert party.inner_text("#net-quality") == text
                mediator.click("#lang")
            # audio still flows both ways under the cap
            assert heard_at(mediator, sel_m, 1000, timeout_s=30) is not None
            assert heard_at(party, sel_p, 440, timeout_s=30) is not None

            fig["trace_under_cap"] = {
                "mediator": mediator.evaluate("() => window.__trace"),
                "party": party.evaluate("() => window.__trace"),
            }
            print("RATE_CAP_PHASE1", json.dumps(fig))
            # the cap goes, the party turns video on again: hints go back up
            ns.set_rate(None)
            t1 = time.monotonic()
            party.click("#btn-audio-only")
            party.wait_for_function("() => !window.parley.weak")
            rising(party, "video", by=10)
            mediator.wait_for_selector(f"{sel_m} .tile-weak", state="hidden")
            fig["video_back_after_s"] = round(time.monotonic() - t1, 1)
            # let the hints settle a few seconds (measured in decoded frames at the party)
            rising(party, "video", by=60)
            trace = mediator.evaluate("() => window.__trace")
            fig["mediator_hints"] = [
                [round(t / 1000, 1), h.get("max_bitrate"), h.get("audio_only")]
                for t, kind, h in trace
                if kind == "hint"
            ]
            fig["mediator_send_kbps"] = [
                [round(t / 1000, 1), s["video_kbps"]] for t, kind, s in trace if kind == "send"
            ][::2]
            fig["party_uplink_kbps"] = [
                [round(t / 1000, 1), s["uplink_kbps"]]
                for t, kind, s in party.evaluate("() => window.__trace")
                if kind == "send"
            ][::2]
            print("RATE_CAP", json.dumps(fig))
    finally:
        ns.close()
