"""Remote visitation: the directory of sites and people, staff grants per site, CSV import,
booking rules and the reservation store (docs/visitation.md)."""
