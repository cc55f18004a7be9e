"""Which paths the other workers send to the live visits' worker (signaling/visits_home.py):
the pages that read or act on a live visit; nothing served from the shared database."""

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from signaling.visits_home import LIVE_PATHS, visits_home

SENT = [
    "/kiosk",
    "/kiosk/state",
    "/kiosk/statement",
    "/kiosk/statement/ABC123",
    "/kiosk/statement/ABC123/qr.svg",
    "/visits/live/s-1/watch",
    "/visits/live/s-1/warn",
    "/visits/live/s-1/mute",
    "/visits/live/s-1/end",
    "/visits/sites/prison-1/live",
    "/visits/sites/prison-1/live.json",
    "/visits/sites/prison-1/grid/offer",
    "/visits/test/clock",
]
KEPT = [
    "/",
    "/family",
    "/visits",
    "/visits/import",
    "/visits/sites/prison-1",
    "/visits/sites/prison-1/book",
    "/visits/sites/prison-1/bookings",
    "/visits/sites/prison-1/directory",
    "/visits/sites/prison-1/livestock",
    "/visits/sites/prison-1/meals/orders",
    "/visits/bookings/b-1/checkin",
    "/visits/live",
    "/kiosks",
    "/console/kiosk",
    "/j/token",
]


@pytest.mark.parametrize("path", SENT)
def test_the_live_visits_pages_are_sent(path):
    assert LIVE_PATHS.fullmatch(path)


@pytest.mark.parametrize("path", KEPT)
def test_everything_else_is_served_where_it_lands(path):
    assert not LIVE_PATHS.fullmatch(path)


async def test_the_redirect_keeps_the_path_the_query_and_the_method():
    middleware = visits_home("https://host:8445/")

    async def handler(request):
        return web.Response(text="here")

    request = make_mocked_request("POST", "/visits/sites/p/live.json?since=3&q=a%20b")
    with pytest.raises(web.HTTPTemporaryRedirect) as sent:
        await middleware(request, handler)
    assert sent.value.status == 307  # a browser repeats a POST with its body
    assert sent.value.location == "https://host:8445/visits/sites/p/live.json?since=3&q=a%20b"
    kept = await middleware(make_mocked_request("GET", "/visits/sites/p"), handler)
    assert kept.text == "here"
