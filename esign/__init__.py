"""esign — see DESIGN.md."""
