"""Recording: the recorder as a hidden subscriber (not built yet; docs/decisions.md, decision 11)."""
