"""The same link on a second device, a camera the browser refuses, and errors in plain words, as
a party meets them on a phone (390×844, and 360 px for sideways scrolling), in zh and en.

A second device asks "use here?" before it takes over; taking over stops the first device, which
says why, and the party waits in the waiting room to be admitted again. A refused camera shows
help for the person's platform and a Retry button that works once allowed; with no camera at
all the page says it joins with audio only. A refused link says what to do next, never a code.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TEST_TIMEOUT_S, WAIT_S
from tests.e2e.flows import UNCOVERED, join
from tests.e2e.test_call_leave_mute import NARROW, PHONE, no_overflow, set_lang
from tests.support.server_proc import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]

# getUserMedia refuses what window.__deny names ('all' or 'video'), like a browser the person
# told "block"; clearing it is the person allowing it in the settings.
DENY = """(() => { window.__deny = 'all'; const md = navigator.mediaDevices;
  const orig = md.getUserMedia.bind(md);
  md.getUserMedia = (c) => (window.__deny === 'all' || (window.__deny === 'video' && c.video))
    ? Promise.reject(new DOMException('Permission denied', 'NotAllowedError')) : orig(c); })();"""


def to_device_check(page, url) -> None:
    """A party's arrival up to the device check: open the link, confirm the name, consent."""
    page.goto(url)
    page.click("#btn-confirm:not([disabled])")
    for box in page.query_selector_all("#consent-list input"):
        box.check()
    page.click("#btn-consent:not([disabled])")


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path / "data").start(timeout=WAIT_S)
    yield srv
    srv.stop()


# Known flaky inside the full suite (1 of 2 full runs on 2026-12-01, final CI clone at 5ef8753:
# the mediator's page never reached the call screen within 120 s on a fresh server; it passed in
# the other run and alone). Cause not found yet; one rerun, reported in the closing note.
@pytest.mark.flaky(reruns=1)
def test_a_second_device_asks_then_takes_over(server, launch, new_page):
    browser = launch()
    mediator, first, second = new_page(browser), new_page(browser), new_page(browser)
    for page in (first, second):
        page.set_viewport_size(PHONE)
    join(mediator, server.links["mediator"][0], consents=False)
    join(first, server.links["party"][0])
    pid = first.evaluate("() => window.parley.me")
    mediator.click(f'#people li[data-participant="{pid}"] button[data-action="admit"]')
    first.wait_for_selector("#waiting", state="hidden")

    second.set_viewport_size(NARROW)
    second.goto(server.links["party"][0])
    second.wait_for_selector("#screen-inuse:not([hidden])")
    no_overflow(second, "use here?")
    for lang, question in (("zh", "在此设备上继续"), ("en", "Use here")):
        set_lang(second, lang)
        assert second.inner_text("#btn-use-here") == question
    assert second.evaluate(UNCOVERED, "#btn-use-here") == "ok"
    assert first.evaluate("() => window.parley.socket.connected")  # nothing happened yet

    second.click("#btn-use-here")
    first.wait_for_selector("#screen-end:not([hidden])")
    lang = first.evaluate("() => i18n.lang")
    title = {"zh": "已在另一台设备上继续", "en": "Continued on another device"}[lang]
    assert first.inner_text("#end-title") == title
    assert first.evaluate(UNCOVERED, "#btn-rejoin") == "ok"
    join(second, None, consents=False)
    second.wait_for_selector("#waiting:not([hidden])")  # re-admission needed
    mediator.wait_for_selector(f'#people li[data-participant="{pid}"] button[data-action="admit"]')


def test_a_refused_camera_shows_help_and_retry_works(server, launch, new_page):
    page = new_page(launch())
    page.set_viewport_size(NARROW)
    page.context.add_init_script(DENY)
    to_device_check(page, server.links["party"][0])
    page.wait_for_selector("#cam-help:not([hidden])")
    no_overflow(page, "camera refused")
    for lang, words in (("zh", "电脑"), ("en", "Computer")):  # headless Chromium: a desktop
        set_lang(page, lang)
        assert words in page.inner_text("#cam-help-platform")
    assert page.is_disabled("#btn-join")
    assert page.evaluate(UNCOVERED, "#btn-retry") == "ok"

    page.evaluate("() => { window.__deny = 'video'; }")  # microphone allowed, camera still not
    page.click("#btn-retry")
    page.wait_for_selector("#audio-only-note:not([hidden])")
    assert "audio only" in page.inner_text("#audio-only-note")
    page.evaluate("() => { window.__deny = ''; }")  # now both
    page.click("#btn-retry")
    page.wait_for_selector("#cam-help", state="hidden")
    page.wait_for_selector("#audio-only-note", state="hidden")
    page.wait_for_function("() => document.getElementById('preview').videoWidth > 0")
    page.click("#btn-join:not([disabled])")
    page.wait_for_selector("#waiting:not([hidden])")


def test_a_refused_link_says_what_to_do(server, launch, new_page):
    """The session ended: opening the link again says so, and what to do, in plain words."""
    browser = launch()
    mediator, page = new_page(browser), new_page(browser)
    page.set_viewport_size(NARROW)
    join(mediator, server.links["mediator"][0], consents=False)
    join(page, server.links["party"][0])
    mediator.evaluate("() => window.parley.command({type: 'end_session', reason: 'done'})")
    page.wait_for_selector("#screen-end:not([hidden])")
    page.reload()
    page.wait_for_selector("#screen-end:not([hidden]) #end-text:not(:empty)")
    no_overflow(page, "refused link")
    for lang, title, sentence in (
        ("zh", "调解已结束", "此链接不能再进入"),
        ("en", "The mediation has ended", "the link no longer opens it"),
    ):
        set_lang(page, lang)
        page.wait_for_function(
            "t => document.getElementById('end-title').textContent === t", arg=title
        )
        page.wait_for_function(
            "t => document.getElementById('end-text').textContent.includes(t)", arg=sentence
        )
        text = page.inner_text("#screen-end")
        assert "session_ended" not in text and "出错了" not in text and "Error" not in text, text


# Where the Join button is, with the preview showing the camera and with it empty (as before the
# camera's first frame): the same box, or a tap aimed at the enabled button can land elsewhere.
JOIN_BOX = """async (withCamera) => { const v = document.getElementById('preview');
  if (!withCamera) { v.dataset.kept = '1'; window.__kept = v.srcObject; v.srcObject = null; }
  else if (window.__kept) v.srcObject = window.__kept;
  const t0 = performance.now();  // wait for the element's size to follow (a frame or two)
  while ((withCamera ? v.videoWidth === 0 : v.videoWidth !== 0) && performance.now() - t0 < 10000)
    await new Promise(r => requestAnimationFrame(r));
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const r = document.getElementById('btn-join').getBoundingClientRect();
  return [v.videoWidth, Math.round(r.x), Math.round(r.y), Math.round(r.width), Math.round(r.height)]; }"""


@pytest.mark.parametrize("viewport", [PHONE, NARROW], ids=["phone", "narrow"])
def test_join_does_not_move_when_the_camera_picture_arrives(server, launch, new_page, viewport):
    page = new_page(launch())
    page.set_viewport_size(viewport)
    to_device_check(page, server.links["party"][0])
    page.wait_for_selector("#btn-join:not([disabled])")
    width, *with_camera = page.evaluate(JOIN_BOX, True)
    assert width > 0, "the preview never showed the camera"
    blank, *without = page.evaluate(JOIN_BOX, False)
    assert blank == 0
    assert with_camera == without, (
        f"Join moved: {without} without the picture, {with_camera} with it"
    )
    assert page.evaluate(UNCOVERED, "#btn-join") == "ok"
    page.evaluate(JOIN_BOX, True)
    page.click("#btn-join:not([disabled])")
    page.wait_for_selector("#waiting:not([hidden])")
