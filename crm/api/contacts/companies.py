"""Companies: CRUD, search by name, sorted cursor pages."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from crm.api.dependencies import ActorDep
from crm.api.schemas import Id, ListOut, PageLimit, StrictModel, not_null
from crm.models import Company
from crm.services.contacts import companies

router = APIRouter(tags=["companies"])

# Ids are 32-bit in the database: a larger one is bad input, not a database error.
CompanyId = Id


class CompanyOut(BaseModel):
    id: int
    name: str
    domain: str | None
    owner_id: int | None
    custom_fields: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


class CompanyDetailOut(CompanyOut):
    contact_count: int
    deal_count: int


class CompanyIn(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    domain: str | None = Field(default=None, max_length=200)
    owner_id: Id | None = Field(default=None, description="default: you")
    custom_fields: dict[str, Any] = Field(default_factory=dict)


class CompanyPatch(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    domain: str | None = Field(default=None, max_length=200)
    owner_id: Id | None = None
    custom_fields: dict[str, Any] | None = None

    _not_null = not_null("name", "custom_fields")


def _out(company: Company) -> CompanyOut:
    return CompanyOut.model_validate(company, from_attributes=True)


async def _detail(actor: ActorDep, company: Company) -> CompanyDetailOut:
    counts = await companies.count_company_links(actor, company)
    return CompanyDetailOut(
        **_out(company).model_dump(), contact_count=counts.contacts, deal_count=counts.deals
    )


@router.get("/companies", response_model=ListOut[CompanyOut])
async def get_companies(
    actor: ActorDep,
    q: Annotated[str | None, Query(max_length=200, description="part of the name")] = None,
    sort: Annotated[str, Query(description="name, created_at; '-' first: descending")] = "name",
    cursor: str | None = None,
    limit: PageLimit = 50,
) -> ListOut[CompanyOut]:
    """Companies, optionally those whose name contains ``q``."""
    page = await companies.list_companies(actor, q=q, sort=sort, cursor=cursor, limit=limit)
    return ListOut(items=[_out(c) for c in page.items], next_cursor=page.next_cursor)


@router.post("/companies", response_model=CompanyDetailOut, status_code=status.HTTP_201_CREATED)
async def post_company(body: CompanyIn, actor: ActorDep) -> CompanyDetailOut:
    """Create a company (name unique in the organization, ignoring case)."""
    fields = body.model_dump(exclude_unset=True)
    company = await companies.do_create_company(actor, **fields)
    return await _detail(actor, company)


@router.get("/companies/{company_id}", response_model=CompanyDetailOut)
async def get_company(company_id: CompanyId, actor: ActorDep) -> CompanyDetailOut:
    """One company with the number of its contacts and deals."""
    return await _detail(actor, await companies.access_company(actor, company_id))


@router.patch("/companies/{company_id}", response_model=CompanyDetailOut)
async def patch_company(
    company_id: CompanyId, body: CompanyPatch, actor: ActorDep
) -> CompanyDetailOut:
    """Change a company; fields left out keep their value."""
    company = await companies.do_update_company(
        actor, company_id, **body.model_dump(exclude_unset=True)
    )
    return await _detail(actor, company)


@router.delete("/companies/{company_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_company(company_id: CompanyId, actor: ActorDep) -> None:
    """Delete a company; its contacts and deals stay, without a company."""
    await companies.do_delete_company(actor, company_id)
