"""Accounts: workspaces and members, API keys, sign-in links, operators and invites."""
