"""Placement, table-tested: least-loaded live node, draining nodes excluded."""

from __future__ import annotations

import pytest

from cluster.placement import load_of, place
from cluster.registry import NodeInfo, NodeLoad


def node(node_id, sessions=0, streams=0, cpu=0.0, participants=0, draining=False):
    return NodeInfo(
        node_id,
        f"https://{node_id}",
        NodeLoad(sessions=sessions, participants=participants, streams=streams, cpu=cpu),
        draining=draining,
    )


CASES = [
    # (why, nodes, pending, expected node id)
    ("no nodes", [], {}, None),
    ("every node draining", [node("a", draining=True), node("b", draining=True)], {}, None),
    ("the only node", [node("a", sessions=19, cpu=0.9)], {}, "a"),
    ("fewer sessions", [node("a", sessions=3), node("b", sessions=2)], {}, "b"),
    ("draining excluded though empty", [node("a", sessions=5), node("b", draining=True)], {}, "a"),
    ("CPU counts: busy signing", [node("a", sessions=1, cpu=0.7), node("b", sessions=6)], {}, "b"),
    (
        "streams count: one big room",
        [node("a", sessions=1, streams=200), node("b", sessions=8)],
        {},
        "b",
    ),
    (
        "CPU under a quarter core is noise: sessions decide",
        [node("a", sessions=1, cpu=0.02), node("b", cpu=0.24)],
        {},
        "b",
    ),
    (
        "CPU from a quarter core counts",
        [node("a", sessions=1, cpu=0.02), node("b", cpu=0.25)],
        {},
        "a",
    ),
    ("all even: smaller id", [node("b"), node("a"), node("c")], {}, "a"),
    (
        "equal load: fewer sessions",
        [node("a", sessions=2, cpu=0.5), node("b", sessions=1, cpu=0.5)],
        {},
        "b",
    ),
    ("pending spreads a burst", [node("a"), node("b")], {"a": 1}, "b"),
    ("pending counts as sessions", [node("a", sessions=1), node("b")], {"b": 2}, "a"),
    (
        "all over size: still the least loaded",
        [node("a", sessions=30), node("b", sessions=25)],
        {},
        "b",
    ),
    (
        "negative numbers count as zero",
        [node("a", sessions=-5, streams=-1, cpu=-1.0), node("b", sessions=1)],
        {},
        "a",
    ),
]


@pytest.mark.parametrize("why,nodes,pending,expected", CASES, ids=[c[0] for c in CASES])
def test_place(why, nodes, pending, expected):
    chosen = place(nodes, pending)
    assert (chosen.id if chosen else None) == expected


def test_place_takes_any_iterable_and_is_pure():
    nodes = [node("a", sessions=2), node("b", sessions=1)]
    assert place(iter(nodes)).id == "b"
    assert place(nodes).id == "b" and nodes[1].load.sessions == 1


def test_load_is_the_largest_fraction():
    assert load_of(node("a", sessions=10, streams=24, cpu=0.2)) == 0.5
    assert load_of(node("a", sessions=1, streams=240, cpu=0.2)) == 1.0
    assert load_of(node("a", cpu=0.95)) == 0.95
    assert load_of(node("a", sessions=1), pending=1) == 0.1
