"""Recording: the recorder as a hidden subscriber (not built yet; see DESIGN.md "Recording")."""
