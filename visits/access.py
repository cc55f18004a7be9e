"""Who may do what at which site: site-scoped role grants and one permission table, pure.

A staff account (rooms/accounts.py) holds no visitation power by itself. Power comes from grants
``(username, role, site)``; ``site`` is a site id or ``*`` (every site of the province, for the
province's directory admins and reviewers). An officer of prison A holds a grant for prison A and
so can do nothing at prison B: every route asks ``allowed(grants, action, site)`` with the site
the object belongs to. The table is data, walked by tests/unit/visits/test_access.py against a
table written by hand.

Relatives hold no grants: on the family page (signaling/visits_family.py) a relative proves a
contact with a one-time code and acts as each approved-visitor record that names that contact —
approved, not expired, and never a lawyer's record (``family_records``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from visits.model import FACILITY_KINDS, VisitError, Visitor

ALL_SITES = "*"
# role -> the kinds of site it can be granted at
GRANT_ROLES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "operator": frozenset({"bureau"}),  # the bureau's counter: books for the family
        "officer": FACILITY_KINDS,  # the facility's visit officer: decides requests
        "supervisor": FACILITY_KINDS,  # warden level: exceptions beyond quota (R5)
        "reviewer": FACILITY_KINDS,  # reviews recordings (R3; the queue comes later)
        "directory_admin": frozenset({"bureau", "prison", "rehab"}),
    }
)
# action -> roles allowed, at the site the action touches
PERMISSIONS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "site.view": frozenset(
            {"operator", "officer", "supervisor", "reviewer", "directory_admin"}
        ),
        "directory.view": frozenset({"officer", "supervisor", "directory_admin"}),
        "directory.edit": frozenset({"directory_admin"}),
        "terminal.credential": frozenset({"directory_admin"}),
        "booking.request": frozenset({"operator"}),  # at the bureau where the family sits
        "booking.view": frozenset({"operator", "officer", "supervisor"}),
        "booking.decide": frozenset({"officer", "supervisor"}),  # at the inmate's facility
        "booking.exception": frozenset({"supervisor"}),  # beyond the grade's quota (R5)
        "booking.cancel": frozenset({"operator", "officer", "supervisor"}),
        "booking.no_show": frozenset({"operator"}),
        # the live visit (docs/visitation.md): identity at the counter (R6), the live list with
        # warn and end (R4; the bureau's operator by policy), listening in (never privileged, R2)
        "booking.checkin": frozenset({"operator"}),
        "visit.live": frozenset({"operator", "officer", "supervisor"}),
        "visit.observe": frozenset({"officer", "supervisor"}),
        "visit.end_privileged": frozenset({"supervisor"}),  # for security, without media
        # family meal orders: the facility keeps the menu and delivers; the counter orders
        "meals.menu": frozenset({"officer", "supervisor"}),
        "meals.order": frozenset({"operator"}),
        # the education/reform record: the facility publishes, a relative reads at the counter
        "records.publish": frozenset({"officer", "supervisor"}),
        "records.read": frozenset({"operator"}),
    }
)


@dataclass(frozen=True)
class Grant:
    username: str
    role: str
    site: str  # a site id or ALL_SITES


def check_grant(role: str, site: str, site_kind: str | None) -> None:
    """Refuse a grant that cannot mean anything: an operator of a prison, an officer of a bureau.
    ``site_kind`` is None for ``*``."""
    if role not in GRANT_ROLES:
        raise VisitError("invalid", f"role: one of {', '.join(GRANT_ROLES)}")
    if site == ALL_SITES:
        if role not in ("directory_admin", "reviewer"):
            raise VisitError("invalid", f"a {role} is granted one site at a time, not '*'")
        return
    if site_kind is None:
        raise VisitError("not_found", f"no site {site[:40]!r}")
    if site_kind not in GRANT_ROLES[role]:
        raise VisitError("invalid", f"a {role} cannot be granted at a {site_kind}")


def roles_at(grants: Iterable[Grant], site: str) -> frozenset[str]:
    return frozenset(g.role for g in grants if g.site in (site, ALL_SITES))


def allowed(grants: Iterable[Grant], action: str, site: str) -> bool:
    if action not in PERMISSIONS:
        raise KeyError(action)
    return bool(roles_at(grants, site) & PERMISSIONS[action])


def require(grants: Iterable[Grant], action: str, site: str) -> None:
    if not allowed(grants, action, site):
        raise VisitError("forbidden", f"{action} at {site[:40]} is not among your grants")


def sites_of(grants: Iterable[Grant]) -> set[str]:
    """The sites the user holds any grant at (``*`` included as is)."""
    return {g.site for g in grants}


def family_records(store, contact: str, today: str) -> list[Visitor]:
    """The approved-visitor records a verified ``contact`` (visits.model.login_contact) acts as:
    not expired on ``today``, relationship other than ``lawyer``, of a person still held."""
    rows = store.rows(
        "SELECT v.id, v.inmate, v.name, v.relationship, v.id_last4, v.evidence, v.approved_by,"
        " v.reason, v.expires, v.contact FROM visitors v JOIN inmates i ON i.id=v.inmate"
        " WHERE (v.contact=? OR lower(v.contact)=?) AND v.expires>=? AND v.relationship!='lawyer'"
        " AND i.status IN ('visitable', 'restricted') ORDER BY v.id",
        (contact, contact, today),
    )
    return [Visitor(*r) for r in rows]
