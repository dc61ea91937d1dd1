"""Notes on a contact, a company or a deal."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from crm.api.dependencies import ActorDep
from crm.api.schemas import Id, ListOut, PageLimit, StrictModel
from crm.models import Note
from crm.services.contacts import notes
from crm.services.contacts.notes import MAX_BODY

router = APIRouter(tags=["notes"])

NoteId = Id
RefId = Id
FilterId = Id | None


class NoteOut(BaseModel):
    id: int
    body: str
    contact_id: int | None
    company_id: int | None
    deal_id: int | None
    author_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime


class NoteIn(StrictModel):
    body: str = Field(min_length=1, max_length=MAX_BODY)
    contact_id: RefId | None = Field(default=None, description="exactly one of the three ids")
    company_id: RefId | None = None
    deal_id: RefId | None = None


class NotePatch(StrictModel):
    body: str = Field(min_length=1, max_length=MAX_BODY)


def _out(note: Note) -> NoteOut:
    return NoteOut.model_validate(note, from_attributes=True)


@router.get("/notes", response_model=ListOut[NoteOut])
async def get_notes(
    actor: ActorDep,
    contact_id: FilterId = None,
    company_id: FilterId = None,
    deal_id: FilterId = None,
    sort: Annotated[str, Query(description="created_at or -created_at")] = "-created_at",
    cursor: str | None = None,
    limit: PageLimit = 50,
) -> ListOut[NoteOut]:
    """Notes, newest first, optionally those on one contact, company or deal."""
    page = await notes.list_notes(
        actor,
        contact_id=contact_id,
        company_id=company_id,
        deal_id=deal_id,
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    return ListOut(items=[_out(n) for n in page.items], next_cursor=page.next_cursor)


@router.post("/notes", response_model=NoteOut, status_code=status.HTTP_201_CREATED)
async def post_note(body: NoteIn, actor: ActorDep) -> NoteOut:
    """Write a note on exactly one of a contact, a company or a deal."""
    note = await notes.do_create_note(
        actor,
        body.body,
        contact_id=body.contact_id,
        company_id=body.company_id,
        deal_id=body.deal_id,
    )
    return _out(note)


@router.get("/notes/{note_id}", response_model=NoteOut)
async def get_note(note_id: NoteId, actor: ActorDep) -> NoteOut:
    """One note."""
    return _out(await notes.access_note(actor, note_id))


@router.patch("/notes/{note_id}", response_model=NoteOut)
async def patch_note(note_id: NoteId, body: NotePatch, actor: ActorDep) -> NoteOut:
    """Change a note's text (its author or an admin)."""
    return _out(await notes.do_update_note(actor, note_id, body.body))


@router.delete("/notes/{note_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_note(note_id: NoteId, actor: ActorDep) -> None:
    """Delete a note (its author or an admin)."""
    await notes.do_delete_note(actor, note_id)
