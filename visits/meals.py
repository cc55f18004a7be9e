"""Family meal orders (亲情点餐): the facility's menu, a relative's order, the canteen's delivery.

The facility publishes items with a price and a limit per inmate per month; at the bureau counter
an approved visitor of the inmate orders (the operator keys it in); the facility's canteen sees the
orders to fulfil and marks each delivered; the counter sees each order's status. Parley records
the amounts and who pays (the ordering visitor); it processes no payment (R18: fees are a
deployment's policy, none exist). Every change runs in one transaction that reads the month's
earlier orders and checks the limits before it writes, so two counters cannot together exceed an
item's monthly limit.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from visits.directory import check_visitor
from visits.model import VisitError, text
from visits.store import VisitStore

PRICE = re.compile(r"^(0|[1-9][0-9]{0,4})(\.[0-9]{1,2})?$")  # yuan, up to 99999.99
MAX_LINES = 20
MAX_QTY = 31


@dataclass(frozen=True)
class Item:
    id: int
    facility: str
    name: str
    price_cents: int
    per_month: int
    active: bool


@dataclass(frozen=True)
class Order:
    id: int
    inmate: int
    visitor: int
    placed_at: str
    placed_by: str
    total_cents: int
    status: str  # placed | delivered | cancelled
    delivered_at: str
    delivered_by: str
    lines: tuple[tuple[str, int, int], ...]  # (item name, quantity, unit price in cents)


def cents(value: object) -> int:
    """A price typed in yuan ("12", "12.5", "12.50") as cents, or ``invalid``."""
    if not isinstance(value, str) or not PRICE.match(value.strip()):
        raise VisitError("invalid", "price: yuan with at most two decimals, e.g. 12.50")
    whole, _, frac = value.strip().partition(".")
    amount = int(whole) * 100 + int((frac + "00")[:2])
    if amount <= 0:
        raise VisitError("invalid", "price: more than zero")
    return amount


def yuan(amount: int) -> str:
    return f"{amount // 100}.{amount % 100:02d}"


class Meals:
    def __init__(self, store: VisitStore) -> None:
        self.store = store

    # -- the menu -------------------------------------------------------------------------------
    def publish(self, facility: str, name: object, price: object, per_month: object) -> int:
        label = text(name, "name", 60)
        amount = cents(price)
        if (
            not isinstance(per_month, str)
            or not per_month.isdigit()
            or not (1 <= int(per_month) <= MAX_QTY)
        ):
            raise VisitError("invalid", f"per_month: 1 to {MAX_QTY}")
        with self.store.tx() as db:
            kind = db.execute("SELECT kind FROM sites WHERE id=?", (facility,)).fetchone()
            if kind is None or kind[0] not in ("prison", "rehab"):
                raise VisitError("not_found", "no such facility")
            if db.execute(
                "SELECT 1 FROM meal_items WHERE facility=? AND name=? AND active=1",
                (facility, label),
            ).fetchone():
                raise VisitError("conflict", f"{label} is already on the menu")
            cur = db.execute(
                "INSERT INTO meal_items(facility, name, price_cents, per_month) VALUES (?,?,?,?)",
                (facility, label, amount, int(per_month)),
            )
            return cur.lastrowid

    def withdraw(self, facility: str, item_id: int) -> None:
        with self.store.tx() as db:
            if not db.execute(
                "UPDATE meal_items SET active=0 WHERE id=? AND facility=? AND active=1",
                (item_id, facility),
            ).rowcount:
                raise VisitError("not_found", "no such item on this menu")

    def menu(self, facility: str) -> list[Item]:
        return [
            Item(r[0], r[1], r[2], r[3], r[4], bool(r[5]))
            for r in self.store.rows(
                "SELECT id, facility, name, price_cents, per_month, active FROM meal_items"
                " WHERE facility=? AND active=1 ORDER BY name",
                (facility,),
            )
        ]

    # -- orders ---------------------------------------------------------------------------------
    def order(
        self, actor: str, inmate_id: int, visitor_id: int, lines: dict[int, int], now: dt.datetime
    ) -> int:
        """An order for one inmate by one approved visitor (who pays): every item of the inmate's
        facility's current menu, within its monthly limit for this inmate."""
        lines = {i: q for i, q in lines.items() if q}
        if not lines or len(lines) > MAX_LINES:
            raise VisitError("invalid", f"items: 1 to {MAX_LINES} with a quantity")
        if any(not (1 <= q <= MAX_QTY) for q in lines.values()):
            raise VisitError("invalid", f"quantity: 1 to {MAX_QTY}")
        month = now.strftime("%Y-%m")
        with self.store.tx() as db:
            inmate = db.execute(
                "SELECT facility, status FROM inmates WHERE id=?", (inmate_id,)
            ).fetchone()
            if inmate is None:
                raise VisitError("not_found", "no such inmate")
            if inmate[1] in ("released", "transferred"):
                raise VisitError("conflict", f"the inmate is {inmate[1]}")
            check_visitor(db, visitor_id, inmate_id, now.date(), noun="visitor")
            total = 0
            priced = []
            for item_id, qty in sorted(lines.items()):
                row = db.execute(
                    "SELECT price_cents, per_month FROM meal_items"
                    " WHERE id=? AND facility=? AND active=1",
                    (item_id, inmate[0]),
                ).fetchone()
                if row is None:
                    raise VisitError("invalid", f"item {item_id}: not on this facility's menu")
                used = db.execute(
                    "SELECT coalesce(sum(l.qty), 0) FROM meal_lines l JOIN meal_orders o"
                    " ON o.id=l.meal_order WHERE o.inmate=? AND o.month=? AND l.item=?"
                    " AND o.status!='cancelled'",
                    (inmate_id, month, item_id),
                ).fetchone()[0]
                if used + qty > row[1]:
                    raise VisitError(
                        "quota", f"item {item_id}: {row[1]} a month, {used} already ordered"
                    )
                priced.append((item_id, qty, row[0]))
                total += qty * row[0]
            cur = db.execute(
                "INSERT INTO meal_orders(inmate, visitor, placed_at, placed_by, total_cents,"
                " month) VALUES (?,?,?,?,?,?)",
                (inmate_id, visitor_id, now.isoformat(timespec="minutes"), actor, total, month),
            )
            oid = cur.lastrowid
            db.executemany(
                "INSERT INTO meal_lines VALUES (?,?,?,?)", [(oid, *line) for line in priced]
            )
            return oid

    def deliver(self, actor: str, facility: str, order_id: int, now: dt.datetime) -> None:
        with self.store.tx() as db:
            row = db.execute(
                "SELECT o.status, i.facility FROM meal_orders o JOIN inmates i ON i.id=o.inmate"
                " WHERE o.id=?",
                (order_id,),
            ).fetchone()
            if row is None or row[1] != facility:
                raise VisitError("not_found", "no such order at this facility")
            if row[0] != "placed":
                raise VisitError("conflict", f"the order is {row[0]}")
            db.execute(
                "UPDATE meal_orders SET status='delivered', delivered_at=?, delivered_by=?"
                " WHERE id=?",
                (now.isoformat(timespec="minutes"), actor, order_id),
            )

    def facility_of(self, order_id: int) -> str | None:
        rows = self.store.rows(
            "SELECT i.facility FROM meal_orders o JOIN inmates i ON i.id=o.inmate WHERE o.id=?",
            (order_id,),
        )
        return rows[0][0] if rows else None

    def orders(
        self,
        *,
        facility: str | None = None,
        inmate: int | None = None,
        visitors: list[int] | None = None,
    ) -> list[Order]:
        """The orders of a facility, of an inmate, or placed by any of these approved visitors
        (the relative's own page)."""
        sql = (
            "SELECT o.id, o.inmate, o.visitor, o.placed_at, o.placed_by, o.total_cents, o.status,"
            " o.delivered_at, o.delivered_by FROM meal_orders o JOIN inmates i ON i.id=o.inmate"
        )
        if visitors is not None:
            marks = ",".join("?" * len(visitors)) or "NULL"
            rows = self.store.rows(
                sql + f" WHERE o.visitor IN ({marks}) ORDER BY o.id DESC", tuple(visitors)
            )
        elif inmate is not None:
            rows = self.store.rows(sql + " WHERE o.inmate=? ORDER BY o.id DESC", (inmate,))
        else:
            rows = self.store.rows(sql + " WHERE i.facility=? ORDER BY o.id DESC", (facility,))
        out = []
        for r in rows[:200]:
            lines = tuple(
                tuple(x)
                for x in self.store.rows(
                    "SELECT m.name, l.qty, l.price_cents FROM meal_lines l JOIN meal_items m"
                    " ON m.id=l.item WHERE l.meal_order=? ORDER BY m.name",
                    (r[0],),
                )
            )
            out.append(Order(*r, lines))
        return out
