"""What a person does in the pages, shared by the end-to-end tests.

No timeouts here: every wait uses the page's default, ``WAIT_MS`` (tests/e2e/conftest.py)."""

from __future__ import annotations

from tests.support.server_proc import STAFF_PASSWORD


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
