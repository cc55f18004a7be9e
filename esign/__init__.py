"""esign — signed mediation agreements (docs/esign.md)."""
