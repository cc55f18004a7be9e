"""The visitation permission table, written by hand from the rules of the work (who sits at
which counter), checked cell by cell against ``visits.access.PERMISSIONS``; and site scoping:
a grant at one site gives nothing at another.

Columns: op = bureau operator, off = facility visit officer, sup = supervisor (warden level),
rev = reviewer, dir = directory admin. ``Y`` allowed, ``.`` refused.
"""

from __future__ import annotations

import pytest

from visits.access import GRANT_ROLES, PERMISSIONS, Grant, allowed, require
from visits.model import VisitError

COLUMNS = {
    "op": "operator",
    "off": "officer",
    "sup": "supervisor",
    "rev": "reviewer",
    "dir": "directory_admin",
}
# fmt: off
TABLE = """
action               op  off sup rev dir
# the capacity grid of a site: everyone who works there
site.view            Y   Y   Y   Y   Y
# the facility's people and terminals: its officers and the directory's keepers
directory.view       .   Y   Y   .   Y
directory.edit       .   .   .   .   Y
terminal.credential  .   .   .   .   Y
# the family asks at the bureau counter; the facility decides; beyond quota only the warden (R5)
booking.request      Y   .   .   .   .
booking.view         Y   Y   Y   .   .
booking.decide       .   Y   Y   .   .
booking.exception    .   .   Y   .   .
booking.cancel       Y   Y   Y   .   .
booking.no_show      Y   .   .   .   .
# the live visit: identity at the counter (R6); the live list, warn, end (R4); listen-in
booking.checkin      Y   .   .   .   .
visit.live           Y   Y   Y   .   .
visit.observe        .   Y   Y   .   .
visit.end_privileged .   .   Y   .   .
# family meal orders: the facility's menu and canteen; the bureau's counter orders
meals.menu           .   Y   Y   .   .
meals.order          Y   .   .   .   .
# the education record: the facility publishes (and sees the read log); the counter reads
records.publish      .   Y   Y   .   .
records.read         Y   .   .   .   .
"""
# fmt: on


def expected():
    lines = [ln for ln in TABLE.strip().splitlines() if ln and not ln.startswith("#")]
    header = lines[0].split()[1:]
    return {
        parts[0]: {COLUMNS[c] for c, v in zip(header, parts[1:], strict=True) if v == "Y"}
        for parts in (ln.split() for ln in lines[1:])
    }


def test_table_matches_policy_cell_by_cell():
    table = expected()
    assert set(table) == set(PERMISSIONS)
    assert set(COLUMNS.values()) == set(GRANT_ROLES)
    for action, roles in table.items():
        assert PERMISSIONS[action] == roles, action


@pytest.mark.parametrize("action", sorted(PERMISSIONS))
@pytest.mark.parametrize("role", sorted(GRANT_ROLES))
def test_a_grant_at_prison_a_gives_nothing_at_prison_b(action, role):
    grants = [Grant("u", role, "prison-a")]
    assert not allowed(grants, action, "prison-b")
    assert allowed(grants, action, "prison-a") == (role in PERMISSIONS[action])
    if role not in PERMISSIONS[action]:
        with pytest.raises(VisitError) as err:
            require(grants, action, "prison-a")
        assert err.value.code == "forbidden"


def test_province_wide_grant_and_unknown_action():
    grants = [Grant("u", "directory_admin", "*")]
    assert allowed(grants, "directory.edit", "prison-b")
    assert not allowed(grants, "booking.decide", "prison-b")
    assert not allowed([], "site.view", "prison-a")
    with pytest.raises(KeyError):
        allowed(grants, "booking.anything", "prison-a")
