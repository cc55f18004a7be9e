"""What a person does in the pages, shared by the end-to-end tests.

No timeouts here: every wait uses the page's default, ``WAIT_MS`` (tests/e2e/conftest.py)."""

from __future__ import annotations

from tests.support.server_proc import STAFF_PASSWORD

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 800}

# "ok" when the element is in the viewport and is what a tap on its centre would hit
UNCOVERED = """sel => { const el = document.querySelector(sel); if (!el) return 'missing';
  const r = el.getBoundingClientRect(); if (r.width < 1 || r.height < 1) return 'not rendered';
  if (r.left < 0 || r.top < 0 || r.right > innerWidth || r.bottom > innerHeight)
    return `outside the viewport: ${JSON.stringify(r)}`;
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return el.contains(hit) ? 'ok' : 'covered by ' + (hit ? hit.outerHTML.slice(0, 80) : 'nothing'); }"""


def set_lang(page, lang: str) -> None:
    if page.evaluate("() => i18n.lang") != lang:
        page.click("#lang")
    page.wait_for_function("l => i18n.lang === l", arg=lang)


def join(page, url, *, consents=True):
    """The arrival flow: confirm the name, consent (parties), device check, join."""
    if url:
        page.goto(url)
    page.click("#btn-confirm:not([disabled])")
    if consents:
        page.wait_for_selector("#screen-consent:not([hidden])")
        for box in page.query_selector_all("#consent-list input"):
            box.check()
        page.click("#btn-consent:not([disabled])")
    page.click("#btn-join:not([disabled])")
    page.wait_for_selector("#screen-call:not([hidden])")


def open_case(med, server, *, case_number: str, title: str, parties=("张三", "李四")) -> list[str]:
    """Console: log in as ``wang``, create the case with these parties, enter as the mediator.
    Returns each party's invitation link, in order."""
    med.goto(server.url + "/login")
    med.fill("input[name=username]", "wang")
    med.fill("input[name=password]", STAFF_PASSWORD)
    med.click("button[type=submit]")
    med.wait_for_url("**/console")
    med.fill("input[name=case_number]", case_number)
    med.fill("input[name=title]", title)
    for i, name in enumerate(parties):
        med.fill(f"input[name=name{i}]", name)
    med.click("form[action='/console/sessions'] button[type=submit]")
    med.wait_for_selector("#enter")
    links = [med.get_attribute(f".invite:has(h3:text-is('{n}')) .url a", "href") for n in parties]
    med.click("#enter")
    join(med, None, consents=False)
    return links


# -- the agreement: shared by the signing tests (test_agreement_signing, test_signing_screen,
# test_screenshots) ------------------------------------------------------------------------------

TERMS = ["李四于2026年12月31日前向张三支付人民币5000元。", "双方就本纠纷再无其他争议。"]
ERRORS: list[str] = []  # uncaught page errors of every watched page; a test clears it first


def watched(page):
    """Accept the page's confirm() dialogs; collect its uncaught errors in ``ERRORS``."""
    page.on("dialog", lambda d: d.accept())
    page.on("pageerror", lambda e: ERRORS.append(str(e)))
    return page


def agreement(page) -> dict:
    """The agreement as the session shows it to this page."""
    return page.evaluate("() => window.parley.view.agreement")


def admit_verified(med, page) -> str:
    """The mediator admits this party's page and marks its identity checked; its id."""
    pid = page.evaluate("() => window.parley.me")
    row = f'#people li[data-participant="{pid}"]'
    med.click(f'{row} button[data-action="admit"]')
    med.click(f'{row} button[data-action="identity"]')
    med.wait_for_selector(f"{row} >> text=✔ID")
    return pid


def signing_case(browser, new_page, server, *, parties=2, viewport=None, lang=None, links=None):
    """Console case (two parties), the mediator inside, the first ``parties`` party pages joined,
    admitted and ID-checked. ``links`` may rewrite each invitation link before it is opened
    (e.g. drop its ``#root=`` fragment). Returns (mediator page, party pages, links)."""
    med = watched(new_page(browser))
    urls = open_case(med, server, case_number="(2026)京0105民调77号", title="借款纠纷 Loan dispute")
    if links:
        urls = [links(i, url) for i, url in enumerate(urls)]
    pages = []
    for url in urls[:parties]:
        page = watched(new_page(browser))
        if viewport:
            page.set_viewport_size(viewport)
        if lang:
            page.add_init_script(f"localStorage.setItem('parley.lang', '{lang}')")
        join(page, url)
        admit_verified(med, page)
        pages.append(page)
    return med, pages, urls


def draft(med, terms=TERMS) -> None:
    """The mediator drafts a debt agreement in Chinese with these terms."""
    med.select_option("#ag-case-type", "debt")
    med.select_option("#ag-language", "zh-CN")
    med.fill("#ag-terms", "\n".join(terms))
    med.click("#ag-save")


def freeze(med, pages) -> str:
    """Freeze; wait until every page shows the PDF's check code; the fingerprint."""
    med.click("#ag-freeze")
    for page in (med, *pages):
        page.wait_for_selector("#ag-check-code[data-code]")
    return agreement(med)["fingerprint"]


def sign(page, fingerprint: str) -> None:
    """The signer's turn: Sign now, every check passes, read, confirm, receipt."""
    page.click("#ag-sign-now:not([hidden]):not([disabled])")
    page.wait_for_selector("#ag-confirm:not([disabled])")
    assert page.is_visible("#ag-review-pages canvas")
    assert fingerprint[:8] in page.inner_text("#ag-review-fingerprint")
    page.click("#ag-confirm")
    page.wait_for_selector("#ag-receipt:not([hidden])")


def refusal(page) -> str:
    """Sign now, and the page refuses: nothing to confirm; the sentence it shows."""
    page.click("#ag-sign-now:not([hidden]):not([disabled])")
    page.wait_for_selector("#ag-sign-step[data-refused='1']")
    assert page.is_disabled("#ag-confirm") and page.is_hidden("#ag-review")
    return page.inner_text("#ag-sign-step")
