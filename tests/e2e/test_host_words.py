"""The mediator's panel speaks the mediator's language, in zh and en, at 390×844 and 1366×800.

Buttons are verbs (核验身份, not 已核验身份); nobody sees a raw id (``joint``, ``caucus:a``, a side
letter alone, ``p-…``): the joint session, the applicant's and respondent's private rooms and
people by name. Removing someone and ending the session are red and ask first, naming who and
what follows, in the page's language. When someone arrives in the waiting room the page plays a
beep (WebAudio) and a badge on screen counts the people waiting.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import TEST_TIMEOUT_S
from tests.e2e.flows import DESKTOP, PHONE, UNCOVERED, join, open_case, set_lang

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]


# Every oscillator the page starts: its frequency and whether its context is running (audible).
BEEPS = """(() => { window.__beeps = []; const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...a) {
    window.__beeps.push({freq: this.frequency.value, state: this.context.state});
    return start.apply(this, a); }; })();"""

RAW = re.compile(r"\bjoint\b|caucus:|\bp-[0-9a-f]{4}|(^|\s)[AB](\s|$)|→ [ab]\b|\ba / b\b")


def panel_text(page) -> str:
    return page.evaluate(
        """() => { const el = document.getElementById('host-panel');
          const ph = [...el.querySelectorAll('input,select')].map(i => i.placeholder || '');
          return el.innerText + '\\n' + ph.join('\\n'); }"""
    )


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_waiting_room_arrival_beeps_and_the_badge_counts(console_server, launch, new_page, size):
    browser = launch()
    med = new_page(browser)
    med.context.add_init_script(BEEPS)
    med.set_viewport_size(size)
    links = open_case(
        med, console_server, case_number=f"(2026)京民调{size['width']}号", title="借款"
    )
    assert med.is_hidden("#waiting-badge")
    parties = []
    for n, link in enumerate(links, start=1):
        party = new_page(browser)
        join(party, link)
        parties.append(party)
        med.wait_for_selector(f"#waiting-badge[data-count='{n}']:not([hidden])")
        assert med.evaluate(UNCOVERED, "#waiting-badge") == "ok"
        assert str(n) in med.inner_text("#waiting-badge")
        beeps = med.wait_for_function(f"() => window.__beeps.length >= {n} && window.__beeps")
        assert all(b["state"] == "running" and b["freq"] > 200 for b in beeps.json_value())
    # the badge takes the mediator to the people waiting; admitting empties it
    med.click("#waiting-badge")
    pid = parties[0].evaluate("() => window.parley.me")
    med.click(f'#people li[data-participant="{pid}"] button[data-action="admit"]')
    med.wait_for_selector("#waiting-badge[data-count='1']")
    pid = parties[1].evaluate("() => window.parley.me")
    med.click(f'#people li[data-participant="{pid}"] button[data-action="admit"]')
    med.wait_for_selector("#waiting-badge", state="hidden")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_verbs_names_no_raw_ids_and_dangerous_actions_confirm(
    console_server, launch, new_page, lang
):
    browser = launch()
    med = new_page(browser)
    med.set_viewport_size(PHONE)
    links = open_case(med, console_server, case_number=f"(2026)京民调{lang}号", title="租赁")
    set_lang(med, lang)
    pages = []
    for link in links:
        party = new_page(browser)
        join(party, link)
        pages.append(party)
    a_id, b_id = (p.evaluate("() => window.parley.me") for p in pages)
    row_a = f'#people li[data-participant="{a_id}"]'
    row_b = f'#people li[data-participant="{b_id}"]'
    med.click(f'{row_a} button[data-action="admit"]')
    med.wait_for_selector(f'{row_a} button[data-action="to-waiting"]')
    words = {
        "zh": {
            "identity": "核验身份",
            "admit": "准许进入",
            "remove": "移出",
            "A": "申请方",
            "B": "被申请方",
            "joint": "联合会谈",
            "room_a": "申请方单独会谈室",
        },
        "en": {
            "identity": "Verify ID",
            "admit": "Admit",
            "remove": "Remove",
            "A": "Applicant (side A)",
            "B": "Respondent (side B)",
            "joint": "Joint session",
            "room_a": "Applicant's private room",
        },
    }[lang]
    assert med.inner_text(f'{row_a} button[data-action="identity"]') == words["identity"]
    assert med.inner_text(f'{row_b} button[data-action="admit"]') == words["admit"]
    assert words["A"] in med.inner_text(row_a) and words["joint"] in med.inner_text(row_a)
    assert words["B"] in med.inner_text(row_b)
    assert "张三" in med.inner_text(row_a)

    med.fill("#caucus-name", "a")
    med.click("#form-caucus button")
    med.wait_for_selector('#caucuses li[data-caucus="a"]')
    assert words["room_a"] in med.inner_text('#caucuses li[data-caucus="a"]')
    med.click('#caucuses li[data-caucus="a"] button[data-action="move-side-A"]')
    med.wait_for_function(
        "([sel, w]) => document.querySelector(sel).innerText.includes(w)",
        arg=[row_a, words["room_a"]],
    )
    text = panel_text(med)
    assert not RAW.search(text), RAW.search(text).group(0) + "\n" + text
    # the duty lawyer's room is chosen by name, not typed as an id
    options = med.eval_on_selector_all("#lawyer-space option", "os => os.map(o => o.textContent)")
    assert words["joint"] in options and words["room_a"] in options, options

    # Dangerous: red, and asked first in the page's language, naming the person.
    remove = f'{row_b} button[data-action="remove"]'
    assert "danger" in med.get_attribute(remove, "class")
    assert "danger" in med.get_attribute("#btn-end", "class")
    asked = []

    def dismiss(d):
        asked.append(d.message)
        d.dismiss()

    med.once("dialog", dismiss)
    med.click(remove)
    med.wait_for_function("() => true")
    assert asked and "李四" in asked[0], asked
    assert ("确定" in asked[0]) == (lang == "zh") and ("Remove" in asked[0]) == (lang == "en")
    assert med.is_visible(row_b)  # dismissed: nothing happened
    med.once("dialog", dismiss)
    med.click("#btn-end")
    assert len(asked) == 2 and (("结束" in asked[1]) if lang == "zh" else ("End" in asked[1]))
    assert pages[0].is_visible("#screen-call")


def test_the_admit_button_stays_the_same_button_while_the_panel_renders(
    console_server, launch, new_page
):
    """The panel renders every second and on every state update. A button rebuilt by a render
    loses a tap that lands during it (the press and the release hit two different buttons), so
    an unchanged row keeps its buttons: the same element before and after another party
    arrives and several renders have passed."""
    browser = launch()
    med = new_page(browser)
    med.set_viewport_size(PHONE)
    links = open_case(med, console_server, case_number="(2026)京民调keep号", title="租赁")
    first = new_page(browser)
    join(first, links[0])
    a_id = first.evaluate("() => window.parley.me")
    admit_a = f'#people li[data-participant="{a_id}"] button[data-action="admit"]'
    med.wait_for_selector(admit_a)
    med.evaluate("sel => { document.querySelector(sel).keptMark = 'yes'; }", admit_a)
    med.evaluate("() => { window.__renders = 0; setInterval(() => window.__renders++, 1000); }")
    second = new_page(browser)
    join(second, links[1])
    b_id = second.evaluate("() => window.parley.me")
    med.wait_for_selector(f'#people li[data-participant="{b_id}"] button[data-action="admit"]')
    med.wait_for_function("() => window.__renders >= 2")  # the panel's own 1 s renders too
    assert med.evaluate("sel => document.querySelector(sel).keptMark", admit_a) == "yes"
    med.click(admit_a)
    med.wait_for_selector(f'#people li[data-participant="{a_id}"] button[data-action="to-waiting"]')
