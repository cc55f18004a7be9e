"""The education record over real HTTP: prison A publishes, the bureau's counter opens it for an
approved relative (logged, seen by prison A), prison B and wrong roles are refused, bad input
answers its code and writes nothing."""

from __future__ import annotations

import re

from tests.integration.visits.conftest import staff_session


async def test_publish_read_and_site_scoping(province):
    p = province
    off_a, csrf_a = await staff_session(p.url, "off-a")
    async with off_a:
        page = f"{p.url}/visits/sites/prison-a/records"
        async with off_a.get(page, params={"facility": "prison-a", "number": "A-001"}) as r:
            html = await r.text()
        action = re.search(r"action='(/visits/sites/prison-a/records/\d+)'", html).group(1)
        bad = {"csrf": csrf_a, "kind": "diary", "period": "2030-01", "title": "x"}
        async with off_a.post(p.url + action, data=bad, allow_redirects=False) as r:
            assert r.status == 400
        good = {"csrf": csrf_a, "kind": "course", "period": "2030-01", "title": "职业技能"}
        async with off_a.post(p.url + action, data=good, allow_redirects=False) as r:
            assert r.status == 303
        # another prison's inmate cannot be written through prison A's address
        b1 = p.ids["b1"]
        async with off_a.post(
            f"{p.url}/visits/sites/prison-a/records/{b1}", data=good, allow_redirects=False
        ) as r:
            assert r.status == 404
    assert p.count("record_entries") == 1

    off_b, csrf_b = await staff_session(p.url, "off-b")
    async with off_b:
        async with off_b.get(f"{p.url}/visits/sites/prison-a/records") as r:
            assert r.status == 403
        async with off_b.post(
            p.url + action, data={**good, "csrf": csrf_b}, allow_redirects=False
        ) as r:
            assert r.status == 403

    op, csrf_op = await staff_session(p.url, "op")
    async with op:
        read = f"{p.url}/visits/sites/bureau-x/records/read"
        inmate = str(p.ids["a1"])
        for data, status in (
            ({"inmate": inmate, "visitor": str(p.ids["b1v0"])}, 400),
            ({"inmate": "x", "visitor": str(p.ids["a1v0"])}, 400),
        ):
            async with op.post(read, data={"csrf": csrf_op, **data}, allow_redirects=False) as r:
                assert r.status == status, data
        assert p.count("record_reads") == 0
        data = {"csrf": csrf_op, "inmate": inmate, "visitor": str(p.ids["a1v0"])}
        async with op.post(read, data=data, allow_redirects=False) as r:
            assert r.status == 200 and "职业技能" in await r.text()
        async with op.post(
            p.url + action, data={**good, "csrf": csrf_op}, allow_redirects=False
        ) as r:
            assert r.status == 403  # the counter reads, never writes
    assert p.count("record_reads") == 1
    off_a, _ = await staff_session(p.url, "off-a")
    async with off_a:
        async with off_a.get(
            f"{p.url}/visits/sites/prison-a/records",
            params={"facility": "prison-a", "number": "A-001"},
        ) as r:
            assert "staff:op" in await r.text()  # prison A sees who read it
