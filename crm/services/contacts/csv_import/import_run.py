"""Running an import: the header found, rows parsed one batch ahead of writing, the report."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import BinaryIO

from tortoise.transactions import in_transaction

from crm.errors import NotFound, ValidationFailed
from crm.models import Tenant
from crm.services.access import Actor
from crm.services.contacts.csv_import.batch_writing import BATCH_SIZE, BatchWriter
from crm.services.contacts.csv_import.file_reading import (
    SAMPLE_BYTES,
    PrefixedReader,
    detect_delimiter,
    detect_encoding,
    read_records,
)
from crm.services.contacts.csv_import.header_mapping import (
    IDENTIFIER_FIELDS,
    build_columns,
    check_mapping,
)
from crm.services.contacts.csv_import.report import MAX_REPORTED_ERRORS, ImportResult, RowError
from crm.services.contacts.csv_import.row_parsing import ParsedRow, RowParser
from crm.services.events.catalog import ContactsImported
from crm.services.events.recording import record_event

_HEADER_SCAN_RECORDS = 10
_YIELD_EVERY = 20


@dataclass
class _Batch:
    """Parsed rows on their way from the reader to the writer."""

    rows: list[ParsedRow] = field(default_factory=list)
    rejected: list[list[RowError]] = field(default_factory=list)
    done: int = 0


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
    checked_mapping = check_mapping(mapping)
    tenant = await Tenant.get_or_none(id=actor.tenant_id)
    if tenant is None:
        raise NotFound("organization", actor.tenant_id)

    head = source.read(SAMPLE_BYTES)
    if not head or not head.strip():
        raise ValidationFailed("file", "is empty")
    encoding, ascii_head = detect_encoding(head)
    delimiter = detect_delimiter(head.decode(encoding, errors="replace"))
    text = io.TextIOWrapper(
        io.BufferedReader(PrefixedReader(head, source)),
        encoding=encoding,
        errors="crm-import-undecodable",
        newline="",
    )
    records = read_records(text, delimiter)

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
        columns, found = build_columns(record, checked_mapping)
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

    parser = RowParser(columns, len(header), tenant.default_region, ascii_head)
    job = BatchWriter(actor, tenant, dry_run=dry_run, overwrite=overwrite)
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
