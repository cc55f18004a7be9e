"""rooms — see DESIGN.md."""
