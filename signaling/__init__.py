"""signaling — see DESIGN.md."""
