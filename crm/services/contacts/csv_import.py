"""CSV import of contacts: header mapping, normalization, dedupe, batched writes with audit events.

The file is read as a stream in batches; the stored contacts a batch may match are fetched with one
query per kind of identifier, the rows are resolved in memory (as if applied one by one) and written
with a handful of bulk statements in one transaction. Nothing of a batch is kept once it is
written, so memory does not grow with the file; a dry run keeps the contacts it would have touched
instead, to answer exactly as a real run would.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import datetime as dt
import io
import json
import re
import zoneinfo
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, BinaryIO

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.transactions import in_transaction

from crm.errors import NotFound, ValidationFailed
from crm.models import Company, Consent, Role, Tag, Tenant
from crm.services.access import Actor
from crm.services.contacts.identifiers import (
    build_search_text,
    normalize_email,
    normalize_phone,
    normalize_telegram_username,
    normalize_whatsapp_id,
)
from crm.services.events.catalog import ContactCreated, ContactsImported, ContactUpdated
from crm.services.events.recording import record_event
from crm.services.text import clean_text

BATCH_SIZE = 1000
MAX_REPORTED_ERRORS = 1000
SAMPLE_BYTES = 64 * 1024
_HEADER_SCAN_RECORDS = 10
_YIELD_EVERY = 20
_MAX_CACHED_NAMES = 20_000

IDENTIFIER_FIELDS = ("email", "phone", "telegram_username", "telegram_id", "whatsapp_id")
FIELDS = frozenset(
    {
        "name",
        "first_name",
        "middle_name",
        "last_name",
        "title",
        "company",
        "phone",
        "email",
        "telegram_username",
        "telegram_id",
        "whatsapp_id",
        "tags",
        "notes",
        "source",
        "timezone",
        "consent",
    }
)
_IGNORE = frozenset({"", "ignore", "-"})

# Header spellings of common exports, compared after _header_key (lower-case, single spaces,
# underscores as spaces). Several columns may map to one field: the first non-empty cell wins.
_ALIASES: dict[str, tuple[str, ...]] = {
    "name": (
        "name",
        "full name",
        "display name",
        "contact name",
        "person - name",
        "person name",
        "фио",
        "ф.и.о.",
        "имя и фамилия",
        "полное имя",
        "контакт",
        "контактное лицо",
    ),
    "first_name": ("first name", "given name", "firstname", "person - first name", "имя"),
    "middle_name": ("middle name", "additional name", "отчество"),
    "last_name": (
        "last name",
        "family name",
        "surname",
        "lastname",
        "person - last name",
        "фамилия",
    ),
    "title": (
        "title",
        "job title",
        "position",
        "organization 1 - title",
        "organization title",
        "person - job title",
        "должность",
    ),
    "company": (
        "company",
        "company name",
        "organization",
        "organisation",
        "organization 1 - name",
        "organization name",
        "organization - name",
        "person - organization",
        "account name",
        "компания",
        "организация",
        "название компании",
    ),
    "phone": (
        "phone",
        "phone number",
        "phone 1 - value",
        "mobile",
        "mobile phone",
        "mobile phone number",
        "person - phone",
        "person - phone - work",
        "person - phone - mobile",
        "work phone",
        "telephone",
        "телефон",
        "мобильный",
        "мобильный телефон",
        "номер телефона",
        "тел.",
    ),
    "email": (
        "email",
        "e-mail",
        "email address",
        "e-mail address",
        "e-mail 1 - value",
        "person - email",
        "person - email - work",
        "work email",
        "почта",
        "эл. почта",
        "эл.почта",
        "электронная почта",
        "емейл",
        "имейл",
    ),
    "telegram_username": (
        "telegram",
        "telegram username",
        "telegram handle",
        "телеграм",
        "телеграмм",
        "telegram ник",
        "ник в телеграм",
    ),
    "telegram_id": ("telegram id", "telegram user id", "телеграм id"),
    "whatsapp_id": ("whatsapp", "whatsapp id", "whatsapp number", "ватсап", "вотсап", "вацап"),
    "tags": (
        "tags",
        "tag",
        "labels",
        "group membership",
        "person - labels",
        "теги",
        "метки",
        "тэги",
    ),
    "notes": (
        "notes",
        "note",
        "comment",
        "comments",
        "заметки",
        "заметка",
        "комментарий",
        "комментарии",
        "примечание",
    ),
    "source": ("source", "lead source", "original source", "источник"),
    "timezone": ("timezone", "time zone", "часовой пояс"),
    "consent": ("consent", "согласие"),
    "custom.linkedin_url": ("url", "linkedin", "linkedin url", "profile url"),
}


def _header_key(text: str) -> str:
    return " ".join(text.replace("\ufeff", "").replace("_", " ").strip().strip('"').lower().split())


_AUTO_MAPPING: dict[str, str] = {
    _header_key(alias): target for target, aliases in _ALIASES.items() for alias in aliases
}
for _name in FIELDS:
    _AUTO_MAPPING.setdefault(_header_key(_name), _name)

_MAX_LENGTH = {"name": 200, "title": 200, "company": 200, "source": 64, "tags": 64}
_BAD_CHARS = re.compile("[\x00\udc80-\udcff]")
_TELEGRAM_ID = re.compile(r"^-?\d{1,19}$")
_TAG_SPLIT = re.compile(r"\s*(?:[,;]|:::)\s*")
_FORMULA_START = frozenset("=+-@\t\r")
_CONSENT_VALUES = {
    "granted": Consent.GRANTED,
    "yes": Consent.GRANTED,
    "true": Consent.GRANTED,
    "opted_out": Consent.OPTED_OUT,
    "opted out": Consent.OPTED_OUT,
    "opt-out": Consent.OPTED_OUT,
    "unsubscribed": Consent.OPTED_OUT,
    "no": Consent.OPTED_OUT,
    "false": Consent.OPTED_OUT,
    "unknown": Consent.UNKNOWN,
}


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@dataclass(frozen=True)
class RowError:
    """A row's problem: its number in the file (the header is row 1), the field and why.

    ``level`` "error": the row was rejected; "warning": the row was imported without the field
    (a bad identifier beside a good one).
    """

    row: int
    field: str
    reason: str
    level: str = "error"


@dataclass
class ImportResult:
    """What an import did (or, in a dry run, would do)."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: list[RowError] = field(default_factory=list)
    rejected: int = 0
    warned: int = 0  # rows imported without a bad field

    def as_dict(self) -> dict[str, Any]:
        """The API shape: counts, and the rejected rows and warnings by row."""
        return {
            "created": self.created,
            "updated": self.updated,
            "skipped": self.skipped,
            "errors": [
                {"row": e.row, "field": e.field, "reason": e.reason, "level": e.level}
                for e in self.errors
            ],
        }


# --------------------------------------------------------------------------- reading the file


class _PrefixedReader(io.RawIOBase):
    """The sniffed head of the file followed by the rest of the stream, without seeking."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _mark_undecodable(exc: UnicodeError) -> tuple[str, int]:
    """Like surrogateescape (bytes >= 0x80 keep their value), but for any byte and codec."""
    assert isinstance(exc, UnicodeDecodeError)
    bad = exc.object[exc.start : exc.end]
    return "".join(chr(0xDC00 + b) if b >= 0x80 else "\udc80" for b in bad), exc.end


codecs.register_error("crm-import-undecodable", _mark_undecodable)


def _detect_encoding(head: bytes) -> tuple[str, bool]:
    """The encoding of the file and whether its head was plain ASCII (so cp1251 may follow)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", False
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "cp1251", False
    return "utf-8", head.isascii()


def _detect_delimiter(sample: str) -> str:
    """``,``, ``;`` or tab: csv.Sniffer first, else the most frequent one in the first lines."""
    sample = sample[: 16 * 1024]
    if "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
        if delimiter in sample:
            return delimiter
    except csv.Error:
        pass
    lines = [line for line in sample.splitlines()[:10] if line.strip()]
    counts = {d: sum(line.count(d) for line in lines) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


# --------------------------------------------------------------------------- parsing rows


@dataclass(slots=True)
class _Row:
    """A data row, normalized; ``values`` holds only the non-empty contact columns."""

    row: int
    values: dict[str, Any]
    company: tuple[str, str] | None = None
    tags: dict[str, str] | None = None
    note: str | None = None
    custom: dict[str, str] | None = None
    warnings: list[RowError] = field(default_factory=list)


def _first(value: str) -> str:
    # Google Contacts puts several values in one cell separated by " ::: ".
    return value.split(":::", 1)[0].strip() if ":::" in value else value


class _RowParser:
    """Turns the cells of one record into a normalized _Row or a list of errors."""

    def __init__(
        self, columns: list[tuple[int, str, str]], width: int, region: str, recover_cp1251: bool
    ) -> None:
        self.columns = columns  # (cell index, field, header as written)
        self.width = width
        self.region = region
        self.recover_cp1251 = recover_cp1251

    def parse(self, row_no: int, cells: list[str]) -> _Row | list[RowError] | None:
        """None for a blank row."""
        if len(cells) != self.width:
            if not any(c.strip() for c in cells):
                return None
            if len(cells) < self.width or any(c.strip() for c in cells[self.width :]):
                reason = f"has {len(cells)} columns, the header has {self.width}"
                return [RowError(row_no, "row", reason)]
        raw: dict[str, str] = {}
        errors: list[RowError] = []
        for index, name, header in self.columns:
            value = cells[index].strip()
            if not value or name in raw:
                continue
            if _BAD_CHARS.search(value):
                fixed = self._recover(value)
                if fixed is None:
                    reason = f"column '{header}' has bytes that are not text in the file's encoding"
                    errors.append(RowError(row_no, name, reason))
                    continue
                value = fixed
            if value[0] == "'" and len(value) > 1 and value[1] in _FORMULA_START:
                value = value[1:]  # undo the spreadsheet-formula guard of our own export
            raw[name] = clean_text(value)  # as stored from any other source
        if errors:
            return errors
        if not raw:
            if any(c.strip() for c in cells):
                return [RowError(row_no, "identifier", "no identifier")]
            return None
        return self._normalize(row_no, raw)

    def _recover(self, value: str) -> str | None:
        if "\x00" in value or not self.recover_cp1251:
            return None
        # The head of the file was plain ASCII and read as UTF-8; these bytes are cp1251 text.
        try:
            return value.encode("utf-8", "surrogateescape").decode("cp1251")
        except UnicodeError:
            return None

    def _normalize(self, row_no: int, raw: dict[str, str]) -> _Row | list[RowError]:
        values: dict[str, Any] = {}
        errors: list[RowError] = []

        def fail(name: str, reason: str) -> None:
            errors.append(RowError(row_no, name, reason))

        try:
            email = normalize_email(_first(raw["email"])) if "email" in raw else None
            if email:
                values["email"] = email
        except ValidationFailed as exc:
            fail("email", exc.errors[0].reason)
        try:
            phone = normalize_phone(_first(raw["phone"]), self.region) if "phone" in raw else None
            if phone:
                values["phone"] = phone
        except ValidationFailed as exc:
            fail("phone", exc.errors[0].reason)
        try:
            if "telegram_username" in raw:
                values["telegram_username"] = normalize_telegram_username(raw["telegram_username"])
        except ValidationFailed as exc:
            fail("telegram_username", exc.errors[0].reason)
        if "telegram_id" in raw:
            text = raw["telegram_id"]
            if _TELEGRAM_ID.match(text) and -(2**63) <= int(text) < 2**63:
                values["telegram_id"] = int(text)
            else:
                fail("telegram_id", f"'{text}' is not a Telegram user id (digits)")
        try:
            if "whatsapp_id" in raw:
                values["whatsapp_id"] = normalize_whatsapp_id(raw["whatsapp_id"])
        except ValidationFailed as exc:
            fail("whatsapp_id", exc.errors[0].reason)

        name = raw.get("name") or " ".join(
            raw[p] for p in ("first_name", "middle_name", "last_name") if p in raw
        )
        if name:
            values["name"] = name
        for key in ("name", "title", "source"):
            if key in values or key in raw:
                text = values.get(key) or raw[key]
                if len(text) > _MAX_LENGTH[key]:
                    fail(key, f"is longer than {_MAX_LENGTH[key]} characters")
                values[key] = text
        if "timezone" in raw:
            if raw["timezone"] in _timezones():
                values["timezone"] = raw["timezone"]
            else:
                fail("timezone", f"'{raw['timezone']}' is not an IANA time zone like Europe/Berlin")
        if "consent" in raw:
            consent = _CONSENT_VALUES.get(raw["consent"].lower())
            if consent is None:
                fail("consent", f"'{raw['consent']}' is not one of granted, opted_out, unknown")
            elif consent is not Consent.UNKNOWN:
                values["consent"] = consent.value

        row = _Row(row_no, values)
        if "company" in raw:
            company = raw["company"]
            if len(company) > _MAX_LENGTH["company"]:
                fail("company", f"is longer than {_MAX_LENGTH['company']} characters")
            row.company = (company.lower(), company)
        if "tags" in raw:
            tags: dict[str, str] = {}
            for tag in _TAG_SPLIT.split(raw["tags"]):
                # Google's system groups ("* myContacts", "* starred") are not the user's labels.
                if not tag or tag.startswith("* "):
                    continue
                if len(tag) > _MAX_LENGTH["tags"]:
                    fail("tags", f"'{tag[:20]}...' is longer than {_MAX_LENGTH['tags']} characters")
                tags.setdefault(tag.lower(), tag)
            row.tags = tags or None
        if "notes" in raw:
            row.note = raw["notes"]
        custom = {k[7:]: v for k, v in raw.items() if k.startswith("custom.")}
        row.custom = custom or None

        # A bad identifier beside a good one loses only that field: the row is still the
        # person, and the report says which field was left out and why.
        if any(k in values for k in IDENTIFIER_FIELDS) and all(
            e.field in IDENTIFIER_FIELDS for e in errors
        ):
            row.warnings = [
                RowError(e.row, e.field, f"{e.reason}; imported without it", "warning")
                for e in errors
            ]
            return row
        if errors:
            return errors
        if not any(k in values for k in IDENTIFIER_FIELDS):
            return [RowError(row_no, "identifier", "no identifier")]
        return row


def _build_columns(
    header: list[str], mapping: dict[str, str] | None
) -> tuple[list[tuple[int, str, str]], set[str]]:
    """The mapped columns (index, field, header) and the mapping keys found in the header."""
    columns: list[tuple[int, str, str]] = []
    found: set[str] = set()
    for index, text in enumerate(header):
        key = _header_key(text)
        if mapping is not None and key in mapping:
            found.add(key)
            target = mapping[key]
            if target in _IGNORE:
                continue
        elif key in _AUTO_MAPPING:
            target = _AUTO_MAPPING[key]
        else:
            continue
        columns.append((index, target, text.replace("\ufeff", "").strip()))
    return columns, found


def _check_mapping(mapping: dict[str, str] | None) -> dict[str, str] | None:
    if mapping is None:
        return None
    if not isinstance(mapping, dict):
        raise ValidationFailed("mapping", "must be an object of CSV column -> field")
    checked: dict[str, str] = {}
    for column, target in mapping.items():
        if not isinstance(column, str) or not isinstance(target, str):
            raise ValidationFailed("mapping", "column names and fields must be strings")
        target = target.strip()
        if target.lower() in _IGNORE:
            target = ""
        elif target.startswith("custom."):
            key = target[7:].strip()
            if not key or len(key) > 64:
                raise ValidationFailed("mapping", f"'{target}': a custom field needs a short key")
            target = "custom." + key
        elif target not in FIELDS:
            allowed = ", ".join(sorted(FIELDS))
            raise ValidationFailed(
                "mapping", f"'{target}' is not a field; use one of {allowed}, custom.<key>"
            )
        checked[_header_key(column)] = target
    return checked


# --------------------------------------------------------------------------- resolving a batch

# The company of a stored contact whose name was not needed yet (no row of its batch names one).
_NOT_LOADED = "\x00not loaded"
_SCALAR_FIELDS = (
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
_FETCHED = (
    "id",
    "owner_id",
    "company_id",
    "custom_fields",
    "opted_out_at",
    *_SCALAR_FIELDS,
)


class _Rec:
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
        for name in IDENTIFIER_FIELDS:
            value = self.state.get(name)
            if value is not None:
                yield name, value


def _is_empty(name: str, value: Any) -> bool:
    return value is None or value == "" or (name == "consent" and value == Consent.UNKNOWN.value)


def _diff(rec: _Rec, row: _Row, overwrite: bool) -> dict[str, Any]:
    """What the row would change on the contact: {field: new value}."""
    changes: dict[str, Any] = {}
    state = rec.state
    for name, value in row.values.items():
        current = state.get(name)
        if current != value and (overwrite or _is_empty(name, current)):
            changes[name] = value
    if row.company is not None:
        current = state.get("company")
        if current != row.company[0] and (overwrite or current is None):
            changes["company"] = row.company[0]
    if row.custom:
        for key, value in row.custom.items():
            current = rec.custom.get(key)
            if current != value and (overwrite or _is_empty(key, current)):
                changes["custom." + key] = value
    if row.tags:
        added = {k: v for k, v in row.tags.items() if k not in rec.tags and k not in rec.new_tags}
        if added:
            changes["tags"] = added
    if row.note and row.note not in rec.notes and row.note not in rec.new_notes:
        changes["notes"] = row.note
    return changes


class _Resolver:
    """Matches the rows of a batch to contacts and merges them, as if applied one by one."""

    def __init__(self, actor: Actor, overwrite: bool) -> None:
        self.actor = actor
        self.overwrite = overwrite
        self.index: dict[tuple[str, Any], _Rec] = {}
        self.by_id: dict[int, _Rec] = {}
        self.new: list[_Rec] = []
        self.company_names: dict[str, str] = {}
        self.may_change_any = actor.has_role(Role.ADMIN)

    def reset(self) -> None:
        self.index.clear()
        self.by_id.clear()
        self.new = []
        self.company_names.clear()

    def add_stored(self, data: dict[str, Any]) -> _Rec:
        rec = _Rec({k: data[k] for k in _SCALAR_FIELDS}, data["id"])
        rec.state["company"] = _NOT_LOADED if data["company_id"] is not None else None
        custom = data["custom_fields"]
        rec.custom = dict(json.loads(custom) if isinstance(custom, str) else custom or {})
        rec.owner_id = data["owner_id"]
        rec.company_id = data["company_id"]
        rec.opted_out_at = data["opted_out_at"]
        self.by_id[data["id"]] = rec
        for key in rec.identifiers():
            self.index.setdefault(key, rec)
        return rec

    def apply(self, row: _Row, counts: ImportResult, errors: list[RowError]) -> None:
        matches: list[tuple[str, _Rec]] = []
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

    def _create(self, row: _Row) -> None:
        state = dict(row.values)
        rec = _Rec(state)
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

    def _apply_changes(self, rec: _Rec, row: _Row, changes: dict[str, Any]) -> None:
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


# --------------------------------------------------------------------------- writing a batch


class _Sql:
    """Bulk statements: COPY and unnest() arrays on PostgreSQL, executemany on SQLite."""

    def __init__(self, conn: BaseDBAsyncClient) -> None:
        self.conn = conn
        self.pg = conn.capabilities.dialect == "postgres"

    async def insert(
        self,
        table: str,
        consts: list[tuple[str, Any]],
        columns: list[str],
        rows: list[tuple[Any, ...]],
        *,
        returning: str | None = None,
    ) -> list[dict[str, Any]]:
        """Insert ``rows`` (values of ``columns``) with ``consts`` on every row."""
        if not rows:
            return []
        names = [c[0] for c in consts] + columns
        const_values = tuple(c[1] for c in consts)
        if self.pg:
            # COPY: the cheapest way in; ids, where needed, were drawn beforehand.
            assert returning is None
            try:
                async with self.conn.acquire_connection() as raw:
                    await raw.copy_records_to_table(
                        table, records=[const_values + tuple(r) for r in rows], columns=names
                    )
            except Exception as exc:
                # The driver's own errors: translate them as tortoise does for its queries.
                sqlstate = str(getattr(exc, "sqlstate", ""))
                if sqlstate.startswith("23"):  # integrity constraint violation
                    raise IntegrityError(exc) from exc
                if sqlstate.startswith("40"):  # deadlock, serialization failure
                    raise OperationalError(exc) from exc
                raise
            return []
        one = "(" + ", ".join("?" * len(names)) + ")"
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES "
        if not returning:
            await self.conn.execute_many(sql + one, [[*const_values, *r] for r in rows])
            return []
        out: list[dict[str, Any]] = []
        chunk = max(1, 30000 // len(names))  # below SQLite's limit of 32766 variables
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            params = [v for r in part for v in (*const_values, *r)]
            out.extend(
                await self.conn.execute_query_dict(
                    f"{sql}{', '.join([one] * len(part))} RETURNING {returning}", params
                )
            )
        return out

    async def next_ids(self, table: str, count: int) -> list[int]:
        """``count`` fresh ids from the sequence behind ``table``.id (PostgreSQL)."""
        rows = await self.conn.execute_query_dict(
            "SELECT nextval(pg_get_serial_sequence($1, 'id')) AS id FROM generate_series(1, $2)",
            [table, count],
        )
        return [int(r["id"]) for r in rows]

    async def update_contacts(self, tenant_id: int, rows: list[tuple[Any, ...]]) -> None:
        """Write the contact columns of ``rows`` (values of the write columns, then the id)."""
        names = [c for c, _ in _CONTACT_WRITE_COLUMNS]
        if self.pg:
            # One statement for the batch, joined on the primary key.
            sets = ", ".join(f"{c} = u.{c}" for c in names)
            arrays = ", ".join(
                f"${i + 3}::{t}[]"
                for i, (_, t) in enumerate([*_CONTACT_WRITE_COLUMNS, ("id", "int")])
            )
            await self.conn.execute_query(
                f"UPDATE contact AS c SET {sets}, updated_at = $2 "
                f"FROM unnest({arrays}) AS u({', '.join(names)}, id) "
                "WHERE c.id = u.id AND c.tenant_id = $1",
                [tenant_id, dt.datetime.now(dt.UTC), *[list(c) for c in zip(*rows, strict=True)]],
            )
            return
        sets = ", ".join(f"{c} = ?" for c in names)
        await self.conn.execute_many(
            f"UPDATE contact SET {sets}, updated_at = ? WHERE id = ? AND tenant_id = ?",
            [[*r[:-1], dt.datetime.now(dt.UTC), r[-1], tenant_id] for r in rows],
        )

    async def find_contacts(
        self, tenant_id: int, wanted: dict[str, set[Any]], *, lock: bool
    ) -> list[dict[str, Any]]:
        """Stored contacts of the tenant having any of the ``wanted`` identifier values."""
        columns = ", ".join(_FETCHED)
        found: list[dict[str, Any]] = []
        for name, values in wanted.items():
            if not values:
                continue
            if self.pg:
                # One probe of the (tenant, identifier) unique index per value: left to itself
                # the planner prices a thousand probes above a scan of the whole tenant.
                pg_type = "bigint" if name == "telegram_id" else "text"
                locking = " FOR UPDATE" if lock else ""  # so a concurrent edit is not lost
                query = (
                    f"SELECT c.* FROM unnest($2::{pg_type}[]) AS k(v) CROSS JOIN LATERAL "
                    f"(SELECT {columns} FROM contact WHERE tenant_id = $1 AND {name} = k.v "
                    f"LIMIT 1{locking}) AS c"
                )
                params: list[Any] = [tenant_id, sorted(values)]
            else:
                marks = ", ".join("?" * len(values))
                query = f"SELECT {columns} FROM contact WHERE tenant_id = ? AND {name} IN ({marks})"
                params = [tenant_id, *values]
            found.extend(await self.conn.execute_query_dict(query, params))
        return found

    def params(self) -> _Params:
        """A builder of bind parameters ($n or ?) and their values for one statement."""
        return _Params(self.pg)


class _Params:
    """Placeholders numbered for PostgreSQL (``$1``) or positional for SQLite (``?``)."""

    def __init__(self, pg: bool) -> None:
        self.pg = pg
        self.values: list[Any] = []

    def one(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}" if self.pg else "?"

    def any_of(self, column: str, values: list[Any], pg_type: str) -> str:
        """``column`` equal to any of ``values``."""
        if self.pg:
            self.values.append(list(values))
            return f"{column} = ANY(${len(self.values)}::{pg_type}[])"
        self.values.extend(values)
        return f"{column} IN ({', '.join('?' * len(values))})"


_CONTACT_WRITE_COLUMNS: list[tuple[str, str]] = [
    ("name", "text"),
    ("title", "text"),
    ("company_id", "int"),
    ("phone", "text"),
    ("email", "text"),
    ("telegram_username", "text"),
    ("telegram_id", "bigint"),
    ("whatsapp_id", "text"),
    ("custom_fields", "jsonb"),
    ("source", "text"),
    ("consent", "text"),
    ("opted_out_at", "timestamptz"),
    ("timezone", "text"),
    ("search_text", "text"),
]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _contact_values(rec: _Rec, company_ids: dict[str, int]) -> tuple[Any, ...]:
    s = rec.state
    company = s.get("company")
    company_id = company_ids[company] if company is not None and company in company_ids else None
    if company_id is None and "company" not in rec.before and rec.id is not None:
        company_id = rec.company_id
    return (
        s.get("name") or "",
        s.get("title"),
        company_id,
        s.get("phone"),
        s.get("email"),
        s.get("telegram_username"),
        s.get("telegram_id"),
        s.get("whatsapp_id"),
        _json(rec.custom),
        s.get("source"),
        s.get("consent") or Consent.UNKNOWN.value,
        rec.opted_out_at,
        s.get("timezone"),
        build_search_text(
            s.get("name"), s.get("email"), s.get("phone"), s.get("telegram_username")
        ),
    )


# What an audit event of an imported contact records: its scalar fields and its company.
_EVENT_FIELDS = ("company", *_SCALAR_FIELDS)


def _created_snapshot(rec: _Rec, company_names: dict[str, str]) -> dict[str, Any]:
    after: dict[str, Any] = {}
    for name in _EVENT_FIELDS:
        value = rec.state.get(name)
        if not _is_empty(name, value):
            after[name] = company_names.get(str(value), value) if name == "company" else value
    if rec.custom:
        after["custom_fields"] = rec.custom
    if rec.new_tags:
        after["tags"] = list(rec.new_tags.values())
    if rec.new_notes:
        after["notes_added"] = len(rec.new_notes)
    return after


def _update_snapshots(
    rec: _Rec, company_names: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
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


# --------------------------------------------------------------------------- the import


class _Import:
    def __init__(self, actor: Actor, tenant: Tenant, *, dry_run: bool, overwrite: bool) -> None:
        self.actor = actor
        self.tenant_id = tenant.id
        self.dry_run = dry_run
        self.overwrite = overwrite
        self.resolver = _Resolver(actor, overwrite)
        self.company_cache: dict[str, int] = {}
        self.tag_cache: dict[str, int] = {}
        self.result = ImportResult()
        self.unreported_from: int | None = None
        self.inserted = 0
        self.inserted_at_analyze = 0

    def add_errors(self, errors: list[RowError]) -> None:
        if any(e.level == "error" for e in errors):
            self.result.rejected += 1
        else:
            self.result.warned += 1
        for error in errors:
            if len(self.result.errors) < MAX_REPORTED_ERRORS:
                self.result.errors.append(error)
            elif self.unreported_from is None:
                self.unreported_from = error.row

    async def run_batch(self, rows: list[_Row], rejected: list[list[RowError]]) -> None:
        """Resolve and write one batch; ``rejected`` are its rows that failed to parse."""
        counts, errors = ImportResult(), list(rejected)
        errors += [row.warnings for row in rows if row.warnings]
        if rows:
            try:
                async with _batch_transaction() as conn:
                    counts, resolve_errors = await self._resolve_and_write(rows, conn)
                errors += resolve_errors
            except (IntegrityError, OperationalError):
                if self.dry_run:
                    raise
                # Someone saved a clashing contact meanwhile (or the batch swaps identifiers
                # between contacts): redo the batch row by row so only the clashing rows fail.
                counts = await self._run_rows_one_by_one(rows, errors)
        self.result.created += counts.created
        self.result.updated += counts.updated
        self.result.skipped += counts.skipped
        for row_errors in sorted(errors, key=lambda e: e[0].row):
            self.add_errors(row_errors)
        if not self.dry_run:
            self.inserted += counts.created
            await self._refresh_statistics()

    async def _refresh_statistics(self) -> None:
        """ANALYZE the contact tables each time this import has doubled the tenant's rows.

        Statistics that predate the import describe the tenant as (nearly) empty; the planner
        then probes its contacts through any index that starts with tenant_id and walks the
        whole tenant for every identifier looked up: quadratic in the size of the import.
        """
        conn = connections.get("default")
        if conn.capabilities.dialect != "postgres":
            return
        if self.inserted < BATCH_SIZE or self.inserted < 2 * self.inserted_at_analyze:
            return
        # Without ownership of the tables PostgreSQL skips this with a warning: harmless.
        await conn.execute_script("ANALYZE contact, contact_tag")
        self.inserted_at_analyze = self.inserted

    async def _run_rows_one_by_one(
        self, rows: list[_Row], errors: list[list[RowError]]
    ) -> ImportResult:
        total = ImportResult()
        for row in rows:
            self.company_cache.clear()  # it may hold rows of the transaction rolled back
            self.tag_cache.clear()
            try:
                async with _batch_transaction() as conn:
                    counts, row_errors = await self._resolve_and_write([row], conn)
            except IntegrityError as exc:
                reason = f"clashes with a contact saved at the same time: {exc}"
                errors.append([RowError(row.row, "row", reason[:300])])
                continue
            errors += row_errors
            total.created += counts.created
            total.updated += counts.updated
            total.skipped += counts.skipped
        return total

    async def _resolve_and_write(
        self, rows: list[_Row], conn: BaseDBAsyncClient
    ) -> tuple[ImportResult, list[list[RowError]]]:
        resolver = self.resolver
        if not self.dry_run:
            resolver.reset()
        await self._load(rows, conn)
        counts = ImportResult()
        errors: list[list[RowError]] = []
        for row in rows:
            row_errors: list[RowError] = []
            resolver.apply(row, counts, row_errors)
            if row_errors:
                errors.append(row_errors)
        if self.dry_run:
            resolver.new = []  # they stay in the index only: memory is what a dry run pays
        else:
            await self._write(conn)
        return counts, errors

    async def _load(self, rows: list[_Row], conn: BaseDBAsyncClient) -> None:
        """Fetch the stored contacts any row of the batch may match, with their tags and notes."""
        wanted: dict[str, set[Any]] = {name: set() for name in IDENTIFIER_FIELDS}
        has_company = has_tags = False
        bodies: set[str] = set()
        for row in rows:
            for name in IDENTIFIER_FIELDS:
                value = row.values.get(name)
                if value is not None:
                    wanted[name].add(value)
            has_company = has_company or row.company is not None
            has_tags = has_tags or bool(row.tags)
            if row.note:
                bodies.add(row.note)
        db = conn
        sql = _Sql(db)
        resolver = self.resolver
        for cache in (self.company_cache, self.tag_cache):
            if len(cache) > _MAX_CACHED_NAMES:
                cache.clear()  # bounded, so memory stays flat with many distinct companies
        recs: list[_Rec] = []
        seen: set[int] = set()
        stored = await sql.find_contacts(self.tenant_id, wanted, lock=not self.dry_run)
        for data in sorted(stored, key=lambda d: int(d["id"])):
            if data["id"] in seen:
                continue
            seen.add(data["id"])
            recs.append(resolver.by_id.get(data["id"]) or resolver.add_stored(data))
        if not recs:
            return
        if has_company:
            pending = [rec for rec in recs if rec.state.get("company") == _NOT_LOADED]
            company_ids = {rec.company_id for rec in pending if rec.company_id is not None}
            names: dict[int, tuple[str, str]] = {}
            if company_ids:
                for c in (
                    await Company.filter(tenant_id=self.tenant_id, id__in=company_ids)
                    .using_db(db)
                    .values("id", "name", "name_key")
                ):
                    names[c["id"]] = (c["name_key"], c["name"])
                    resolver.company_names.setdefault(c["name_key"], c["name"])
            for rec in pending:
                key = names.get(rec.company_id) if rec.company_id is not None else None
                rec.state["company"] = key[0] if key else None
        if has_tags:
            pending = [rec for rec in recs if not rec.tags_loaded]
            if pending:
                by_id = {rec.id: rec for rec in pending}
                p = sql.params()
                clause = p.any_of("ct.contact_id", list(by_id), "int")
                for r in await db.execute_query_dict(
                    "SELECT ct.contact_id, t.name_key FROM contact_tag ct "
                    f"JOIN tag t ON t.id = ct.tag_id WHERE {clause}",
                    p.values,
                ):
                    by_id[r["contact_id"]].tags.add(r["name_key"])
                for rec in pending:
                    rec.tags_loaded = True
        if bodies:
            by_id = {rec.id: rec for rec in recs}
            p = sql.params()
            where = (
                f"tenant_id = {p.one(self.tenant_id)} AND "
                f"{p.any_of('contact_id', list(by_id), 'int')} AND "
                f"{p.any_of('body', list(bodies), 'text')}"
            )
            for r in await db.execute_query_dict(
                f"SELECT contact_id, body FROM note WHERE {where}", p.values
            ):
                by_id[r["contact_id"]].notes.add(r["body"])

    async def _ensure(
        self, conn: BaseDBAsyncClient, model: Any, cache: dict[str, int], names: dict[str, str]
    ) -> None:
        """Find or create the companies or tags named ``names`` ({name_key: name})."""
        missing = [k for k in names if k not in cache]
        if not missing:
            return
        for _ in range(2):
            for found in (
                await model.filter(tenant_id=self.tenant_id, name_key__in=missing)
                .using_db(conn)
                .values("id", "name_key")
            ):
                cache[found["name_key"]] = found["id"]
            missing = [k for k in missing if k not in cache]
            if not missing:
                return
            await model.bulk_create(
                [model(tenant_id=self.tenant_id, name=names[k], name_key=k) for k in missing],
                ignore_conflicts=True,
                using_db=conn,
            )
        raise IntegrityError(f"could not create {model.__name__} {missing[0]!r}")

    async def _write(self, conn: BaseDBAsyncClient) -> None:
        resolver = self.resolver
        updated = [rec for rec in resolver.by_id.values() if rec.changed]
        created = resolver.new
        if not updated and not created:
            return
        sql = _Sql(conn)
        now = dt.datetime.now(dt.UTC)
        touched = updated + created

        company_names = {
            rec.state["company"]: resolver.company_names[rec.state["company"]]
            for rec in touched
            if rec.state.get("company") and (rec.id is None or "company" in rec.before)
        }
        await self._ensure(conn, Company, self.company_cache, company_names)
        tag_names = {k: v for rec in touched for k, v in rec.new_tags.items()}
        await self._ensure(conn, Tag, self.tag_cache, tag_names)

        if updated:
            # Updates first: an overwrite may free an identifier that a new contact then takes.
            await sql.update_contacts(
                self.tenant_id,
                [(*_contact_values(rec, self.company_cache), rec.id) for rec in updated],
            )
        if sql.pg:
            # Back to cached plans: foreign-key checks of the inserts below run one planned query
            # per row, and re-planning each of those would double the cost of the batch.
            await conn.execute_script("SET LOCAL plan_cache_mode = auto")
        if created:
            consts = [
                ("tenant_id", self.tenant_id),
                ("score", 0),
                # Like a contact created by hand: the member who imports it owns it.
                ("owner_id", self.actor.user_id),
                ("created_at", now),
                ("updated_at", now),
            ]
            columns = [c for c, _ in _CONTACT_WRITE_COLUMNS]
            values = [_contact_values(rec, self.company_cache) for rec in created]
            if sql.pg:
                # Ids drawn from the sequence up front let the rows go in by COPY.
                ids = await sql.next_ids("contact", len(created))
                for rec, contact_id in zip(created, ids, strict=True):
                    rec.id = contact_id
                rows = [(rec.id, *v) for rec, v in zip(created, values, strict=True)]
                await sql.insert("contact", consts, ["id", *columns], rows)
            else:
                returning = "id, " + ", ".join(IDENTIFIER_FIELDS)
                for data in await sql.insert(
                    "contact", consts, columns, values, returning=returning
                ):
                    # RETURNING order is not promised: match rows back by an identifier.
                    for name in IDENTIFIER_FIELDS:
                        if data[name] is not None:
                            resolver.index[(name, data[name])].id = data["id"]
                            break

        links = [(rec.id, self.tag_cache[k]) for rec in touched for k in rec.new_tags]
        await sql.insert("contact_tag", [], ["contact_id", "tag_id"], links)
        notes = [(rec.id, body) for rec in touched for body in rec.new_notes]
        await sql.insert(
            "note",
            [
                ("tenant_id", self.tenant_id),
                ("author_id", self.actor.user_id),
                ("created_at", now),
                ("updated_at", now),
            ],
            ["contact_id", "body"],
            notes,
        )
        events: list[tuple[Any, ...]] = []
        names = resolver.company_names
        for rec in created:
            events.append((ContactCreated.type, rec.id, None, _json(_created_snapshot(rec, names))))
        for rec in updated:
            before, after = _update_snapshots(rec, names)
            events.append((ContactUpdated.type, rec.id, _json(before), _json(after)))
        # Per-contact audit rows only: the one summary event below goes through the outbox.
        # Written in bulk past record_event: both types' payloads are snapshots (plain dicts).
        await sql.insert(
            "event",
            [
                ("tenant_id", self.tenant_id),
                ("entity_type", ContactCreated.entity_type),
                ("actor_type", self.actor.actor_type.value),
                ("actor_user_id", self.actor.user_id),
                ("actor_api_key_id", self.actor.api_key_id),
                ("created_at", now),
            ],
            ["type", "entity_id", "before", "after"],
            events,
        )


@dataclass
class _Batch:
    """Parsed rows on their way from the reader to the writer."""

    rows: list[_Row] = field(default_factory=list)
    rejected: list[list[RowError]] = field(default_factory=list)
    done: int = 0


@asynccontextmanager
async def _batch_transaction() -> AsyncIterator[BaseDBAsyncClient]:
    async with in_transaction() as conn:
        if conn.capabilities.dialect == "postgres":
            # Plan each statement for the table as it is now: a generic plan cached while an
            # import fills an empty table assumes it tiny and scans a whole tenant per lookup.
            await conn.execute_script("SET LOCAL plan_cache_mode = force_custom_plan")
        yield conn


def _read_records(text: io.TextIOBase, delimiter: str) -> Iterator[list[str] | csv.Error]:
    """Every record of the file; a record the csv module cannot parse comes as its error."""
    reader = csv.reader(text, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield exc


def count_rows(source: BinaryIO) -> int:
    """The data rows of a CSV (records after the first non-blank one), for a progress total.

    Reads from the current position to the end, then seeks back there. Blank records count,
    as the import's progress counts them.
    """
    start = source.tell()
    try:
        head = source.read(SAMPLE_BYTES)
        if not head:
            return 0
        encoding, _ascii = _detect_encoding(head)
        delimiter = _detect_delimiter(head.decode(encoding, errors="replace"))
        text = io.TextIOWrapper(
            io.BufferedReader(_PrefixedReader(head, source)),
            encoding=encoding,
            errors="replace",
            newline="",
        )
        records, header_seen = 0, False
        for record in _read_records(text, delimiter):
            if header_seen:
                records += 1
            elif not isinstance(record, csv.Error) and any(c.strip() for c in record):
                header_seen = True
        text.detach()
        return records
    finally:
        source.seek(start)


async def do_import_contacts(
    actor: Actor,
    source: BinaryIO,
    *,
    dry_run: bool = False,
    mapping: dict[str, str] | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportResult:
    """Import contacts from a CSV stream: map, normalize, dedupe, write in batches, report."""
    actor.require_write()
    checked_mapping = _check_mapping(mapping)
    tenant = await Tenant.get_or_none(id=actor.tenant_id)
    if tenant is None:
        raise NotFound("organization", actor.tenant_id)

    head = source.read(SAMPLE_BYTES)
    if not head or not head.strip():
        raise ValidationFailed("file", "is empty")
    encoding, ascii_head = _detect_encoding(head)
    delimiter = _detect_delimiter(head.decode(encoding, errors="replace"))
    text = io.TextIOWrapper(
        io.BufferedReader(_PrefixedReader(head, source)),
        encoding=encoding,
        errors="crm-import-undecodable",
        newline="",
    )
    records = _read_records(text, delimiter)

    row_no = 0
    header: list[str] | None = None
    columns: list[tuple[int, str, str]] = []
    first_header: list[str] | None = None
    for record in records:
        row_no += 1
        if isinstance(record, csv.Error) or not any(c.strip() for c in record):
            if row_no >= _HEADER_SCAN_RECORDS:
                break
            continue
        first_header = first_header or record
        columns, found = _build_columns(record, checked_mapping)
        if any(target in IDENTIFIER_FIELDS for _, target, _ in columns):
            header = record
            break
        if row_no >= _HEADER_SCAN_RECORDS:
            break
    if header is None:
        if first_header is None:
            raise ValidationFailed("file", "has no header row")
        shown = ", ".join(repr(h.strip()[:40]) for h in first_header[:12])
        raise ValidationFailed(
            "file",
            "no column with an identifier (email, phone, Telegram, WhatsApp) was recognized "
            f"in the header: {shown}; name the columns or pass a mapping",
        )
    if checked_mapping:
        unknown = [k for k in checked_mapping if k not in found]
        if unknown:
            raise ValidationFailed("mapping", f"column '{unknown[0]}' is not in the file")

    parser = _RowParser(columns, len(header), tenant.default_region, ascii_head)
    job = _Import(actor, tenant, dry_run=dry_run, overwrite=overwrite)
    # Parsing (CPU in this process) runs one batch ahead of writing (mostly the database's CPU),
    # so the two overlap; the queue of one batch keeps memory flat.
    queue: asyncio.Queue[_Batch | BaseException | None] = asyncio.Queue(maxsize=1)

    async def produce(row_no: int) -> None:
        try:
            done = 0
            batch = _Batch()
            for record in records:
                row_no += 1
                done += 1
                if isinstance(record, csv.Error):
                    batch.rejected.append([RowError(row_no, "row", f"is not valid CSV: {record}")])
                else:
                    parsed = parser.parse(row_no, record)
                    if isinstance(parsed, list):
                        batch.rejected.append(parsed)
                    elif parsed is not None:
                        batch.rows.append(parsed)
                if done % batch_size == 0:
                    batch.done = done
                    await queue.put(batch)
                    batch = _Batch()
                elif done % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let the writer (and other requests) move on
            batch.done = done
            await queue.put(batch)
            await queue.put(None)
        except BaseException as exc:
            await queue.put(exc)
            raise

    producer = asyncio.create_task(produce(row_no))
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            await job.run_batch(item.rows, item.rejected)
            if progress is not None:
                progress(item.done)
    finally:
        if not producer.done():
            producer.cancel()
        with suppress(BaseException):
            await producer

    result = job.result
    if job.unreported_from is not None:
        result.errors.append(
            RowError(
                job.unreported_from,
                "file",
                f"{result.rejected} rows were rejected; only the first "
                f"{MAX_REPORTED_ERRORS} errors are listed",
            )
        )
    if not dry_run:
        async with in_transaction() as conn:
            await record_event(
                actor,
                ContactsImported,
                None,
                after={
                    "created": result.created,
                    "updated": result.updated,
                    "skipped": result.skipped,
                    "rejected": result.rejected,
                    "overwrite": overwrite,
                },
                using_db=conn,
            )
    return result
