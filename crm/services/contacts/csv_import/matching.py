"""Dedupe: the rows of a batch matched to stored or new contacts and merged into them."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from crm.models import Consent, Role
from crm.services.access import Actor
from crm.services.contacts.csv_import.header_mapping import IDENTIFIER_FIELDS
from crm.services.contacts.csv_import.report import ImportResult, RowError
from crm.services.contacts.csv_import.row_parsing import ParsedRow

# The company of a stored contact whose name was not needed yet (no row of its batch names one).
NOT_LOADED = "\x00not loaded"
SCALAR_FIELDS = (
    "name",
    "title",
    "phone",
    "email",
    "telegram_username",
    "telegram_id",
    "whatsapp_id",
    "source",
    "timezone",
    "consent",
)
FETCHED_COLUMNS = (
    "id",
    "owner_id",
    "company_id",
    "custom_fields",
    "opted_out_at",
    *SCALAR_FIELDS,
)


class ContactRecord:
    """A contact as the import sees it: stored (``id`` set) or to be created."""

    __slots__ = (
        "before",
        "changed",
        "company_id",
        "custom",
        "id",
        "new_notes",
        "new_tags",
        "notes",
        "opted_out_at",
        "owner_id",
        "state",
        "tags",
        "tags_loaded",
    )

    def __init__(self, state: dict[str, Any], contact_id: int | None = None) -> None:
        self.id = contact_id
        self.state = state  # scalar fields and "company" (its lower-cased name) when known
        self.custom: dict[str, Any] = {}
        self.owner_id: int | None = None
        self.company_id: int | None = None
        self.opted_out_at: dt.datetime | None = None
        self.tags: set[str] = set()
        self.tags_loaded = contact_id is None
        self.new_tags: dict[str, str] = {}
        self.notes: set[str] = set()
        self.new_notes: list[str] = []
        self.before: dict[str, Any] = {}
        self.changed = False

    def identifiers(self) -> Iterator[tuple[str, Any]]:
        """The (field, value) identifiers the contact has."""
        for name in IDENTIFIER_FIELDS:
            value = self.state.get(name)
            if value is not None:
                yield name, value


def is_empty(name: str, value: Any) -> bool:
    """True when a field holds nothing a row should not overwrite (unknown consent too)."""
    return value is None or value == "" or (name == "consent" and value == Consent.UNKNOWN.value)


def _diff(rec: ContactRecord, row: ParsedRow, overwrite: bool) -> dict[str, Any]:
    """What the row would change on the contact: {field: new value}."""
    changes: dict[str, Any] = {}
    state = rec.state
    for name, value in row.values.items():
        current = state.get(name)
        if current != value and (overwrite or is_empty(name, current)):
            changes[name] = value
    if row.company is not None:
        current = state.get("company")
        if current != row.company[0] and (overwrite or current is None):
            changes["company"] = row.company[0]
    if row.custom:
        for key, value in row.custom.items():
            current = rec.custom.get(key)
            if current != value and (overwrite or is_empty(key, current)):
                changes["custom." + key] = value
    if row.tags:
        added = {k: v for k, v in row.tags.items() if k not in rec.tags and k not in rec.new_tags}
        if added:
            changes["tags"] = added
    if row.note and row.note not in rec.notes and row.note not in rec.new_notes:
        changes["notes"] = row.note
    return changes


class Resolver:
    """Matches the rows of a batch to contacts and merges them, as if applied one by one."""

    def __init__(self, actor: Actor, overwrite: bool) -> None:
        self.actor = actor
        self.overwrite = overwrite
        self.index: dict[tuple[str, Any], ContactRecord] = {}
        self.by_id: dict[int, ContactRecord] = {}
        self.new: list[ContactRecord] = []
        self.company_names: dict[str, str] = {}
        self.may_change_any = actor.has_role(Role.ADMIN)

    def reset(self) -> None:
        """Forget the contacts of the previous batch."""
        self.index.clear()
        self.by_id.clear()
        self.new = []
        self.company_names.clear()

    def add_stored(self, data: dict[str, Any]) -> ContactRecord:
        """Index a stored contact fetched for the batch."""
        rec = ContactRecord({k: data[k] for k in SCALAR_FIELDS}, data["id"])
        rec.state["company"] = NOT_LOADED if data["company_id"] is not None else None
        custom = data["custom_fields"]
        rec.custom = dict(json.loads(custom) if isinstance(custom, str) else custom or {})
        rec.owner_id = data["owner_id"]
        rec.company_id = data["company_id"]
        rec.opted_out_at = data["opted_out_at"]
        self.by_id[data["id"]] = rec
        for key in rec.identifiers():
            self.index.setdefault(key, rec)
        return rec

    def apply(self, row: ParsedRow, counts: ImportResult, errors: list[RowError]) -> None:
        """Match a row to a contact and merge it, or create one; count it or record why not."""
        matches: list[tuple[str, ContactRecord]] = []
        for name in IDENTIFIER_FIELDS:
            value = row.values.get(name)
            if value is None:
                continue
            rec = self.index.get((name, value))
            if rec is not None and all(rec is not m for _, m in matches):
                matches.append((name, rec))
        if len(matches) > 1:
            (first, _), (second, _) = matches[0], matches[1]
            errors.append(
                RowError(
                    row.row,
                    second,
                    f"belongs to a different contact than the {first}; "
                    "fix the row or merge the two contacts first",
                )
            )
            return
        if not matches:
            self._create(row)
            counts.created += 1
            return
        matched_by, rec = matches[0]
        changes = _diff(rec, row, self.overwrite)
        if not changes:
            counts.skipped += 1
            return
        if (
            not self.may_change_any
            and rec.owner_id is not None
            and rec.owner_id != self.actor.user_id
        ):
            errors.append(
                RowError(
                    row.row,
                    matched_by,
                    "matches a contact owned by another member; "
                    "a bidi may change only their own or unowned contacts",
                )
            )
            return
        self._apply_changes(rec, row, changes)
        counts.updated += 1

    def _create(self, row: ParsedRow) -> None:
        state = dict(row.values)
        rec = ContactRecord(state)
        if row.company is not None:
            state["company"] = row.company[0]
            self.company_names.setdefault(row.company[0], row.company[1])
        if row.custom:
            rec.custom = dict(row.custom)
        if row.tags:
            rec.new_tags = dict(row.tags)
        if row.note:
            rec.new_notes.append(row.note)
        if state.get("consent") == Consent.OPTED_OUT.value:
            rec.opted_out_at = dt.datetime.now(dt.UTC)
        rec.owner_id = self.actor.user_id
        rec.changed = True
        self.new.append(rec)
        for key in rec.identifiers():
            self.index[key] = rec

    def _apply_changes(self, rec: ContactRecord, row: ParsedRow, changes: dict[str, Any]) -> None:
        rec.changed = True
        for name, value in changes.items():
            if name == "tags":
                if rec.id is not None:
                    rec.before.setdefault("tags", sorted(rec.tags))
                rec.new_tags.update(value)
            elif name == "notes":
                rec.new_notes.append(value)
            elif name.startswith("custom."):
                key = name[7:]
                if rec.id is not None:
                    rec.before.setdefault(name, rec.custom.get(key))
                rec.custom[key] = value
            else:
                old = rec.state.get(name)
                if rec.id is not None:
                    rec.before.setdefault(name, old)
                rec.state[name] = value
                if name == "company":
                    assert row.company is not None
                    self.company_names.setdefault(row.company[0], row.company[1])
                elif name == "consent" and value == Consent.OPTED_OUT.value:
                    rec.opted_out_at = dt.datetime.now(dt.UTC)
                elif name in IDENTIFIER_FIELDS:
                    if old is not None and self.index.get((name, old)) is rec:
                        del self.index[(name, old)]
                    self.index[(name, value)] = rec
