"""The CRM service: domain, storage, HTTP API and task wiring."""
