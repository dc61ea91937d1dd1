"""Operator bot routers of the AI: drafts and /ask."""
