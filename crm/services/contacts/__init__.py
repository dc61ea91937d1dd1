"""Contacts: contacts, companies, tags, notes, identifiers, CSV import and export."""
