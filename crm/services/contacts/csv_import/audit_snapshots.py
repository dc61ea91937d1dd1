"""What the audit events of imported contacts record: snapshots of a created or updated contact."""

from __future__ import annotations

from typing import Any

from crm.services.contacts.csv_import.matching import SCALAR_FIELDS, ContactRecord, is_empty

# What an audit event of an imported contact records: its scalar fields and its company.
_EVENT_FIELDS = ("company", *SCALAR_FIELDS)


def created_snapshot(rec: ContactRecord, company_names: dict[str, str]) -> dict[str, Any]:
    """What the audit event of a created contact records as its state after."""
    after: dict[str, Any] = {}
    for name in _EVENT_FIELDS:
        value = rec.state.get(name)
        if not is_empty(name, value):
            after[name] = company_names.get(str(value), value) if name == "company" else value
    if rec.custom:
        after["custom_fields"] = rec.custom
    if rec.new_tags:
        after["tags"] = list(rec.new_tags.values())
    if rec.new_notes:
        after["notes_added"] = len(rec.new_notes)
    return after


def update_snapshots(
    rec: ContactRecord, company_names: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields an import changed on a stored contact: (before, after)."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for name, old in rec.before.items():
        if name == "tags":
            before["tags"] = old
            after["tags"] = sorted(set(old) | set(rec.new_tags))
        elif name.startswith("custom."):
            before[name] = old
            after[name] = rec.custom.get(name[7:])
        elif name == "company":
            before["company"] = company_names.get(old, old) if old else old
            after["company"] = company_names.get(rec.state["company"], rec.state["company"])
        else:
            before[name] = old
            after[name] = rec.state.get(name)
    if rec.new_notes:
        after["notes_added"] = len(rec.new_notes)
    return before, after
