"""Running Parley on several nodes over one Redis: the ledger as Redis Streams, the node
registry with session leases, and placement (docs/scaling.md). Nothing here is imported by
the embedded default; ``rooms`` never imports ``cluster``."""
