"""/verify opened from a link that names the organisation root (``#root=<sha256>``, as the
invitation does) has the fingerprint filled in; the fragment never reaches the server."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TEST_TIMEOUT_S, WAIT_S
from tests.support.server_proc import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(TEST_TIMEOUT_S)]
ROOT_FP = "0f" * 32


def test_the_root_from_the_link_is_filled_in(tmp_path, launch, new_page):
    server = ServerProcess(tmp_path / "data", "--no-demo").start_quiet(timeout=WAIT_S)
    try:
        page = new_page(launch())
        asked = []
        page.on("request", lambda r: asked.append(r.url))
        page.goto(f"{server.url}/verify#root={ROOT_FP.upper()}")
        page.wait_for_function(
            "v => document.getElementById('verify-root').value === v", arg=ROOT_FP
        )
        assert not any(ROOT_FP in url.lower() for url in asked), asked
        page.goto(f"{server.url}/verify")  # no fragment: nothing filled in
        assert page.input_value("#verify-root") == ""
    finally:
        server.stop()
