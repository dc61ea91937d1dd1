"""Tags, and putting tags on contacts or taking them off."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from crm.api.dependencies import ActorDep
from crm.api.schemas import Id, ListOut, PageLimit, StrictModel
from crm.services.contacts import tags
from crm.services.contacts.tags import MAX_TAGS_PER_REQUEST, TagView

router = APIRouter(tags=["tags"])

TagId = Id
ContactId = Id


class TagOut(BaseModel):
    id: int
    name: str
    contact_count: int
    created_at: dt.datetime


class TagIn(StrictModel):
    name: str = Field(min_length=1, max_length=64)


class ContactTagsIn(StrictModel):
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1,
        max_length=MAX_TAGS_PER_REQUEST,
        description="tag names; missing tags are created",
    )


def _out(view: TagView) -> TagOut:
    return TagOut(
        id=view.tag.id,
        name=view.tag.name,
        contact_count=view.contact_count,
        created_at=view.tag.created_at,
    )


@router.get("/tags", response_model=ListOut[TagOut])
async def get_tags(
    actor: ActorDep,
    q: Annotated[str | None, Query(max_length=64, description="part of the name")] = None,
    cursor: str | None = None,
    limit: PageLimit = 50,
) -> ListOut[TagOut]:
    """Tags by name, each with the number of contacts carrying it."""
    page = await tags.list_tags(actor, q=q, cursor=cursor, limit=limit)
    return ListOut(items=[_out(v) for v in page.items], next_cursor=page.next_cursor)


@router.post("/tags", response_model=TagOut, status_code=status.HTTP_201_CREATED)
async def post_tag(body: TagIn, actor: ActorDep) -> TagOut:
    """Create a tag (name unique in the organization, ignoring case)."""
    return _out(await tags.do_create_tag(actor, body.name))


@router.get("/tags/{tag_id}", response_model=TagOut)
async def get_tag(tag_id: TagId, actor: ActorDep) -> TagOut:
    """One tag with its number of contacts."""
    return _out(await tags.access_tag(actor, tag_id))


@router.patch("/tags/{tag_id}", response_model=TagOut)
async def patch_tag(tag_id: TagId, body: TagIn, actor: ActorDep) -> TagOut:
    """Rename a tag (admin)."""
    return _out(await tags.do_rename_tag(actor, tag_id, body.name))


@router.delete("/tags/{tag_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_tag(tag_id: TagId, actor: ActorDep) -> None:
    """Delete a tag, taking it off every contact (admin)."""
    await tags.do_delete_tag(actor, tag_id)


@router.post("/contacts/{contact_id}/tags", response_model=ListOut[TagOut])
async def post_contact_tags(
    contact_id: ContactId, body: ContactTagsIn, actor: ActorDep
) -> ListOut[TagOut]:
    """Put tags on a contact by name (created when new); answers the contact's tags."""
    views = await tags.do_tag_contact(actor, contact_id, body.tags)
    return ListOut(items=[_out(v) for v in views])


@router.delete("/contacts/{contact_id}/tags/{tag_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_contact_tag(contact_id: ContactId, tag_id: TagId, actor: ActorDep) -> None:
    """Take a tag off a contact."""
    await tags.do_untag_contact(actor, contact_id, tag_id)
