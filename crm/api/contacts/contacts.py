"""Contacts over HTTP: CRUD, search, filters, sorting and cursor pagination."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from crm.api.dependencies import ActorDep
from crm.api.schemas import Id, ListOut, PageLimit, StrictModel, TelegramId
from crm.models import Consent
from crm.services.contacts import contacts
from crm.services.contacts.contacts import ContactFilters, ContactRecord

router = APIRouter(tags=["contacts"])
ContactId = Id


class ContactOut(BaseModel):
    id: int
    name: str
    title: str | None
    company_id: int | None
    phone: str | None = Field(description="E.164")
    email: str | None
    telegram_username: str | None
    telegram_id: int | None
    whatsapp_id: str | None
    whatsapp_user_id: str | None = Field(
        default=None, description="WhatsApp business-scoped user id (read-only)"
    )
    whatsapp_username: str | None = Field(default=None, description="read-only, no @")
    tags: list[str]
    custom_fields: dict[str, Any]
    owner_id: int | None
    source: str | None
    consent: Consent
    opted_out_at: dt.datetime | None
    timezone: str | None
    score: int
    created_at: dt.datetime
    updated_at: dt.datetime


class ContactIn(StrictModel):
    name: str = Field(default="", max_length=200)
    title: str | None = Field(default=None, max_length=200)
    company_id: Id | None = None
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=254)
    telegram_username: str | None = Field(default=None, max_length=80)
    telegram_id: TelegramId | None = None
    whatsapp_id: str | None = Field(default=None, max_length=32)
    tags: list[str] = Field(default_factory=list, max_length=100)
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    owner_id: Id | None = None
    source: str | None = Field(default=None, max_length=64)
    consent: Consent = Consent.UNKNOWN
    timezone: str | None = Field(default=None, max_length=64)


class ContactPatch(StrictModel):
    name: str | None = Field(default=None, max_length=200)
    title: str | None = Field(default=None, max_length=200)
    company_id: Id | None = None
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=254)
    telegram_username: str | None = Field(default=None, max_length=80)
    telegram_id: TelegramId | None = None
    whatsapp_id: str | None = Field(default=None, max_length=32)
    tags: list[str] | None = Field(default=None, max_length=100)
    custom_fields: dict[str, Any] | None = None
    owner_id: Id | None = None
    source: str | None = Field(default=None, max_length=64)
    consent: Consent | None = None
    timezone: str | None = Field(default=None, max_length=64)


def contact_out(record: ContactRecord) -> ContactOut:
    """Render a contact with its tags."""
    contact = record.contact
    return ContactOut(
        id=contact.id,
        name=contact.name,
        title=contact.title,
        company_id=contact.company_id,
        phone=contact.phone,
        email=contact.email,
        telegram_username=contact.telegram_username,
        telegram_id=contact.telegram_id,
        whatsapp_id=contact.whatsapp_id,
        whatsapp_user_id=contact.whatsapp_user_id,
        whatsapp_username=contact.whatsapp_username,
        tags=record.tags,
        custom_fields=contact.custom_fields,
        owner_id=contact.owner_id,
        source=contact.source,
        consent=contact.consent,
        opted_out_at=contact.opted_out_at,
        timezone=contact.timezone,
        score=contact.score,
        created_at=contact.created_at,
        updated_at=contact.updated_at,
    )


@router.get("/contacts", response_model=ListOut[ContactOut])
async def get_contacts(
    actor: ActorDep,
    q: str | None = Query(
        default=None, max_length=200, description="matches name, phone, email or Telegram username"
    ),
    tag: str | None = Query(default=None, max_length=64),
    owner_id: Id | None = None,
    company_id: Id | None = None,
    stage_id: Id | None = Query(default=None, description="contacts with a deal in this stage"),
    sort: str = Query(
        default="-created_at", description="created_at, updated_at or name; '-' for descending"
    ),
    cursor: str | None = None,
    limit: PageLimit = 50,
) -> ListOut[ContactOut]:
    """Search and list contacts."""
    page = await contacts.list_contacts(
        actor,
        ContactFilters(q=q, tag=tag, owner_id=owner_id, company_id=company_id, stage_id=stage_id),
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    return ListOut(items=[contact_out(c) for c in page.items], next_cursor=page.next_cursor)


@router.post("/contacts", response_model=ContactOut, status_code=status.HTTP_201_CREATED)
async def post_contact(body: ContactIn, actor: ActorDep) -> ContactOut:
    """Create a contact."""
    return contact_out(await contacts.do_create_contact(actor, body.model_dump(exclude_unset=True)))


@router.get("/contacts/{contact_id}", response_model=ContactOut)
async def get_contact(contact_id: ContactId, actor: ActorDep) -> ContactOut:
    """One contact."""
    return contact_out(await contacts.access_contact(actor, contact_id))


@router.patch("/contacts/{contact_id}", response_model=ContactOut)
async def patch_contact(contact_id: ContactId, body: ContactPatch, actor: ActorDep) -> ContactOut:
    """Change some fields of a contact; fields sent as null are cleared."""
    values = body.model_dump(exclude_unset=True)
    return contact_out(await contacts.do_update_contact(actor, contact_id, values))


@router.delete("/contacts/{contact_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_contact(contact_id: ContactId, actor: ActorDep) -> None:
    """Delete a contact."""
    await contacts.do_delete_contact(actor, contact_id)
