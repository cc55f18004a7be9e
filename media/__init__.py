"""media — see DESIGN.md."""
