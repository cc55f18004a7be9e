"""signaling — tokens, socket.io and HTTP, the conductor (docs/protocol.md)."""
