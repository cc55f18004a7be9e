"""The review page's player in Chromium (docs/recording.md, "Review and the access log").

A mediator's recorded session on a real ``server.py``: party A has two consecutive segments, B
one that spans both, real sealed WebM (VP8 + Opus, encoded by PyAV) recorded in the ledger as the
recorder records them. The mediator logs in, states a reason, and only then gets the player; the
segments play (each person's video advances, from the server's decrypted stream), a seek moves
every video to the chosen session time (A into its second segment), and the access is in the
ledger with the reason and the files it opened.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from recording.keys import MasterKey
from rooms.ledger import SqliteLedgerStore, verify_chain
from rooms.service import ParticipantSpec, SessionService
from tests.e2e.conftest import TEST_TIMEOUT_S, WAIT_S
from tests.integration.recording.segments import record
from tests.support.server_proc import STAFF_PASSWORD, ServerProcess, add_staff

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(TEST_TIMEOUT_S)]

REASON = "复核调解过程 review of the session for case R-9"
PLAYED_LOG = """() => { window.__played = []; document.querySelectorAll('.track').forEach(f => {
  const v = f.querySelector('video'); v.addEventListener('timeupdate', () => { if (v.paused) return;
    window.__played.push([f.dataset.participant, (v.getAttribute('src') || '').split('/').pop(),
                          v.currentTime]); }); }); }"""
# stopped at the end (the range input rounds to its step: its value alone reaches the end early)
AT_END = """() => { const p = document.getElementById('player'); return p.dataset.state === 'paused'
  && parseFloat(document.getElementById('seek').value) >= parseFloat(p.dataset.end); }"""
SEEK = """at => { const s = document.getElementById('seek'); s.value = at;
  s.dispatchEvent(new Event('input')); }"""
VIDEO = "pid => document.querySelector(`.track[data-participant='${pid}'] video`)"


def _recorded(data) -> tuple[str, dict]:
    """A mediation owned by ``staff:wang``: A 0-3 s and 3-6 s, B 0-6 s (media time)."""
    store = SqliteLedgerStore(data / "ledger.sqlite3")
    try:
        service = SessionService(store)
        state = service.create_session(
            "mediation",
            actor="staff:wang",
            title="录像回放 Playback",
            case_number="R-9",
            participants=[
                ParticipantSpec("王调解员", "mediator"),
                ParticipantSpec("张三", "party", "A"),
                ParticipantSpec("李四", "party", "B"),
            ],
        )
        ids = {p.side or "M": p.id for p in state.participants.values()}
        root, master = data / "recordings", MasterKey.load(data)
        for who, index, start, seconds in (
            ("A", 0, 0.0, 3.0),
            ("A", 1, 3.0, 3.0),
            ("B", 0, 0.0, 6.0),
        ):
            record(service, root, master, state.id, ids[who], index, start=start, seconds=seconds)
    finally:
        store.close()
    return state.id, ids


def _video(page, pid: str) -> dict:
    return page.evaluate(
        f"pid => {{ const v = ({VIDEO})(pid); return {{src: v.getAttribute('src') || '', "
        "t: v.currentTime, paused: v.paused, ready: v.readyState, error: v.error && v.error.code,"
        " buffered: Array.from({length: v.buffered.length}, (_, i) => [v.buffered.start(i),"
        " v.buffered.end(i)]), duration: v.duration, seeking: v.seeking}; }",
        pid,
    )


def _wait_video(page, pid: str, condition: str) -> dict:
    """Wait until ``condition`` (JS over ``v``, the person's <video>) holds; its state then (or,
    if it never does, an assertion naming the state it stayed in)."""
    try:
        page.wait_for_function(
            f"pid => {{ const v = ({VIDEO})(pid); return !!v && ({condition}); }}", arg=pid
        )
    except PlaywrightTimeout:
        raise AssertionError((condition, _video(page, pid))) from None
    return _video(page, pid)


def test_segments_play_seek_works_and_the_access_is_logged(tmp_path, launch, new_page):
    data = tmp_path / "data"
    add_staff(data)
    session, ids = _recorded(data)
    server = ServerProcess(data, "--no-demo").start_quiet(timeout=WAIT_S)
    try:
        page = new_page(launch())
        page.goto(server.url + "/login")
        page.fill("input[name=username]", "wang")
        page.fill("input[name=password]", STAFF_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/console")
        # the console links the recorded session's review page
        page.goto(f"{server.url}/console/sessions/{session}")
        page.click("#review")
        page.wait_for_url(f"**/review/{session}")
        # no player without a stated reason: the browser's own check keeps the form
        page.click("#access button[value='play']")
        assert page.url.endswith(f"/review/{session}")
        page.fill("#access input[name=reason]", REASON)
        page.click("#access button[value='play']")
        page.wait_for_selector("#player")

        # play to the end: each person's video plays its segments in turn, from the server's
        # decrypted stream, on the session's clock (logged by the page as it plays: on a loaded
        # machine six seconds can pass between two looks)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))  # the player's own script errors
        page.evaluate(PLAYED_LOG)
        page.click("#toggle")
        page.wait_for_function(AT_END)
        played = page.evaluate("() => window.__played")
        for who, file, start, end in (("A", 0, 0, 3), ("A", 1, 3, 6), ("B", 0, 0, 6)):
            times = [
                t for pid, f, t in played if pid == ids[who] and f == f"{ids[who]}-{file:06d}.seg"
            ]
            assert times and max(times) - min(times) > 0.5, (who, file, played)
            assert start - 0.35 <= min(times) and max(times) <= end + 0.35, (who, file, times)

        # paused at the end: a seek moves every video to the chosen session time, switching
        # A's segment (Chromium keeps the WebM's media time; a browser that starts it at 0
        # would be placed as well: review.js reads which)
        for at, a_file in (("1", 0), ("4.5", 1)):
            page.evaluate(SEEK, at)
            t = float(at)
            a = _wait_video(
                page,
                ids["A"],
                f"(v.getAttribute('src') || '').endsWith('{ids['A']}-{a_file:06d}.seg')"
                " && v.readyState >= 2 && !v.seeking && v.paused"
                f" && Math.min(Math.abs(v.currentTime - {t}), Math.abs(v.currentTime - {t - 3 * a_file})) < 0.35",
            )
            b = _wait_video(
                page,
                ids["B"],
                f"v.readyState >= 2 && !v.seeking && Math.abs(v.currentTime - {t}) < 0.35",
            )
            assert a["error"] is None and b["error"] is None, (a, b)
            assert page.inner_text("#time") == f"0:00:0{int(t)}"
        assert errors == []
    finally:
        server.stop()

    store = SqliteLedgerStore(data / "ledger.sqlite3")
    try:
        events = store.read(session)
    finally:
        store.close()
    assert verify_chain(events) == []
    [access] = [e for e in events if e.type == "recording.accessed"]
    assert access.actor == "staff:wang"
    assert access.data["action"] == "play" and access.data["reason"] == REASON
    assert access.data["grant"] == "mediator"
    assert sorted(access.data["files"]) == sorted(
        [f"{ids['A']}-000000.seg", f"{ids['A']}-000001.seg", f"{ids['B']}-000000.seg"]
    )
