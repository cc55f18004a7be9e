"""With several workers (docs/scaling.md, "Workers"), the live visits have one home.

Only one worker runs the live-visits clock (signaling/visits_live.py): it opens each booking's
session, so it holds every live visit in memory, and the pages that read or act on a live visit
(the terminals' kiosk, the officer's console, its grid and watch page, warn, mute, end, the
lawyer's statement at the kiosk) only work there. On every other worker those paths answer 307
to the same path on that worker's own URL: the browser follows it (a form's POST keeps its
method and body), and the login and terminal cookies go with it (a cookie names a host, not a
port). Everything else (bookings, the directory, check-in, meals, the records) is in the shared
visits database and is served where the request lands."""

from __future__ import annotations

import re

from aiohttp import web

LIVE_PATHS = re.compile(
    r"/kiosk(/.*)?"
    r"|/visits/live/[^/]+/[^/]+"
    r"|/visits/sites/[^/]+/(live|live\.json|grid/offer)"
    r"|/visits/test/clock"
)


def visits_home(home_url: str):
    """A middleware sending the live visits' paths to ``home_url`` (the clock's worker)."""
    home = home_url.rstrip("/")

    @web.middleware
    async def middleware(request: web.Request, handler):
        if LIVE_PATHS.fullmatch(request.path):
            raise web.HTTPTemporaryRedirect(home + request.path_qs)
        return await handler(request)

    return middleware
