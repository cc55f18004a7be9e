"""The counter's check-in page over real HTTP (R6): the operator of the booking's bureau checks
each visitor's card against the approved record; a wrong card, a wrong actor and bad input each
answer their code and change nothing."""

from __future__ import annotations

from tests.integration.visits.conftest import approved_booking, id_of, staff_session, visit_now


async def test_operator_checks_in_and_others_are_refused(allday):
    p = allday
    start, minutes = visit_now(p)
    bid = approved_booking(p, start, minutes)
    url = f"{p.url}/visits/bookings/{bid}/checkin"
    op, csrf = await staff_session(p.url, "op")
    async with op:
        async with op.get(f"{p.url}/visits/sites/bureau-x?date={start.date()}") as r:
            assert f"href='/visits/bookings/{bid}/checkin'" in await r.text()
        async with op.get(url) as r:
            html = await r.text()
            assert r.status == 200 and "****0297" in html and id_of("a1", 0) not in html

        def form(**kw):
            return {
                "csrf": csrf,
                "visitor": str(p.ids["a1v0"]),
                "id_number": id_of("a1", 0),
                "method": "id_card",
                "pledge": "yes",
                **kw,
            }

        bad = [
            (form(id_number=id_of("a1", 1)), 409, "identity_mismatch"),
            (form(pledge=""), 400, "invalid"),
            (form(method="guess"), 400, "invalid"),
            (form(visitor="abc"), 400, "invalid"),
            (form(visitor=str(p.ids["b1v0"])), 404, "not_found"),
        ]
        for data, status, code in bad:
            async with op.post(url, data=data, allow_redirects=False) as r:
                assert r.status == status and f"data-code='{code}'" in await r.text(), data
        async with op.post(url, data=form(csrf="forged"), allow_redirects=False) as r:
            assert r.status == 403
        assert p.count("checkins") == 0
        async with op.post(url, data=form(), allow_redirects=False) as r:
            assert r.status == 303
        async with op.get(url) as r:
            assert "✓ 已核验 checked" in await r.text()
        assert p.count("checkins") == 1
        async with op.post(url, data=form(), allow_redirects=False) as r:
            assert r.status == 409  # once per visit
    for other in ("off-a", "off-b", "sup-a"):  # the facility's staff do not check in families
        http, other_csrf = await staff_session(p.url, other)
        async with http:
            async with http.get(url) as r:
                assert r.status == 403, other
            data = {
                "csrf": other_csrf,
                "visitor": str(p.ids["a1v1"]),
                "id_number": id_of("a1", 1),
                "method": "id_card",
                "pledge": "yes",
            }
            async with http.post(url, data=data, allow_redirects=False) as r:
                assert r.status == 403, other
    assert p.count("checkins") == 1
