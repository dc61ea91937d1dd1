"""Events: the typed catalog, recording (audit log and outbox), reading the audit log."""
