"""REST routes of accounts: the workspace, members, API keys."""
