"""CSV import and export of contacts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from crm.api.dependencies import ActorDep
from crm.errors import ValidationFailed
from crm.services.contacts import csv_export as exporter
from crm.services.contacts import csv_import as importer

router = APIRouter(tags=["contacts"])


class ImportErrorOut(BaseModel):
    row: int
    field: str
    reason: str
    level: Literal["error", "warning"] = Field(
        default="error",
        description="error: the row was rejected; warning: imported without this field",
    )


class ImportOut(BaseModel):
    created: int
    updated: int
    skipped: int
    errors: list[ImportErrorOut]


def _mapping(raw: str | None) -> dict[str, str] | None:
    if raw is None or not raw.strip():
        return None
    try:
        mapping = json.loads(raw)
    except ValueError:
        raise ValidationFailed("mapping", "is not valid JSON") from None
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise ValidationFailed("mapping", 'must be a JSON object like {"CSV column": "field"}')
    return mapping


@router.post("/contacts/import", response_model=ImportOut)
async def import_contacts(
    actor: ActorDep,
    file: Annotated[UploadFile, File(description="the CSV file")],
    dry_run: Annotated[bool, Query(description="report what would happen, write nothing")] = False,
    dry_run_form: Annotated[bool | None, Form(alias="dry_run")] = None,
    overwrite: Annotated[bool, Query(description="replace fields that are already set")] = False,
    overwrite_form: Annotated[bool | None, Form(alias="overwrite")] = None,
    mapping: Annotated[
        str | None, Form(description='JSON object {"CSV column": "field" or "custom.<key>"}')
    ] = None,
) -> ImportOut:
    """Import contacts from CSV (Google, HubSpot, Pipedrive, LinkedIn, English/Russian headers)."""
    result = await importer.do_import_contacts(
        actor,
        file.file,  # streamed in batches by the service, never read whole
        dry_run=dry_run or bool(dry_run_form),
        overwrite=overwrite or bool(overwrite_form),
        mapping=_mapping(mapping),
    )
    return ImportOut.model_validate(result.as_dict())


@router.get(
    "/contacts/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "every contact as CSV"}},
)
async def export_contacts(actor: ActorDep) -> StreamingResponse:
    """Every contact of the workspace as a CSV download (re-importable as is)."""
    chunks = exporter.export_contacts_csv(actor)
    # The first chunk runs the permission check: a refusal must come before the 200 is sent.
    first = await anext(chunks)

    async def body() -> AsyncIterator[str]:
        yield first
        async for chunk in chunks:
            yield chunk

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="contacts.csv"'},
    )
