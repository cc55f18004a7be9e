"""A small province for visitation tests: two prisons, a bureau, terminals, people, grants."""

from __future__ import annotations

import datetime as dt

from visits.directory import (
    Directory,
    insert_inmate,
    insert_site,
    insert_terminal,
    insert_visitor,
)
from visits.reservations import Reservations
from visits.store import VisitStore

# Monday 2030-01-07, 08:00: a week of weekdays ahead
NOW = dt.datetime(2030, 1, 7, 8, 0)
HOURS = "1-5 09:00-12:00 14:00-17:00"


def build(
    data_dir, hours: str = HOURS, store: VisitStore | None = None
) -> tuple[VisitStore, Directory, Reservations, dict]:
    """The province in ``store`` (a new file store in ``data_dir`` when none is given)."""
    store = store if store is not None else VisitStore(data_dir)
    d = Directory(store)
    for sid, kind in (("prison-a", "prison"), ("prison-b", "prison"), ("bureau-x", "bureau")):
        d.add(insert_site, {"id": sid, "kind": kind, "name": f"{sid} 名称"})
    for tid, site, kind in (
        ("bx-1", "bureau-x", "visitor_room"),
        ("bx-2", "bureau-x", "visitor_room"),
        ("pa-1", "prison-a", "inmate_room"),
        ("pb-1", "prison-b", "inmate_room"),
    ):
        d.add(insert_terminal, {"id": tid, "site": site, "kind": kind, "name": tid, "hours": hours})
    ids = {}
    for key, facility, number, grade in (
        ("a1", "prison-a", "A-001", "normal"),
        ("a2", "prison-a", "A-002", "lenient"),
        ("a3", "prison-a", "A-003", "strict"),
        ("b1", "prison-b", "B-001", "normal"),
    ):
        ids[key] = d.add(
            insert_inmate,
            {"facility": facility, "number": number, "name": f"囚 {key}", "grade": grade},
        )
        for n in range(4):
            ids[f"{key}v{n}"] = d.add(
                insert_visitor,
                {
                    "facility": facility,
                    "inmate_number": number,
                    "name": f"家属 {key}{n}",
                    "relationship": "parent",
                    "id_number": f"11010119700101{n}{len(key)}{ord(key[0])}",
                    "evidence": f"DOC-{key}-{n}",
                    "approved_by": "officer-a",
                    "reason": "kinship checked",
                    "expires": "2031-12-31",
                    "contact": f"family{n}@example.org",
                },
            )
    d.grant("op", "operator", "bureau-x")
    d.grant("off-a", "officer", "prison-a")
    d.grant("sup-a", "supervisor", "prison-a")
    d.grant("off-b", "officer", "prison-b")
    d.grant("admin", "directory_admin", "*")
    return store, d, Reservations(store), ids
