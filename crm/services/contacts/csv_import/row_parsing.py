"""Row normalization and validation: a record's cells into a normalized row or its errors."""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from crm.errors import ValidationFailed
from crm.models import Consent
from crm.services.contacts.csv_import.header_mapping import IDENTIFIER_FIELDS
from crm.services.contacts.csv_import.report import RowError
from crm.services.contacts.identifiers import (
    normalize_email,
    normalize_phone,
    normalize_telegram_username,
    normalize_whatsapp_id,
)
from crm.services.text import clean_text

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


@dataclass(slots=True)
class ParsedRow:
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


class RowParser:
    """Turns the cells of one record into a normalized ParsedRow or a list of errors."""

    def __init__(
        self, columns: list[tuple[int, str, str]], width: int, region: str, recover_cp1251: bool
    ) -> None:
        self.columns = columns  # (cell index, field, header as written)
        self.width = width
        self.region = region
        self.recover_cp1251 = recover_cp1251

    def parse(self, row_no: int, cells: list[str]) -> ParsedRow | list[RowError] | None:
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

    def _normalize(self, row_no: int, raw: dict[str, str]) -> ParsedRow | list[RowError]:
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

        row = ParsedRow(row_no, values)
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
