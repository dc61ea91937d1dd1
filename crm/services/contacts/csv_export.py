"""CSV export of contacts, streamed in id-ordered batches; the importer reads it back unchanged."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

from crm.models import Company, Contact
from crm.services.access import Actor
from crm.services.contacts.contacts import tag_names_of

EXPORT_COLUMNS = (
    "id",
    "name",
    "title",
    "company",
    "phone",
    "email",
    "telegram_username",
    "telegram_id",
    "whatsapp_id",
    "tags",
    "source",
    "consent",
    "timezone",
    "owner_id",
    "created_at",
)
BATCH_SIZE = 1000
# Spreadsheets run a cell that starts with one of these as a formula; names come from leads.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _guard(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def _csv_line(values: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()


async def export_contacts_csv(actor: Actor) -> AsyncIterator[str]:
    """The tenant's contacts as CSV text chunks; the first is a UTF-8 BOM and the header."""
    actor.require_read()
    tenant_id = actor.tenant_id
    # The BOM makes spreadsheet programs read the file as UTF-8 (Cyrillic names stay readable).
    yield "\ufeff" + _csv_line(list(EXPORT_COLUMNS))
    last_id = 0
    companies: dict[int, str] = {}
    while True:
        rows = (
            await Contact.filter(tenant_id=tenant_id, id__gt=last_id)
            .order_by("id")
            .limit(BATCH_SIZE)
            .values(
                "id",
                "name",
                "title",
                "company_id",
                "phone",
                "email",
                "telegram_username",
                "telegram_id",
                "whatsapp_id",
                "source",
                "consent",
                "timezone",
                "owner_id",
                "created_at",
            )
        )
        if not rows:
            return
        ids = [r["id"] for r in rows]
        last_id = ids[-1]
        wanted = {r["company_id"] for r in rows if r["company_id"] is not None} - set(companies)
        if wanted:
            if len(companies) > 10 * BATCH_SIZE:
                companies.clear()  # a bounded cache: memory stays flat however many companies
            for c in await Company.filter(tenant_id=tenant_id, id__in=wanted).values("id", "name"):
                companies[c["id"]] = c["name"]
        tags = await tag_names_of(ids)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        for r in rows:
            text = {
                "name": r["name"] or "",
                "title": r["title"] or "",
                "company": companies.get(r["company_id"], "") if r["company_id"] else "",
                "tags": ", ".join(tags.get(r["id"], [])),
                "source": r["source"] or "",
            }
            writer.writerow(
                [
                    r["id"],
                    _guard(text["name"]),
                    _guard(text["title"]),
                    _guard(text["company"]),
                    r["phone"] or "",
                    r["email"] or "",
                    r["telegram_username"] or "",
                    "" if r["telegram_id"] is None else r["telegram_id"],
                    r["whatsapp_id"] or "",
                    _guard(text["tags"]),
                    _guard(text["source"]),
                    str(getattr(r["consent"], "value", r["consent"]) or ""),
                    r["timezone"] or "",
                    "" if r["owner_id"] is None else r["owner_id"],
                    r["created_at"].isoformat() if r["created_at"] else "",
                ]
            )
        yield buffer.getvalue()
