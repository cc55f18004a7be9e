"""Where a participant's page should go when it reaches a node that does not serve its session
(docs/scaling.md, "Routing: redirect"; docs/decisions.md, decision 15).

A node serves a session when it holds it in memory. When a page connects for one it does not
hold, the node asks the registry who holds its lease:

* another node, alive (its heartbeat renewed within the last two beats, by Redis's clock: the
  key's remaining TTL), draining or not (a draining node serves what it still holds until it
  hands it over): ``redirect`` to that node's public URL (its heartbeat
  carries ``PARLEY_PUBLIC_URL``). The page keeps its link: every node of a deployment signs
  with the same ``PARLEY_SECRET``, so the same token is valid there.
* nobody, but the session is still listed under a node (it died, or drained and handed the
  session over, and no live node has adopted it yet), this node (it is rebuilding it right now), or a node whose
  heartbeat is late or gone (its lease has not expired yet): ``session_moving``: the page waits
  a moment and tries again, here.
* nobody, and no node lists it: ``None``, the caller's ``session_not_found`` (an ended session
  gives its lease back and leaves every list).

One Redis ``GET`` (the lease) and, when needed, one read of the node list: only on this miss
path, never for a session the node serves.
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.registry import NodeInfo, Registry

REDIRECT = "redirect"
MOVING = "session_moving"
HERE = "here"  # ClusterNode.locate only: this node serves it (a staff page is answered here)


@dataclass(frozen=True)
class Route:
    code: str  # REDIRECT or MOVING (or HERE, from ClusterNode.locate)
    url: str | None = None  # with REDIRECT: the owning node's public base URL


class Router:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.live: list[NodeInfo] = []  # the last list read (ClusterNode's rounds refresh it)

    def others(self) -> list[str]:
        """The public URLs of the other live nodes that take sessions (what a page falls back
        to when the node it is on stops answering), from the last list read."""
        me = self.registry.node_id
        return sorted(
            {n.url for n in self.live if n.id != me and not n.draining and web_url(n.url)}
        )

    async def route(self, session_id: str) -> Route | None:
        registry = self.registry
        owner = await registry.owner(session_id)
        if owner is None:
            return Route(MOVING) if await registry.listed(session_id) else None
        if owner == registry.node_id:
            return Route(MOVING)  # adopted a moment ago, being rebuilt here
        info = await registry.node(owner)
        if info is None or not web_url(info.url):
            return Route(MOVING)  # dead: its lease runs out soon
        # a draining holder still serves the sessions it holds (it waits for them to end);
        # when it hands them over their leases are deleted, and the answer becomes MOVING
        if not await registry.fresh(owner):
            return Route(MOVING)  # missed two beats: probably dead, do not send pages there
        return Route(REDIRECT, info.url.rstrip("/"))


def web_url(url: str) -> bool:
    """A URL a browser can be sent to (what a heartbeat carries is not trusted blindly)."""
    return url.startswith(("https://", "http://")) and len(url) <= 2048
