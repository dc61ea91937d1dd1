"""Keyset (cursor) pagination shared by every list: stable under inserts, O(page) per request."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from crm.services.errors import ValidationFailed

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


async def paginate_by_id(query: Any, cursor: str | None, limit: int) -> Page[Any]:
    """Page a queryset by ascending id: the simple case shared by most lists."""
    check_limit(limit)
    if cursor:
        (last_id,) = decode_cursor(cursor, 1)
        if not isinstance(last_id, int):
            raise ValidationFailed("cursor", "is not a cursor this API returned")
        query = query.filter(id__gt=last_id)
    rows = await query.order_by("id").limit(limit + 1)
    has_more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor([rows[-1].id]) if has_more and rows else None)
