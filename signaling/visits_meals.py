"""Family meal order pages (亲情点餐, visits/meals.py), under the same site-scoped grants.

At a facility (``meals.menu``: its officers and supervisors) the page keeps the menu and lists the
orders to fulfil, each with **已送达 Delivered**. At a bureau (``meals.order``: its operators) the
counter finds the inmate (any facility of the province, by number, as for booking), shows that
facility's menu, takes the relative's order and shows the inmate's orders with their status. A
refusal is the bilingual error page with its code; nothing changes.
"""

from __future__ import annotations

from aiohttp import web

from signaling.pages import esc
from signaling.visits_pages import csrf_field, inmate_search, number, relative_options
from visits.access import require
from visits.meals import MAX_QTY, Meals, yuan
from visits.model import VisitError

STATUS = {
    "placed": "待送达 to deliver",
    "delivered": "已送达 delivered",
    "cancelled": "已取消 cancelled",
}


class MealPages:
    def __init__(self, console) -> None:
        self.c = console
        self.meals = Meals(console.res.store)

    def _orders_table(self, orders, csrf: str, deliver: bool) -> str:
        rows = []
        for o in orders:
            inmate = self.c.directory.inmate(o.inmate)
            visitor = {v.id: v for v in self.c.directory.visitors(o.inmate)}.get(o.visitor)
            what = "、".join(f"{esc(n)} × {q}" for n, q, _ in o.lines)
            action = ""
            if deliver and o.status == "placed":
                action = (
                    f"<form method='post' action='/visits/meals/orders/{o.id}/deliver' "
                    f"class='inline'>{csrf_field(csrf)}<button type='submit'>已送达 Delivered"
                    "</button></form>"
                )
            done = f" · {esc(o.delivered_at)} {esc(o.delivered_by)}" if o.delivered_at else ""
            rows.append(
                f"<tr data-order='{o.id}'><td>{o.id}</td><td>{esc(o.placed_at)}</td>"
                f"<td>{esc(inmate.name if inmate else '')} {esc(inmate.number if inmate else '')}"
                f"</td><td>{what}</td><td>¥{yuan(o.total_cents)} · "
                f"{esc(visitor.name if visitor else '')}</td>"
                f"<td>{esc(STATUS.get(o.status, o.status))}{done}</td><td>{action}</td></tr>"
            )
        return (
            "<table class='list meals'><tr><th>编号 No.</th><th>下单 Placed</th>"
            "<th>服刑人员 Inmate</th><th>菜品 Items</th><th>金额 · 付款人 Amount · payer</th>"
            "<th>状态 Status</th><th></th></tr>"
            + ("".join(rows) or "<tr><td colspan=7>—</td></tr>")
            + "</table>"
        )

    async def page(self, request: web.Request) -> web.Response:
        account, sess, grants = self.c._staff(request)
        site_id = request.match_info["site"]
        site = self.c.directory.site(site_id) if len(site_id) <= 40 else None
        if site is not None and site.facility:
            site = self.c._site(grants, "meals.menu", site_id)
            return self.c._page(
                "亲情点餐 Family meals", self._facility(site, sess.csrf), account, sess
            )
        site = self.c._site(grants, "meals.order", site_id)
        body = self._counter(site, request.query, sess.csrf)
        return self.c._page("亲情点餐 Family meals", body, account, sess)

    def _facility(self, site, csrf: str) -> str:
        items = "".join(
            f"<tr><td>{esc(i.name)}</td><td>¥{yuan(i.price_cents)}</td><td>{i.per_month}</td>"
            f"<td><form method='post' action='/visits/sites/{esc(site.id)}/meals/items/{i.id}/"
            f"withdraw' class='inline'>{csrf_field(csrf)}<button type='submit'>下架 Withdraw"
            "</button></form></td></tr>"
            for i in self.meals.menu(site.id)
        )
        return (
            f"<h1>亲情点餐 Family meals · {esc(site.name)}</h1>"
            "<p>费用在 Parley 之外结算；此处只记录金额和付款人。Payment happens outside Parley; "
            "only the amount and who pays are recorded.</p>"
            "<h2>菜单 Menu</h2><table class='list'><tr><th>菜品 Item</th><th>价格 Price</th>"
            f"<th>每人每月 Per inmate a month</th><th></th></tr>{items}</table>"
            f"<form method='post' action='/visits/sites/{esc(site.id)}/meals/items' class='stack'>"
            f"{csrf_field(csrf)}<label>菜品 Item<input name='name' maxlength='60' required></label>"
            "<label>价格（元）Price (yuan)<input name='price' maxlength='9' required "
            "placeholder='12.50'></label><label>每人每月限量 Limit per inmate a month"
            f"<input name='per_month' type='number' min='1' max='{MAX_QTY}' value='1' required>"
            "</label><button type='submit'>上架 Add to the menu</button></form>"
            "<h2>订单 Orders</h2>"
            + self._orders_table(self.meals.orders(facility=site.id), csrf, deliver=True)
        )

    def _counter(self, site, q, csrf: str) -> str:
        facilities = [s for s in self.c.directory.sites() if s.facility]
        find = inmate_search("亲情点餐 Family meals", site, q, facilities)
        if not q.get("number"):
            return find
        inmate = self.c._inmate_by_number(q.get("facility"), q.get("number"))
        facility = inmate.facility
        visitors = relative_options(self.c.directory.visitors(inmate.id))
        lines = "".join(
            f"<label class='inline'>{esc(i.name)} · ¥{yuan(i.price_cents)} · "
            f"≤{i.per_month}/月 month <input type='number' name='qty_{i.id}' min='0' "
            f"max='{MAX_QTY}' value='0'></label>"
            for i in self.meals.menu(facility)
        )
        return (
            find
            + f"<h2>{esc(inmate.name)} · {esc(inmate.facility)} {esc(inmate.number)}</h2>"
            + (
                f"<form method='post' action='/visits/sites/{esc(site.id)}/meals/orders' "
                f"class='stack'>{csrf_field(csrf)}"
                f"<input type='hidden' name='inmate' value='{inmate.id}'>"
                f"<label>付款人（备案亲属）Payer (an approved relative)<select name='visitor'>"
                f"{visitors}</select></label><fieldset><legend>菜单 Menu</legend>{lines}"
                "</fieldset><button type='submit' class='primary'>下单 Place the order</button>"
                "</form>"
                if lines and visitors
                else "<p>该监所尚未发布菜单，或没有备案亲属。The facility has no menu, or the inmate"
                " has no approved relative.</p>"
            )
            + "<h2>订单 Orders</h2>"
            + self._orders_table(self.meals.orders(inmate=inmate.id), csrf, deliver=False)
        )

    async def add_item(self, request: web.Request) -> web.Response:
        account, sess, grants, fields = await self.c._form(request)
        site = self.c._site(grants, "meals.menu", request.match_info["site"])
        self.meals.publish(
            site.id, fields.get("name"), fields.get("price"), fields.get("per_month")
        )
        raise web.HTTPSeeOther(f"/visits/sites/{site.id}/meals")

    async def withdraw(self, request: web.Request) -> web.Response:
        account, sess, grants, fields = await self.c._form(request)
        site = self.c._site(grants, "meals.menu", request.match_info["site"])
        self.meals.withdraw(site.id, number(request.match_info["item"], "item"))
        raise web.HTTPSeeOther(f"/visits/sites/{site.id}/meals")

    async def order(self, request: web.Request) -> web.Response:
        account, sess, grants, fields = await self.c._form(request)
        site = self.c._site(grants, "meals.order", request.match_info["site"])
        inmate = number(fields.get("inmate"), "inmate")
        lines = {}
        for key, value in fields.items():
            if key.startswith("qty_") and value not in ("", "0"):
                lines[number(key[4:], "item")] = number(value, "quantity")
        self.meals.order(
            f"staff:{account.username}",
            inmate,
            number(fields.get("visitor"), "visitor"),
            lines,
            self.c.now(),
        )
        found = self.c.directory.inmate(inmate)
        raise web.HTTPSeeOther(
            f"/visits/sites/{site.id}/meals?facility={found.facility}&number={found.number}"
        )

    async def deliver(self, request: web.Request) -> web.Response:
        account, sess, grants, fields = await self.c._form(request)
        oid = number(request.match_info["order"], "order")
        facility = self.meals.facility_of(oid)
        if facility is None:
            raise VisitError("not_found", "no such order")
        require(grants, "meals.menu", facility)
        self.meals.deliver(f"staff:{account.username}", facility, oid, self.c.now())
        raise web.HTTPSeeOther(f"/visits/sites/{facility}/meals")

    def routes(self, guard) -> list[web.RouteDef]:
        return [
            web.get("/visits/sites/{site}/meals", guard(self.page)),
            web.post("/visits/sites/{site}/meals/items", guard(self.add_item)),
            web.post("/visits/sites/{site}/meals/items/{item}/withdraw", guard(self.withdraw)),
            web.post("/visits/sites/{site}/meals/orders", guard(self.order)),
            web.post("/visits/meals/orders/{order}/deliver", guard(self.deliver)),
        ]
