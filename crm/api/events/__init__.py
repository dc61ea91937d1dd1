"""REST routes of events: the audit log."""
