"""Family meal orders against the real store: prices in cents, the facility's menu only, the
monthly limit per item and inmate (cancelled orders aside), approved visitors only, delivery by
the inmate's facility only; every refusal writes nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.support.province import NOW, build
from visits.meals import Meals, cents, yuan
from visits.model import VisitError


@pytest.fixture
def meals(tmp_path):
    store, d, res, ids = build(tmp_path)
    m = Meals(store)
    items = {
        "noodles": m.publish("prison-a", "牛肉面 Beef noodles", "12.50", "4"),
        "fruit": m.publish("prison-a", "水果 Fruit", "8", "2"),
        "b-rice": m.publish("prison-b", "米饭 Rice", "3", "9"),
    }
    yield store, m, ids, items
    store.close()


@pytest.mark.parametrize(
    "raw,amount", [("12", 1200), ("12.5", 1250), ("0.05", 5), (" 99999.99 ", 9999999)]
)
def test_prices_are_cents(raw, amount):
    assert cents(raw) == amount and yuan(amount) == f"{amount // 100}.{amount % 100:02d}"


@pytest.mark.parametrize("raw", ["", "0", "-1", "1.234", "1e3", "100000", "12,50", None])
def test_bad_prices(raw):
    with pytest.raises(VisitError) as err:
        cents(raw)
    assert err.value.code == "invalid"


def code(fn, *a, **kw):
    with pytest.raises(VisitError) as err:
        fn(*a, **kw)
    return err.value.code


def test_order_total_limits_and_delivery(meals):
    store, m, ids, items = meals
    oid = m.order("staff:op", ids["a1"], ids["a1v0"], {items["noodles"]: 2, items["fruit"]: 1}, NOW)
    [o] = m.orders(inmate=ids["a1"])
    assert (o.id, o.total_cents, o.status, o.visitor) == (
        oid,
        2 * 1250 + 800,
        "placed",
        ids["a1v0"],
    )
    assert sorted(o.lines) == [("水果 Fruit", 1, 800), ("牛肉面 Beef noodles", 2, 1250)]
    # the month's limit counts every relative's orders for this inmate
    assert code(m.order, "staff:op", ids["a1"], ids["a1v1"], {items["fruit"]: 2}, NOW) == "quota"
    m.order("staff:op", ids["a1"], ids["a1v1"], {items["fruit"]: 1}, NOW)
    next_month = NOW + dt.timedelta(days=31)
    m.order("staff:op", ids["a1"], ids["a1v1"], {items["fruit"]: 2}, next_month)
    assert code(m.deliver, "staff:off-b", "prison-b", oid, NOW) == "not_found"
    m.deliver("staff:off-a", "prison-a", oid, NOW)
    assert m.orders(inmate=ids["a1"])[-1].status == "delivered"
    assert code(m.deliver, "staff:off-a", "prison-a", oid, NOW) == "conflict"


BAD = [
    ("no lines", "a1", "a1v0", {}, "invalid"),
    ("zero quantity only", "a1", "a1v0", {"noodles": 0}, "invalid"),
    ("too many", "a1", "a1v0", {"noodles": 32}, "invalid"),
    ("beyond the limit", "a1", "a1v0", {"noodles": 5}, "quota"),
    ("another facility's item", "a1", "a1v0", {"b-rice": 1}, "invalid"),
    ("a visitor of another inmate", "a1", "b1v0", {"noodles": 1}, "invalid"),
    ("no such item", "a1", "a1v0", {999: 1}, "invalid"),
]


@pytest.mark.parametrize("what,inmate,visitor,lines,expected", BAD, ids=[b[0] for b in BAD])
def test_refusals_write_nothing(meals, what, inmate, visitor, lines, expected):
    store, m, ids, items = meals
    lines = {items.get(k, k): q for k, q in lines.items()}
    assert code(m.order, "staff:op", ids[inmate], ids[visitor], lines, NOW) == expected
    assert store.rows("SELECT count(*) FROM meal_orders") == [(0,)]


def test_menu_changes(meals):
    store, m, ids, items = meals
    assert code(m.publish, "prison-a", "水果 Fruit", "9", "1") == "conflict"
    assert code(m.publish, "bureau-x", "Tea", "1", "1") == "not_found"
    assert code(m.publish, "prison-a", "Tea", "1", "0") == "invalid"
    assert code(m.withdraw, "prison-b", items["fruit"]) == "not_found"
    m.withdraw("prison-a", items["fruit"])
    assert [i.name for i in m.menu("prison-a")] == ["牛肉面 Beef noodles"]
    assert code(m.order, "staff:op", ids["a1"], ids["a1v0"], {items["fruit"]: 1}, NOW) == "invalid"
