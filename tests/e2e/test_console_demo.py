"""The demo as someone trying Parley lives it: ``serve`` prints a demo mediator login (a staff
account it creates when there is none, with a random password shown once); with it the mediator
logs in, finds the demo case in the console, enters it with the staff login the e-signature
needs, and reaches the agreement step. A second start prints no password again."""

from __future__ import annotations

import base64
import json
import re

import pytest

from tests.e2e.conftest import TEST_TIMEOUT_S, WAIT_S
from tests.e2e.flows import join
from tests.support.server_proc import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]
LOGIN = re.compile(r"username:\s*(\S+)\s+password:\s*(\S+)")


def claims(url: str) -> dict:
    body = url.rsplit("/", 1)[1].split(".")[0]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_demo_mediator_logs_in_with_what_serve_printed(tmp_path, launch, new_page):
    data = tmp_path / "data"
    server = ServerProcess(data).start(timeout=WAIT_S)
    try:
        found = LOGIN.search(server.output())
        assert found, server.output()
        username, password = found.groups()
        assert f"{server.url.split(':')[-1]}/login" in server.output()

        med = new_page(launch())
        med.set_viewport_size({"width": 1366, "height": 800})
        med.goto(server.url + "/login")
        med.fill("input[name=username]", username)
        med.fill("input[name=password]", password)
        med.click("button[type=submit]")
        med.wait_for_url("**/console")
        med.click("table.list a:has-text('演示调解')")
        med.wait_for_selector("#enter")
        assert "DEMO-0001" in med.inner_text("main")
        med.click("#enter")
        med.wait_for_selector("#btn-confirm:not([disabled])")
        assert claims(med.url).get("staff") == username  # what the mediator's signature needs
        join(med, None, consents=False)
        med.wait_for_selector("#agreement-panel:not([hidden]) #ag-editor:not([hidden])")
        assert med.is_visible("#ag-freeze")
    finally:
        server.stop()

    again = ServerProcess(data).start(timeout=WAIT_S)  # the password is shown once only
    try:
        assert not LOGIN.search(again.output())
        assert "demo" in again.output()
    finally:
        again.stop()
