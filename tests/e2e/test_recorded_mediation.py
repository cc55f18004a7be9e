"""Recording a mediation from the pages, in Chromium (R8, R9, R14; issue #12).

A mediator and two parties, each browser's fake microphone playing its own tone: the mediator
gives their own consent, asks, both parties agree on their phones, recording starts by itself,
party A spends a while in a caucus, the mediator stops. The stored segments are then decrypted
with recording/'s own code and decoded with PyAV: per person, the video frames and the audio
match what the page sent (its getStats ``framesSent`` and audio ``packetsSent``) and the recorded
time within 5 %, the issue's bound (see ``_check``), the audio carries that person's
tone, and no joint room segment of A overlaps the caucus. Then the two paths where nothing is
recorded (a mediator who has not consented, a party who does not agree) and a late joiner held
until they agree.
"""

from __future__ import annotations

import hashlib
import io
import urllib.request

import av
import pytest

from recording.keys import DataKey, MasterKey
from recording.manifest import manifest, verify_files
from recording.sealed import open_sealed
from rooms.ledger import SqliteLedgerStore, verify_chain
from tests.e2e.conftest import TEST_TIMEOUT_S, WAIT_S, rising, stat, wait_stat
from tests.e2e.flows import join
from tests.integration.recording.conftest import decode, tone_power
from tests.support.server_proc import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]

TONES = {"M": 660.0, "A": 440.0, "B": 1000.0}
RECORDING = "() => !!(window.parley.view && window.parley.view.session.recording)"
NOT_RECORDING = "() => !!(window.parley.view && !window.parley.view.session.recording)"
# Every 100 ms, in the page: [wall clock, video frames sent, audio packets sent, video frames
# encoded, NACKs received, video packets the server reported lost] so far, over all of the
# page's connections (a reconnect starts new counters: each connection keeps the last values
# read from it) — what the camera and microphone really sent, on the ledger's clock.
SENT_LOG = """() => { window.__sent = []; const last = new Map(); setInterval(async () => {
  for (const pc of window.__pcs || []) {
    if (pc.connectionState === 'closed') continue;
    const row = [0, 0, 0, 0, 0];
    try { (await pc.getStats()).forEach(r => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') {
        row[0] += r.framesSent || 0; row[2] += r.framesEncoded || 0; row[3] += r.nackCount || 0; }
      else if (r.type === 'outbound-rtp') row[1] += r.packetsSent || 0;
      else if (r.type === 'remote-inbound-rtp' && r.kind === 'video') row[4] += r.packetsLost || 0;
    }); } catch (e) { continue; }
    last.set(pc, row); }
  const total = [Date.now() / 1000, 0, 0, 0, 0, 0];
  for (const row of last.values()) row.forEach((x, i) => { total[i + 1] += x; });
  window.__sent.push(total); }, 100); }"""
STATUS_NAMES = "name => document.getElementById('rec-status').textContent.includes(name)"


def _dir_bytes(path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _admit(med, page) -> str:
    pid = page.evaluate("() => window.parley.me")
    med.click(f'#people li[data-participant="{pid}"] button[data-action="admit"]')
    page.wait_for_function("() => window.parley.view && window.parley.view.space === 'joint'")
    return pid


def _keep_video(page) -> None:
    """This test counts video frames, so the page must keep its camera on: on a loaded two-core
    machine Chromium's own bandwidth estimate can fall under the page's 100 kbit/s audio-only
    threshold (app.js ``measureQuality``, tested in test_lossy_link.py). Its 10 s grace after
    the media came up is stretched to never; the server's hint path stays as it is."""
    page.evaluate("() => { window.parley.mediaUpAt = Number.MAX_SAFE_INTEGER; }")
    assert page.evaluate("() => window.parley.weak") is None


def _sent_between(log, t0: float, t1: float, column: int) -> float:
    """What the page sent between two wall-clock times (column 1: video frames, 2: audio
    packets), linear between samples."""

    def at(t):
        for ra, rb in zip(log, log[1:], strict=False):
            if ra[0] <= t <= rb[0]:
                return ra[column] + (rb[column] - ra[column]) * (t - ra[0]) / max(
                    rb[0] - ra[0], 1e-9
                )
        raise AssertionError(f"{t} is outside the page's log")

    return at(t1) - at(t0)


def _pts_range(webm: bytes, kind: str) -> tuple[float, float]:
    """The media time of a track's first and last packet in a segment (its WebM keeps it)."""
    with av.open(io.BytesIO(webm)) as c:
        stream = c.streams.video[0] if kind == "video" else c.streams.audio[0]
        times = [
            float(p.pts * p.time_base) for p in c.demux(stream) if p.pts is not None and p.size
        ]
    return (min(times), max(times)) if times else (0.0, 0.0)


def _recorded_spans(events, pid: str, started: float, stopped: float) -> list[tuple]:
    """When ``pid`` was in the recording by the rules (connected, in the joint room) while the
    run lasted, by the ledger's clock."""
    spans, since = [], None
    connected = joint = False
    for e in events:
        d = e.data
        if d.get("participant") != pid:
            continue
        if e.type == "participant.connected":
            connected, joint = True, d["space"] == "joint"
        elif e.type == "participant.disconnected":
            connected = False
        elif e.type == "participant.moved":
            joint = d["to"] == "joint"
        elif e.type == "participant.admitted":
            joint = d["space"] == "joint"
        else:
            continue
        if connected and joint and since is None:
            since = e.ts
        elif not (connected and joint) and since is not None:
            spans.append((since, e.ts))
            since = None
    if since is not None:
        spans.append((since, stopped))
    clipped = [(max(t0, started), min(t1, stopped)) for t0, t1 in spans]
    return [(t0, t1) for t0, t1 in clipped if t1 > t0]


def _media_metrics(url: str) -> dict:
    """The server's media counters (loopback /metrics): where frames were lost, if any."""
    with urllib.request.urlopen(url + "/metrics", timeout=WAIT_S) as r:
        text = r.read().decode()
    keys = ("frames_received", "upstream_losses", "video_holes_skipped", "video_nacks_repeated")
    return {
        k: float(line.split()[-1])
        for line in text.splitlines()
        for k in keys
        if line.startswith(f"parley_media_{k} ")
    }


def _print_ledger(data, session: str) -> None:
    store = SqliteLedgerStore(data / "ledger.sqlite3")
    try:
        for e in store.read(session):
            print("ledger", e.seq, f"{e.ts:.2f}", e.type, e.actor, str(e.data)[:120])
    finally:
        store.close()


def _mediation(tmp_path, launch, new_page, tones=None):
    """A demo server (mediator + parties A and B); the pages of those in ``tones`` joined."""
    data = tmp_path / "data"
    server = ServerProcess(data, env={"PARLEY_RECORDING_SEGMENT_SECONDS": "5"}).start(WAIT_S)
    pages = {}
    for name, link in (
        ("M", server.links["mediator"][0]),
        ("A", server.links["party"][0]),
        ("B", server.links["party"][1]),
    ):
        if name in (tones or {}):
            pages[name] = new_page(launch(tones[name]))
            join(pages[name], link, consents=name != "M")
    return server, data, pages


def test_recorded_mediation_with_a_caucus(tmp_path, launch, new_page):
    server, data, p = _mediation(tmp_path, launch, new_page, TONES)
    med, a, b = p["M"], p["A"], p["B"]
    session = med.evaluate("() => window.parley.view.session.id")
    try:
        ids = {
            "M": med.evaluate("() => window.parley.me"),
            "A": _admit(med, a),
            "B": _admit(med, b),
        }
        for page in (med, a, b):
            wait_stat(page, "video")
            _keep_video(page)
            page.evaluate(SENT_LOG)

        # R14: media flows, recording is off: nothing is written
        rising(a, by=30)
        assert _dir_bytes(data / "recordings") == 0

        # the mediator's own consent first, then everyone present is asked
        med.click("#btn-recording:not([hidden])")
        med.click("#rec-self:not([hidden]) button[data-action='rec-self-yes']")
        for page in (a, b):
            page.wait_for_selector("#rec-ask[data-state='asked']:not([hidden])")
            assert "王调解员" in page.inner_text("#rec-ask-text")
        med.wait_for_function(STATUS_NAMES, arg="张三")
        assert med.evaluate("() => window.parley.view.session.recording") is False
        a.click("#rec-ask button[data-action='rec-yes']")
        a.wait_for_selector("#rec-ask", state="hidden")
        assert med.evaluate("() => window.parley.view.session.recording") is False  # B is missing
        b.click("#rec-ask button[data-action='rec-yes']")

        # it starts by itself once nobody present is missing; REC with who started it, everywhere
        for page in (med, a, b):
            page.wait_for_function(RECORDING)
            page.wait_for_selector("#rec:not([hidden])")
            assert "王调解员" in page.inner_text("#rec"), page.inner_text("#rec")
        wait_stat(a, "sent", stat(a, "sent") + 60)  # ~4 s of A's camera, recorded
        med.fill("#caucus-name", "a")
        med.fill("#caucus-minutes", "5")
        med.click("#form-caucus button")
        med.click('#caucuses li[data-caucus="a"] button[data-action="move-side-A"]')
        a.wait_for_function("() => window.parley.view.space === 'caucus:a'")
        wait_stat(a, "sent", stat(a, "sent") + 45)  # ~3 s in the caucus, not recorded
        med.click('#caucuses li[data-caucus="a"] button[data-action="close-caucus"]')
        a.wait_for_function("() => window.parley.view.space === 'joint'")
        wait_stat(a, "sent", stat(a, "sent") + 60)  # ~4 s back in the joint room

        med.click("#btn-recording:not([hidden])")
        for page in (med, a, b):
            page.wait_for_function(NOT_RECORDING)
            page.wait_for_selector("#rec", state="hidden")
        rising(med, "sent")  # the frame logs reach past the stop
        assert [page.evaluate("() => window.parley.weak") for page in p.values()] == [None] * 3
        sent_log = {n: page.evaluate("() => window.__sent") for n, page in p.items()}
        server_media = _media_metrics(server.url)
    except Exception:  # on a loaded machine, say what the session did
        _print_ledger(data, session)
        raise
    finally:
        server.stop()  # a clean stop: every open segment is written and recorded first

    store = SqliteLedgerStore(data / "ledger.sqlite3")
    try:
        events = store.read(session)
    finally:
        store.close()
    try:
        _check(data, session, events, ids, sent_log, server_media)
    except AssertionError:  # say what the session did
        _print_ledger(data, session)
        raise


def _check(data, session: str, events, ids: dict, sent_log: dict, server_media: dict) -> None:
    """The stored recording against the ledger, the pages' logs and the issue's bounds."""
    assert verify_chain(events) == []
    man = manifest(events)
    assert [run["started_by"] for run in man["runs"]] == [ids["M"]]
    directory = data / "recordings" / session
    assert verify_files(man, directory) == []
    assert man["gaps"] == []
    moves = [
        e for e in events if e.type == "participant.moved" and e.data["participant"] == ids["A"]
    ]
    moved = next(e for e in moves if e.data["to"] == "caucus:a")
    back = next(e for e in moves if e.data["from"] == "caucus:a")
    key = DataKey.for_session(MasterKey.load(data), directory, session)
    epoch = events[0].ts  # session.created: media time counts from here

    report = {}
    run = man["runs"][0]
    for name, pid in ids.items():
        log = sent_log[name]
        segments = [s for s in man["segments"] if s["participant"] == pid]
        assert len(segments) >= 2, (name, segments)
        frames = sent = by_arrival = audio = sent_audio = media = 0.0
        own = other = 0.0
        for s in segments:
            assert s["space"] == "joint"
            stored = (directory / s["file"]).read_bytes()
            assert hashlib.sha256(stored).hexdigest() == s["sha256"]
            webm = open_sealed(key, stored)[1]
            assert hashlib.sha256(webm).hexdigest() == s["plain_sha256"]
            got = decode(webm)
            assert got["video"] == s["video_frames"] > 0, (name, s["file"])
            frames += got["video"]
            audio += got["audio_s"]
            # What the page sent while this segment's frames were captured: each track's
            # media time is the publisher's RTP clock anchored at that track's first frame's
            # arrival, so it is the page's clock shifted by one constant delay per track
            # (sending goes on around it: the shift changes nothing); the segment's own bounds
            # span both tracks, whose anchors differ a little. The server's arrival times are
            # not the reference: a server falling behind shifts them by a growing delay, which
            # is time, not loss.
            for kind, column, per in (("video", 1, 1), ("audio", 2, 50)):
                first, last = _pts_range(webm, kind)
                count = (_sent_between(log, epoch + first, epoch + last, column) + 1) / per
                if kind == "video":
                    sent += count
                else:
                    sent_audio += count  # 20 ms Opus packets
            by_arrival += _sent_between(log, s["wall_start"], s["wall_end"], 1) + 1
            media += s["media_end"] - s["media_start"] + 1 / 15
            if got["audio_s"] >= 0.5:  # a segment cut just before the stop may be a frame long
                own += tone_power(got["samples"], TONES[name])
                other += max(tone_power(got["samples"], TONES[n]) for n in TONES if n != name)
            if name == "A":  # R9: nothing of the caucus in a joint-room segment
                assert s["wall_end"] <= moved.ts + 0.2 or s["wall_start"] >= back.ts - 0.2, s
        # the recorded time, by the server's clock: while the person was connected in the
        # joint room during the run (A's caucus, or a reconnect on a starved machine, is not);
        # what the page's camera sent meanwhile is the frames that time should hold
        spans = _recorded_spans(events, pid, run["started"], run["stopped"])
        recorded = sum(t1 - t0 for t0, t1 in spans)
        expected = sum(_sent_between(log, t0, t1, 1) for t0, t1 in spans)
        report[name] = dict(
            segments=len(segments),
            frames=int(frames),
            sent=round(sent),
            sent_by_arrival=round(by_arrival),
            frames_for_recorded_s=round(expected),
            sent_audio_s=round(sent_audio, 2),
            audio_s=round(audio, 2),
            media_s=round(media, 2),
            recorded_s=round(recorded, 2),
            nacks=log[-1][4],
            lost_packets=log[-1][5],
            tone_ratio=round(own / max(other, 1e-9), 1),
        )
    print("server media:", server_media)
    print("recorded mediation:", report)  # the figures docs/recording.md quotes
    for name, r in report.items():
        # Nothing invented or stretched: never more frames or audio than the page sent while
        # recorded, never more media time than the run (a re-anchor after a >2 s stall of a
        # starved server may add a little: 20 %).
        assert r["frames"] <= 1.05 * r["sent"] + r["segments"], (name, r)
        assert r["audio_s"] <= 1.05 * r["sent_audio_s"], (name, r)
        assert r["media_s"] <= 1.2 * r["recorded_s"], (name, r)
        # The 5 %: the frames and the audio against what the page's camera and
        # microphone sent (getStats), and against the recorded time.
        assert r["frames"] >= 0.95 * r["sent"], (name, r)
        assert r["audio_s"] >= 0.95 * r["sent_audio_s"], (name, r)
        expected = r["frames_for_recorded_s"]
        assert abs(r["frames"] - expected) <= 0.05 * expected, (name, r)
        assert abs(r["audio_s"] - r["recorded_s"]) <= 0.05 * r["recorded_s"], (name, r)
        assert r["media_s"] >= 0.95 * r["recorded_s"], (name, r)
        assert r["tone_ratio"] > 20, (name, r)


def test_a_mediator_who_has_not_consented_asks_nobody(tmp_path, launch, new_page):
    server, _data, p = _mediation(tmp_path, launch, new_page, {"M": None, "A": None})
    med, a = p["M"], p["A"]
    try:
        _admit(med, a)
        # rooms refuses a start without the mediator's own consent, whatever the page does
        r = med.evaluate("() => window.parley.command({type: 'start_recording'})")
        assert r["ok"] is False and "own consent" in r["error"]["message"], r
        med.click("#btn-recording:not([hidden])")
        med.wait_for_selector("#rec-self:not([hidden])")
        med.click("#rec-self button[data-action='rec-self-no']")
        med.wait_for_selector("#rec-self", state="hidden")
        # nobody was asked: a round trip through the server later, the party's page is quiet
        med.evaluate("() => window.parley.command({type: 'chat', text: 'ping'})")
        a.wait_for_selector("#chat-list >> text=ping")
        assert a.is_hidden("#rec-ask") and a.is_hidden("#rec")
        assert med.evaluate("() => window.parley.view.session.recording") is False
        assert med.is_hidden("#rec-status")
    finally:
        server.stop()


def test_a_party_who_does_not_agree_stays_and_nothing_is_recorded(tmp_path, launch, new_page):
    server, data, p = _mediation(tmp_path, launch, new_page, {"M": None, "A": None})
    med, a = p["M"], p["A"]
    try:
        pid = _admit(med, a)
        wait_stat(a, "video")
        med.click("#btn-recording:not([hidden])")
        med.click("#rec-self:not([hidden]) button[data-action='rec-self-yes']")
        a.wait_for_selector("#rec-ask[data-state='asked']:not([hidden])")
        a.click("#rec-ask button[data-action='rec-no']")
        a.wait_for_selector("#rec-ask", state="hidden")
        # the mediator sees who did not agree, in the panel and on the person's row
        med.wait_for_function(STATUS_NAMES, arg="张三")
        med.wait_for_selector(f'#people li[data-participant="{pid}"] >> text=⏺✗')
        # not ejected: still in the joint room, still receiving; recording stays off
        assert a.evaluate("() => window.parley.view.space") == "joint"
        rising(a)
        for page in (med, a):
            assert page.evaluate("() => window.parley.view.session.recording") is False
            assert page.is_hidden("#rec")
        assert _dir_bytes(data / "recordings") == 0
        # the mediator withdraws the request: the button is free again
        med.click("#rec-panel button[data-action='rec-cancel']")
        med.wait_for_selector("#btn-recording:not([disabled])")
        assert med.is_hidden("#rec-status")
    finally:
        server.stop()


def test_a_late_joiner_is_held_until_they_agree(tmp_path, launch, new_page):
    """The demo's policy is ``hold``: someone admitted while recording runs, without consent,
    is asked at once and nobody receives them until they agree (rooms/plan.py)."""
    server, _data, p = _mediation(tmp_path, launch, new_page, {"M": None, "A": None, "B": None})
    med, a, b = p["M"], p["A"], p["B"]
    slots_of = "() => (window.parley.slots || []).map(s => s.participant)"
    try:
        _admit(med, a)
        med.click("#btn-recording:not([hidden])")
        med.click("#rec-self:not([hidden]) button[data-action='rec-self-yes']")
        a.click("#rec-ask[data-state='asked']:not([hidden]) button[data-action='rec-yes']")
        for page in (med, a):
            page.wait_for_function(RECORDING)
        b_id = _admit(med, b)  # B was in the waiting room: now in the recorded room, no consent
        b.wait_for_selector("#rec-ask[data-state='held']:not([hidden])")
        assert "王调解员" in b.inner_text("#rec-ask-text")
        med.wait_for_function(STATUS_NAMES, arg="李四")
        wait_stat(b, "video")  # B receives the others
        assert b_id not in a.evaluate(slots_of)  # but nobody receives B
        b.click("#rec-ask button[data-action='rec-yes']")
        b.wait_for_selector("#rec-ask", state="hidden")
        a.wait_for_function(f"() => ({slots_of})().includes('{b_id}')")
        med.wait_for_function(
            "name => !document.getElementById('rec-status').textContent.includes(name)", arg="李四"
        )
        assert a.evaluate("() => window.parley.view.session.recording") is True
    finally:
        server.stop()
