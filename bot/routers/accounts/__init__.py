"""Operator bot routers of accounts: /start, /team, /lang, /settings."""
