"""CSV import of contacts: header mapping, normalization, dedupe, batched writes with audit events.

The file is read as a stream in batches; the stored contacts a batch may match are fetched with one
query per kind of identifier, the rows are resolved in memory (as if applied one by one) and written
with a handful of bulk statements in one transaction. Nothing of a batch is kept once it is
written, so memory does not grow with the file; a dry run keeps the contacts it would have touched
instead, to answer exactly as a real run would.

Modules: ``file_reading`` (encoding, delimiter, records), ``header_mapping`` (columns to fields),
``row_parsing`` (normalization and validation), ``matching`` (dedupe against stored contacts),
``bulk_sql`` and ``batch_writing`` (the writes), ``audit_snapshots`` (what the events record),
``import_run`` (the entry point) and ``report`` (what an import did).
"""

from crm.services.contacts.csv_import.batch_writing import BATCH_SIZE
from crm.services.contacts.csv_import.file_reading import count_rows
from crm.services.contacts.csv_import.import_run import do_import_contacts
from crm.services.contacts.csv_import.report import MAX_REPORTED_ERRORS, ImportResult, RowError

__all__ = [
    "BATCH_SIZE",
    "MAX_REPORTED_ERRORS",
    "ImportResult",
    "RowError",
    "count_rows",
    "do_import_contacts",
]
