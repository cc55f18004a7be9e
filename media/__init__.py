"""media — SFU-lite on aiortc, forwarding encoded frames (docs/media.md)."""
