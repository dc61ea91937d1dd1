"""REST routes of contacts: contacts, companies, tags, notes, CSV import and export."""
