"""A lawyer's (privileged) visit booked at the counter: only with visitors approved as the inmate's
lawyers; a bad kind or a family member on a privileged visit is refused and changes nothing."""

from __future__ import annotations

import re

from tests.integration.visits.conftest import staff_session
from visits.directory import insert_visitor


async def test_privileged_booking_at_the_counter(province):
    p = province
    lawyer = p.directory.add(
        insert_visitor,
        {
            "facility": "prison-a",
            "inmate_number": "A-002",
            "name": "律师 李",
            "relationship": "lawyer",
            "id_number": "LAW87654321",
            "evidence": "LICENCE-2",
            "approved_by": "officer-a",
            "reason": "engaged",
            "expires": "2031-12-31",
        },
    )
    day = p.day()
    http, csrf = await staff_session(p.url, "op")
    async with http:
        q = {"facility": "prison-a", "number": "A-002", "dates": day.isoformat(), "minutes": "30"}
        async with http.get(f"{p.url}/visits/sites/bureau-x/book", params=q) as r:
            html = await r.text()
        assert "name='kind'" in html and "律师会见" in html
        inmate = re.search(r"name='inmate' value='(\d+)'", html).group(1)
        slot = f"{day.isoformat()}T10:00|bx-1|pa-1"

        def form(kind, visitor):
            return [
                ("csrf", csrf),
                ("inmate", inmate),
                ("minutes", "30"),
                ("slot", slot),
                ("lang", "zh"),
                ("kind", kind),
                ("visitor", str(visitor)),
            ]

        url = f"{p.url}/visits/sites/bureau-x/bookings"
        for kind, visitor in (("privileged", p.ids["a2v0"]), ("secret", lawyer)):
            async with http.post(url, data=form(kind, visitor), allow_redirects=False) as r:
                assert r.status == 400 and "data-code='invalid'" in await r.text(), kind
        assert p.count("bookings") == 0
        async with http.post(url, data=form("privileged", lawyer), allow_redirects=False) as r:
            assert r.status == 303, await r.text()
            bid = int(r.headers["Location"].rsplit("#b", 1)[1])
        assert p.res.get(bid).kind == "privileged"
        async with http.get(f"{p.url}/visits/sites/bureau-x?date={day}") as r:
            assert "律师会见 lawyer" in await r.text()
