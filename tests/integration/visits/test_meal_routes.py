"""Family meal orders over real HTTP: prison A's officer publishes its menu, the bureau's counter
orders for a relative, prison A's canteen marks it delivered and the counter sees the status;
prison B's officer and the wrong roles are refused, bad input answers its code."""

from __future__ import annotations

import re

from tests.integration.visits.conftest import staff_session


async def _deliver(session, url: str, order: int, csrf: str) -> int:
    """POST the order's 已送达 Delivered; the answer's status."""
    async with session.post(
        f"{url}/visits/meals/orders/{order}/deliver", data={"csrf": csrf}, allow_redirects=False
    ) as r:
        return r.status


async def test_menu_order_delivery_and_site_scoping(province):
    p = province
    off_a, csrf_a = await staff_session(p.url, "off-a")
    async with off_a:
        async with off_a.get(f"{p.url}/visits/sites/prison-a") as r:
            assert "/visits/sites/prison-a/meals" in await r.text()
        add = f"{p.url}/visits/sites/prison-a/meals/items"
        for bad in (
            {"name": "", "price": "1", "per_month": "1"},
            {"name": "面", "price": "1.234", "per_month": "1"},
            {"name": "面", "price": "1", "per_month": "40"},
        ):
            async with off_a.post(add, data={"csrf": csrf_a, **bad}, allow_redirects=False) as r:
                assert r.status == 400, bad
        data = {"csrf": csrf_a, "name": "牛肉面 Beef noodles", "price": "12.50", "per_month": "2"}
        async with off_a.post(add, data=data, allow_redirects=False) as r:
            assert r.status == 303
        item = p.store.rows("SELECT id FROM meal_items")[0][0]

    op, csrf_op = await staff_session(p.url, "op")
    async with op:
        async with op.get(
            f"{p.url}/visits/sites/bureau-x/meals",
            params={"facility": "prison-a", "number": "A-001"},
        ) as r:
            html = await r.text()
        assert f"name='qty_{item}'" in html and "¥12.50" in html
        inmate = re.search(r"name='inmate' value='(\d+)'", html).group(1)
        order = f"{p.url}/visits/sites/bureau-x/meals/orders"

        def form(**kw):
            return {
                "csrf": csrf_op,
                "inmate": inmate,
                "visitor": str(p.ids["a1v0"]),
                f"qty_{item}": "2",
                **kw,
            }

        for bad, status in (
            (form(**{f"qty_{item}": "3"}), 409),
            (form(visitor="x"), 400),
            (form(visitor=str(p.ids["b1v0"])), 400),
            (form(qty_99999="1"), 400),
        ):
            async with op.post(order, data=bad, allow_redirects=False) as r:
                assert r.status == status, bad
        assert p.count("meal_orders") == 0
        async with op.post(order, data=form(), allow_redirects=False) as r:
            assert r.status == 303
        oid = p.store.rows("SELECT id, total_cents FROM meal_orders")[0]
        assert oid[1] == 2500
        # the counter cannot mark it delivered
        assert await _deliver(op, p.url, oid[0], csrf_op) == 403

    off_b, csrf_b = await staff_session(p.url, "off-b")
    async with off_b:
        async with off_b.get(f"{p.url}/visits/sites/prison-a/meals") as r:
            assert r.status == 403
        assert await _deliver(off_b, p.url, oid[0], csrf_b) == 403
        async with off_b.post(
            f"{p.url}/visits/sites/prison-a/meals/items",
            data={"csrf": csrf_b, "name": "x", "price": "1", "per_month": "1"},
            allow_redirects=False,
        ) as r:
            assert r.status == 403

    off_a, csrf_a = await staff_session(p.url, "off-a")
    async with off_a:
        async with off_a.get(f"{p.url}/visits/sites/prison-a/meals") as r:
            assert f"data-order='{oid[0]}'" in await r.text()
        assert await _deliver(off_a, p.url, oid[0], csrf_a) == 303
    op, _ = await staff_session(p.url, "op")
    async with op:
        async with op.get(
            f"{p.url}/visits/sites/bureau-x/meals",
            params={"facility": "prison-a", "number": "A-001"},
        ) as r:
            assert "已送达 delivered" in await r.text()
