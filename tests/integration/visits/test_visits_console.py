"""The visitation console over real HTTP: the operator books at the counter, the facility decides,
site scoping refuses everything of another site, bad input answers a code and changes nothing."""

from __future__ import annotations

import re

from tests.integration.visits.conftest import staff_session


async def book(
    http, url, csrf, p, number="A-001", facility="prison-a", hour=10, visitors=("a1v0",)
):
    day = p.day()
    async with http.get(
        f"{url}/visits/sites/bureau-x/book",
        params={"facility": facility, "number": number, "dates": day.isoformat(), "minutes": "30"},
    ) as r:
        assert r.status == 200, await r.text()
        html = await r.text()
    slot = f"{day.isoformat()}T{hour:02d}:00|bx-1|{'pa-1' if facility == 'prison-a' else 'pb-1'}"
    assert f"value='{slot}'" in html
    inmate = re.search(r"name='inmate' value='(\d+)'", html).group(1)
    data = [
        ("csrf", csrf),
        ("inmate", inmate),
        ("minutes", "30"),
        ("slot", slot),
        ("contact", "family@example.org"),
        ("lang", "zh"),
    ]
    data += [("visitor", str(p.ids[v])) for v in visitors]
    async with http.post(
        f"{url}/visits/sites/bureau-x/bookings", data=data, allow_redirects=False
    ) as r:
        assert r.status == 303, await r.text()
        return int(r.headers["Location"].rsplit("#b", 1)[1])


async def test_staff_without_the_mediator_role_land_on_their_sites(province):
    http, _ = await staff_session(province.url, "op")
    async with http:
        async with http.get(province.url + "/console", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/visits"
        async with http.get(province.url + "/visits") as r:
            html = await r.text()
        assert "/visits/sites/bureau-x" in html and "prison-a" not in html
    http, _ = await staff_session(province.url, "wang")  # a mediator has no grant: says so
    async with http:
        async with http.get(province.url + "/visits") as r:
            assert "You hold no visitation grants" in await r.text()
        async with http.get(province.url + "/console") as r:
            assert "href='/visits'" in await r.text()


async def test_operator_books_and_the_facility_approves(province):
    url = province.url
    op, op_csrf = await staff_session(url, "op")
    async with op:
        bid = await book(op, url, op_csrf, province)
        async with op.get(
            f"{url}/visits/sites/bureau-x", params={"date": province.day().isoformat()}
        ) as r:
            html = await r.text()
        assert f"data-booking='{bid}'" in html and "cell requested" in html
        assert "/decide" not in html  # the counter does not decide
    b = province.res.get(bid)
    assert b.status == "requested" and b.contact == "family@example.org"
    off_b, csrf_b = await staff_session(url, "off-b")
    async with off_b:
        before = province.snapshot()
        async with off_b.post(
            f"{url}/visits/bookings/{bid}/decide",
            data={"csrf": csrf_b, "decision": "approve"},
            allow_redirects=False,
        ) as r:
            assert r.status == 403 and "forbidden" in await r.text()
        assert province.snapshot() == before
    off_a, csrf_a = await staff_session(url, "off-a")
    async with off_a:
        async with off_a.get(
            f"{url}/visits/sites/prison-a", params={"date": province.day().isoformat()}
        ) as r:
            html = await r.text()
        assert f"/visits/bookings/{bid}/decide" in html
        async with off_a.post(
            f"{url}/visits/bookings/{bid}/decide",
            data={"csrf": csrf_a, "decision": "approve"},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
    assert province.res.get(bid).status == "approved"


async def test_exception_needs_the_supervisor(province):
    url = province.url
    op, csrf = await staff_session(url, "op")
    async with op:
        await book(op, url, csrf, province)
        day = province.day(4)
        async with op.get(
            f"{url}/visits/sites/bureau-x/book",
            params={"facility": "prison-a", "number": "A-001", "dates": day.isoformat()},
        ) as r:
            assert "quota is used" in await r.text()
        data = {
            "csrf": csrf,
            "inmate": str(province.ids["a1"]),
            "minutes": "30",
            "slot": f"{day}T10:00|bx-1|pa-1",
            "visitor": str(province.ids["a1v1"]),
        }
        async with op.post(
            f"{url}/visits/sites/bureau-x/bookings", data=data, allow_redirects=False
        ) as r:
            assert r.status == 409 and "quota" in await r.text()
        async with op.post(
            f"{url}/visits/sites/bureau-x/bookings",
            data={**data, "exception_reason": "mother in hospital"},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
            bid = int(r.headers["Location"].rsplit("#b", 1)[1])
    for user, status in (("off-a", 403), ("sup-a", 303)):
        http, c = await staff_session(url, user)
        async with http:
            async with http.post(
                f"{url}/visits/bookings/{bid}/decide",
                data={"csrf": c, "decision": "approve"},
                allow_redirects=False,
            ) as r:
                assert r.status == status
    assert province.res.get(bid).exception_by == "staff:sup-a"


async def test_everything_of_prison_b_is_forbidden_to_prison_a(province):
    url = province.url
    op, csrf = await staff_session(url, "op")
    async with op:
        bid = await book(
            op, url, csrf, province, number="B-001", facility="prison-b", visitors=("b1v0",)
        )
    off_a, csrf_a = await staff_session(url, "off-a")
    async with off_a:
        before = province.snapshot()
        for path in (
            "/visits/sites/prison-b",
            "/visits/sites/prison-b/directory",
            "/visits/sites/prison-b/book",
            "/visits/sites/bureau-x/book",
            "/visits/import",
            "/visits/sites/nowhere",
        ):
            async with off_a.get(url + path) as r:
                assert r.status == 403, path
                assert "data-code='forbidden'" in await r.text()
        for path, data in (
            (f"/visits/bookings/{bid}/decide", {"decision": "reject", "reason": "other"}),
            (f"/visits/bookings/{bid}/cancel", {"reason": "other"}),
            (f"/visits/bookings/{bid}/no-show", {}),
            ("/visits/sites/prison-b/terminals/pb-1/credential", {}),
            ("/visits/sites/prison-b/terminals/pb-1/revoke", {}),
            ("/visits/sites/bureau-x/bookings", {"inmate": str(province.ids["a1"])}),
        ):
            async with off_a.post(
                url + path, data={"csrf": csrf_a, **data}, allow_redirects=False
            ) as r:
                assert r.status == 403, path
        async with off_a.get(url + "/visits") as r:
            assert "prison-b" not in await r.text()
        assert province.snapshot() == before


BAD_BOOKING_ROUTES = [
    ("/visits/bookings/abc/decide", {"decision": "approve"}, 404),
    ("/visits/bookings/0/decide", {"decision": "approve"}, 404),
    ("/visits/bookings/999999/decide", {"decision": "approve"}, 404),
    ("/visits/bookings/{bid}/decide", {"decision": "maybe"}, 400),
    ("/visits/bookings/{bid}/decide", {"decision": "reject", "reason": "because"}, 400),
    ("/visits/bookings/{bid}/decide", {"decision": "approve", "csrf": "forged"}, 403),
    ("/visits/bookings/{bid}/decide", {"decision": "approve", "x": "y" * 3000}, 400),
    ("/visits/bookings/{bid}/cancel", {"reason": "whim"}, 400),
    ("/visits/bookings/{bid}/no-show", {}, 409),  # not approved, not yet started
]
BAD_REQUESTS = [
    ({"slot": "garbage"}, 400),
    ({"slot": "{day}T10:00|bx-9|pa-1"}, 400),  # not a terminal of this bureau
    ({"slot": "{day}T10:00|pa-1|pa-1"}, 400),
    ({"slot": "{day}T10:07|bx-1|pa-1"}, 400),  # off the grid
    ({"slot": "{day}T10:00+08:00|bx-1|pa-1"}, 400),
    ({"slot": "{day}T10:00|bx-1|pb-1"}, 400),  # another prison's room
    ({"slot": "{day}T07:00|bx-1|pa-1"}, 409),  # closed
    ({"inmate": "x"}, 400),
    ({"inmate": "424242"}, 404),
    ({"minutes": "45"}, 409),
    ({"visitor": "b1v0"}, 400),  # approved for someone else
    ({"visitor": "x"}, 400),
    ({"contact": "not an address"}, 400),
    ({"lang": "fr"}, 400),
    ({"exception_reason": "x" * 201}, 400),
    ({"csrf": "forged"}, 403),
]
BAD_QUERIES = [
    ({"facility": "prison-a", "number": "A-404", "dates": "2030-01-01"}, 404),
    ({"facility": "Prison A!", "number": "A-001", "dates": "2030-01-01"}, 400),
    ({"facility": "prison-a", "number": "A-001", "dates": "tomorrow"}, 400),
    ({"facility": "prison-a", "number": "A-001", "dates": " "}, 400),
    ({"facility": "prison-a", "number": "A-001", "dates": "2030-01-01", "minutes": "-5"}, 400),
]


async def test_bad_input_on_booking_routes_changes_nothing(province):
    url = province.url
    op, csrf = await staff_session(url, "op")
    off_a, csrf_a = await staff_session(url, "off-a")
    async with op, off_a:
        bid = await book(op, url, csrf, province)
        before = province.snapshot()
        for path, data, status in BAD_BOOKING_ROUTES:
            http, c = (op, csrf) if "cancel" in path or "no-show" in path else (off_a, csrf_a)
            async with http.post(
                url + path.format(bid=bid), data={"csrf": c, **data}, allow_redirects=False
            ) as r:
                assert r.status == status, (path, data, await r.text())
        assert province.snapshot() == before
        day = province.day()
        base = {
            "inmate": str(province.ids["a1"]),
            "minutes": "30",
            "slot": f"{day}T11:00|bx-1|pa-1",
            "visitor": str(province.ids["a1v0"]),
        }
        for change, status in BAD_REQUESTS:
            data = {"csrf": csrf, **base}
            for key, value in change.items():
                data[key] = (
                    str(province.ids[value]) if value in province.ids else value.format(day=day)
                )
            async with op.post(
                f"{url}/visits/sites/bureau-x/bookings", data=data, allow_redirects=False
            ) as r:
                assert r.status == status, (change, await r.text())
        assert province.snapshot() == before
        for query, status in BAD_QUERIES:
            async with op.get(f"{url}/visits/sites/bureau-x/book", params=query) as r:
                assert r.status == status, query
        async with op.get(f"{url}/visits/sites/bureau-x", params={"date": "2030-13-01"}) as r:
            assert r.status == 400
