"""Placement: which live node a new session goes to. A pure function of the registry's list.

A node's load is the largest of three fractions of what one node process is sized for
(docs/operations.md, "Sizing": 20 three-party sessions per process, one process per core):
CPU used (of one core), forwarded media streams (of 240: 20 rooms x 6 video + 6 audio) and
sessions (of 20). CPU is the real limit but lags (a session placed a second ago has nobody
connected yet), the session count is immediate but blind to room size, streams sit between:
the largest of the three is the honest one. CPU under a quarter of a core counts as none: the
heartbeat measures it over half a second, so a staff login (its Argon2 hash) or a page render
makes a quiet node look busier than a node serving several sessions; below that the session
and stream counts decide, above it CPU does. ``pending`` counts the sessions placed on a node
that its heartbeat does not count yet (read from Redis by the caller: every node's placements,
``Registry.reserve``; a takeover round's own choices), so a burst of new sessions spreads
instead of all landing on the node that looked emptiest a moment ago.

Draining nodes never get new sessions. Liveness is decided before this function (the
registry lists only nodes whose heartbeat has not expired in Redis: one clock, Redis's). A
node over its size is still chosen when every node is: refusing a hearing is worse than a busy
node, and the load is on /metrics for the operator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cluster.registry import NodeInfo

SESSIONS_PER_NODE = 20
STREAMS_PER_NODE = 240
CPU_QUIET = 0.25  # of one core: below it, CPU is a login or a page render, not load


def load_of(node: NodeInfo, pending: int = 0) -> float:
    """The node's load as a fraction of one node's planned capacity (1.0 = full)."""
    load = node.load
    cpu = float(load.cpu)
    return max(
        cpu if cpu >= CPU_QUIET else 0.0,
        max(load.streams, 0) / STREAMS_PER_NODE,
        (max(load.sessions, 0) + max(pending, 0)) / SESSIONS_PER_NODE,
    )


def place(nodes: Iterable[NodeInfo], pending: Mapping[str, int] | None = None) -> NodeInfo | None:
    """The least-loaded node that is not draining; ``None`` when there is none. Ties go to
    the node with fewer sessions, then to the smaller id (the same answer on every node)."""
    pending = pending or {}
    candidates = [n for n in nodes if not n.draining]
    if not candidates:
        return None

    def key(node: NodeInfo):
        extra = pending.get(node.id, 0)
        return (load_of(node, extra), max(node.load.sessions, 0) + extra, node.id)

    return min(candidates, key=key)
