"""Operator bot routers of contacts: cards, tags, notes, CSV import."""
