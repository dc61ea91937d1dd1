"""Operator bot routers of the inbox: /inbox, lead notifications, the team inbox."""
