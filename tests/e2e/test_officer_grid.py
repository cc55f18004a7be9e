"""The officer's grid in headless Chromium: a live visit between two kiosks, the officer's
grid page shows both ends' link (rated, figures on hover) and a keyframe thumbnail of each end:
the page decodes no full-rate video there (a picture every ~2 s per end); the watch page
decodes the two ends at full rate, and nothing else (at most 2 full-rate videos at a time)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TEST_TIMEOUT_S, rising, stat, wait_stat
from tests.e2e.test_visit_kiosk import kiosk, visit  # noqa: F401 - the fixture, reused
from tests.support.server_proc import STAFF_PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]

# framesDecoded per inbound video stream of the page's last connection: {id: frames}
DECODED = """async () => { const pc = (window.__pcs || []).at(-1); const out = {};
  if (pc) (await pc.getStats()).forEach(r => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') out[r.id] = r.framesDecoded || 0; });
  return out; }"""


def decoded_while(page, sender, frames: int) -> dict[str, int]:
    """Frames each inbound video stream of ``page`` decoded while ``sender`` sent ``frames``."""
    before = page.evaluate(DECODED)
    wait_stat(sender, "sent", stat(sender, "sent") + frames)
    after = page.evaluate(DECODED)
    return {k: v - before.get(k, 0) for k, v in after.items()}


def test_the_grid_decodes_thumbnails_and_the_watch_page_two_full_rate_videos(
    visit,  # noqa: F811 - the fixture imported above
    launch,
    new_page,
):
    server, tokens = visit
    family = new_page(launch(440))
    inmate = new_page(launch(1000))
    kiosk(family, server.url, tokens["bx-1"])
    kiosk(inmate, server.url, tokens["pa-1"])
    for page in (family, inmate):
        page.wait_for_function(
            "() => window.parleyKiosk.view && window.parleyKiosk.view.space === 'visit'"
        )
        rising(page, "video")

    officer = new_page(launch())
    officer.goto(server.url + "/login")
    officer.fill("input[name=username]", "off-a")
    officer.fill("input[name=password]", STAFF_PASSWORD)
    officer.click("button[type=submit]")
    officer.wait_for_url("**/visits")
    officer.goto(server.url + "/visits/sites/prison-a/live")
    # both ends rated from the server's figures, the figures on hover
    officer.wait_for_function(
        "() => [...document.querySelectorAll('#live-list .quality')]"
        ".filter((q) => ['good', 'fair', 'poor'].includes(q.dataset.rating)).length === 2"
    )
    title = officer.get_attribute("#live-list li[data-end='family'] .quality", "title")
    assert "RTT" in title and "kbit/s" in title and "往返" in title
    # both thumbnails carry a picture
    officer.wait_for_function(
        "() => [...document.querySelectorAll('video.thumb')]"
        ".filter((v) => v.srcObject && v.videoWidth > 0).length === 2"
    )
    wait_stat(officer, "video", 2)
    # the family sends ~4 s of video: the grid decodes a few keyframes of each end, no stream
    # at full rate; both ends still have a picture
    sent = 60
    grid = decoded_while(officer, family, sent)
    assert sum(grid.values()) >= 1, grid
    assert all(n <= sent // 5 for n in grid.values()), grid  # ~1 in 30 frames, far from all
    full_rate = [k for k, n in grid.items() if n >= sent // 2]
    assert full_rate == [], grid

    # the watch page: the two ends at full rate, and only they
    officer.click("#live-list a[href$='/watch']")
    officer.click("#watch-start")
    officer.wait_for_function(
        "() => document.querySelectorAll('#watch-tiles figure:not([hidden])').length === 2"
    )
    rising(officer, "video", 10)
    watch = decoded_while(officer, family, sent)
    full_rate = [k for k, n in watch.items() if n >= sent // 2]
    assert len(full_rate) == 2, watch
    assert len([n for n in watch.values() if n > 0]) <= 2, watch
