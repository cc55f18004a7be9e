"""The redirect as a person lives it, in headless Chromium (docs/scaling.md, "Routing:
redirect"): two real nodes on one real redis-server, the demo mediation served by node A.

The party's link is opened on node B: B answers ``redirect``, the page opens the same link on
A, the party joins, is admitted, and plays the mediator's video and audio. Then A is SIGKILLed:
both pages stop reaching A, open their link on B (named in A's welcome), wait while B takes the
session over (``session_moving``) and go back into the call by themselves (``#resume``), where
each plays the other's media again. And a node that stalls past its lease: when it runs again
it closes its pages' sockets, and they reconnect and are redirected to the node that took the
session. The pages' own code does all of it (web/static/app.js)."""

from __future__ import annotations

import signal
import time

import pytest

from tests.e2e.conftest import (  # noqa: F401 - fixtures
    TEST_TIMEOUT_S,
    WAIT_S,
    launch,
    new_page,
    pw,
    wait_stat,
)
from tests.e2e.flows import join
from tests.integration.cluster.test_redirect import nodes  # noqa: F401 - fixture
from tests.support.redisd import redis_server  # noqa: F401 - fixture
from tests.support.server_proc import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(TEST_TIMEOUT_S)]


def in_call_on(page, base: str) -> None:
    """The page is at ``base``, on the call screen, with media from the other person."""
    page.wait_for_url(f"{base}/j/**")
    page.wait_for_selector("#screen-call:not([hidden])")
    page.wait_for_function(
        "() => window.parley.socket.connected && "
        "(window.__pcs.at(-1) || {}).connectionState === 'connected'"
    )
    wait_stat(page, "video")
    wait_stat(page, "audio")


def test_a_page_opened_on_the_wrong_node_plays_the_call_and_follows_it_after_a_kill(
    nodes,  # noqa: F811
    launch,  # noqa: F811
    new_page,  # noqa: F811
):
    a = nodes("a")
    b = nodes("b", "--no-demo")
    mediator = new_page(launch(440))
    party = new_page(launch(1000))
    join(mediator, a.links["mediator"][0], consents=False)

    party_link = a.links["party"][0].replace(a.url, b.url)  # the link, opened on B
    root = "ab" * 32  # the signing root a console's invitation carries: it must survive the moves
    party.goto(party_link.split("#")[0] + f"#root={root}")
    party.wait_for_url(f"{a.url}/j/**")  # B redirected it to A
    join(party, None)
    party_id = party.evaluate("() => window.parley.me")
    mediator.click(f'#people li[data-participant="{party_id}"] button[data-action="admit"]')
    party.wait_for_selector("#waiting", state="hidden")
    for page in (mediator, party):
        in_call_on(page, a.url)
    assert party.evaluate("() => window.parley.nodes") == [b.url]

    started = time.monotonic()
    a.stop(sig_kill=True)
    for page in (mediator, party):
        in_call_on(page, b.url)  # moved to B by themselves, back in the call
    print(
        f"\nafter SIGKILL of A: both pages back in the call on B, {time.monotonic() - started:.1f} s"
    )
    # the moves are forgotten once served; the signing root stays
    assert party.url.endswith(f"#root={root}") and "hops" not in party.url, party.url


def call_on_a(start_node, start_browser, open_page):
    """Nodes A and B; a mediator (440 Hz) and an admitted party (1000 Hz) in the call on A."""
    a = start_node("a")
    b = start_node("b", "--no-demo")
    mediator = open_page(start_browser(440))
    party = open_page(start_browser(1000))
    join(mediator, a.links["mediator"][0], consents=False)
    join(party, a.links["party"][0])
    party_id = party.evaluate("() => window.parley.me")
    mediator.click(f'#people li[data-participant="{party_id}"] button[data-action="admit"]')
    party.wait_for_selector("#waiting", state="hidden")
    for page in (mediator, party):
        in_call_on(page, a.url)
    return a, b, mediator, party


def test_the_pages_of_a_stalled_node_follow_the_session_to_the_node_that_took_it(
    nodes,  # noqa: F811
    launch,  # noqa: F811
    new_page,  # noqa: F811
):
    """Node A stops (SIGSTOP) for longer than the lease: B takes the session over. When A runs
    again it finds its lease lost and closes the pages' sockets without an error; the pages
    connect again, A answers ``redirect`` to B, and they are back in the call there."""
    a, b, mediator, party = call_on_a(nodes, launch, new_page)

    a.proc.send_signal(signal.SIGSTOP)
    try:
        assert wait_until(lambda: any("session taken over" in x for x in b.lines), WAIT_S)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    for page in (mediator, party):
        in_call_on(page, b.url)
    assert a.proc.poll() is None  # A lives on, without the session


def test_the_pages_of_a_draining_node_follow_the_session_to_the_other_node(
    nodes,  # noqa: F811
    launch,  # noqa: F811
    new_page,  # noqa: F811
):
    """SIGTERM on node A (drain deadline 0, docs/scaling.md "Drain on SIGTERM"): A hands the
    session to B, then closes the pages' sockets without an error; the pages connect to A
    again, are redirected to B, and are back in the call there. A exits 0."""
    a, b, mediator, party = call_on_a(nodes, launch, new_page)

    started = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    for page in (mediator, party):
        in_call_on(page, b.url)
    print(
        f"\nafter SIGTERM of A: both pages back in the call on B, {time.monotonic() - started:.1f} s"
    )
    assert a.proc.wait(WAIT_S) == 0
    assert any("sessions adopted" in x for x in a.lines), a.lines[-30:]
