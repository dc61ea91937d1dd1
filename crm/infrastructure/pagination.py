"""Keyset (cursor) pagination shared by every list: stable under inserts, O(page) per request."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from tortoise import connections
from tortoise.expressions import Q, RawSQL

from crm.errors import ValidationFailed

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of results and the cursor of the next one (None on the last page)."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(values: list[Any]) -> str:
    """An opaque cursor for the last row of a page."""
    raw = json.dumps(values, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, length: int) -> list[Any]:
    """The values behind a cursor; a tampered or foreign cursor is a 422 on ``cursor``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("cursor", "is not a cursor this API returned") from None
    if not isinstance(values, list) or len(values) != length:
        raise ValidationFailed("cursor", "does not belong to this listing or sort order")
    return values


def check_limit(limit: int) -> int:
    """Validate a page size."""
    if limit < 1 or limit > MAX_LIMIT:
        raise ValidationFailed("limit", f"must be between 1 and {MAX_LIMIT}")
    return limit


async def paginate_by_id(
    query: Any, cursor: str | None, limit: int, *, descending: bool = False
) -> Page[Any]:
    """Page a queryset by id (ascending, or newest first): the simple case of most lists."""
    check_limit(limit)
    if cursor:
        (last_id,) = decode_cursor(cursor, 1)
        if not isinstance(last_id, int):
            raise ValidationFailed("cursor", "is not a cursor this API returned")
        query = query.filter(id__lt=last_id) if descending else query.filter(id__gt=last_id)
    rows = await query.order_by("-id" if descending else "id").limit(limit + 1)
    has_more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor([rows[-1].id]) if has_more and rows else None)


@dataclass(frozen=True)
class SortSpec:
    """One sortable column: ``field`` is what SQL orders by, ``attr`` what the cursor keeps."""

    attr: str
    kind: Literal["str", "datetime", "decimal", "int"]
    # SQL expression to order by instead of the column (decimals are text on SQLite).
    expression: str | None = None

    @property
    def field(self) -> str:
        return f"_sort_{self.attr}" if self.expression else self.attr


def numeric_sort(table: str, column: str) -> SortSpec:
    """Sort a DecimalField numerically on every database (SQLite stores it as text)."""
    return SortSpec(column, "decimal", expression=f'CAST("{table}"."{column}" AS NUMERIC)')


def _cursor_value(spec: SortSpec, raw: Any) -> Any:
    try:
        if spec.kind == "datetime":
            return dt.datetime.fromisoformat(str(raw))
        if spec.kind == "decimal":
            value = decimal.Decimal(str(raw))
            # On SQLite the CAST must meet a number: a Decimal would bind as text.
            sqlite = connections.get("default").capabilities.dialect == "sqlite"
            return float(value) if sqlite else value
        if spec.kind == "int":
            return int(raw)
        return str(raw)
    except (ValueError, TypeError, decimal.InvalidOperation):
        raise ValidationFailed("cursor", "is not a cursor this API returned") from None


def parse_sort(sort: str, allowed: dict[str, SortSpec]) -> tuple[SortSpec, bool]:
    """Validate ``sort`` (a column name, ``-`` first for descending) against ``allowed``."""
    descending = sort.startswith("-")
    spec = allowed.get(sort.removeprefix("-"))
    if spec is None:
        options = ", ".join(f"{name}, -{name}" for name in allowed)
        raise ValidationFailed("sort", f"'{sort}' is not one of: {options}")
    return spec, descending


async def paginate_sorted(
    query: Any, sort: str, allowed: dict[str, SortSpec], cursor: str | None, limit: int
) -> Page[Any]:
    """Page a queryset by a sort column with ``id`` breaking ties (keyset: stable under inserts)."""
    check_limit(limit)
    spec, descending = parse_sort(sort, allowed)
    if spec.expression:
        query = query.annotate(**{spec.field: RawSQL(spec.expression)})
    op = "lt" if descending else "gt"
    if cursor:
        cursor_sort, raw_value, last_id = decode_cursor(cursor, 3)
        if cursor_sort != sort or not isinstance(last_id, int):
            raise ValidationFailed("cursor", "does not belong to this listing or sort order")
        value = _cursor_value(spec, raw_value)
        query = query.filter(
            Q(**{f"{spec.field}__{op}": value}) | Q(**{spec.field: value, f"id__{op}": last_id})
        )
    prefix = "-" if descending else ""
    rows = await query.order_by(f"{prefix}{spec.field}", f"{prefix}id").limit(limit + 1)
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if has_more and rows:
        last = rows[-1]
        raw = getattr(last, spec.attr)
        encoded = raw.isoformat() if isinstance(raw, dt.datetime) else str(raw)
        next_cursor = encode_cursor([sort, encoded, last.id])
    return Page(rows, next_cursor)
