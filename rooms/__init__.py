"""rooms — the domain: sessions as event logs (docs/rooms.md, docs/architecture.md)."""
