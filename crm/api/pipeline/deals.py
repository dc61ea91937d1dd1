"""Deals: CRUD, filters, sorted cursor pages, stage moves with history."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from crm.api.dependencies import ActorDep
from crm.api.schemas import Id, ListOut, PageLimit, StrictModel, not_null
from crm.models import Deal, DealStageChange, StageKind
from crm.services.pipeline import deals

router = APIRouter(tags=["deals"])

DealId = Id
RefId = Id
FilterId = Id | None
# A JSON number or a decimal string; the service checks sign, scale and size.
Amount = decimal.Decimal


class DealOut(BaseModel):
    id: int
    title: str
    value: str = Field(description="a decimal string, e.g. '1200.00'")
    currency: str
    pipeline_id: int
    stage_id: int
    status: StageKind = Field(description="the kind of the deal's stage")
    contact_id: int | None
    company_id: int | None
    owner_id: int | None
    stage_changed_at: dt.datetime | None
    closed_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class DealIn(StrictModel):
    title: str = Field(min_length=1, max_length=200)
    value: Amount = Field(
        default=decimal.Decimal(0), description="at most 2 decimal places, not negative"
    )
    currency: str | None = Field(default=None, description="ISO 4217; default: the org's")
    pipeline_id: RefId | None = Field(default=None, description="default: the default pipeline")
    stage_id: RefId | None = Field(default=None, description="default: the first open stage")
    contact_id: RefId | None = None
    company_id: RefId | None = None
    owner_id: RefId | None = Field(default=None, description="default: you")


class DealPatch(StrictModel):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    value: Amount | None = None
    currency: str | None = None
    contact_id: RefId | None = None
    company_id: RefId | None = None
    owner_id: RefId | None = None

    _not_null = not_null("title", "value", "currency")


class DealStageIn(StrictModel):
    stage_id: RefId
    pipeline_id: RefId | None = Field(
        default=None, description="to move the deal to another pipeline"
    )


class StageChangeOut(BaseModel):
    id: int
    deal_id: int
    from_stage_id: int | None
    from_stage_name: str | None
    to_stage_id: int | None
    to_stage_name: str | None
    changed_by: int | None
    changed_at: dt.datetime


def _out(deal: Deal) -> DealOut:
    return DealOut(
        id=deal.id,
        title=deal.title,
        value=str(deal.value),
        currency=deal.currency,
        pipeline_id=deal.pipeline_id,
        stage_id=deal.stage_id,
        status=deal.stage.kind,
        contact_id=deal.contact_id,
        company_id=deal.company_id,
        owner_id=deal.owner_id,
        stage_changed_at=deal.stage_changed_at,
        closed_at=deal.closed_at,
        created_at=deal.created_at,
        updated_at=deal.updated_at,
    )


def _change_out(change: DealStageChange) -> StageChangeOut:
    return StageChangeOut(
        id=change.id,
        deal_id=change.deal_id,
        from_stage_id=change.from_stage_id,
        from_stage_name=change.from_stage.name if change.from_stage else None,
        to_stage_id=change.to_stage_id,
        to_stage_name=change.to_stage.name if change.to_stage else None,
        changed_by=change.changed_by_id,
        changed_at=change.changed_at,
    )


@router.get("/deals", response_model=ListOut[DealOut])
async def get_deals(
    actor: ActorDep,
    pipeline_id: FilterId = None,
    stage_id: FilterId = None,
    owner_id: FilterId = None,
    contact_id: FilterId = None,
    company_id: FilterId = None,
    status: StageKind | None = None,
    sort: Annotated[
        str, Query(description="created_at, updated_at, value; '-' first: descending")
    ] = "created_at",
    cursor: str | None = None,
    limit: PageLimit = 50,
) -> ListOut[DealOut]:
    """Deals matching every filter given."""
    page = await deals.list_deals(
        actor,
        pipeline_id=pipeline_id,
        stage_id=stage_id,
        owner_id=owner_id,
        contact_id=contact_id,
        company_id=company_id,
        status=status.value if status else None,
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    return ListOut(items=[_out(d) for d in page.items], next_cursor=page.next_cursor)


@router.post("/deals", response_model=DealOut, status_code=status.HTTP_201_CREATED)
async def post_deal(body: DealIn, actor: ActorDep) -> DealOut:
    """Create a deal (in the default pipeline's first open stage unless told)."""
    deal = await deals.do_create_deal(actor, **body.model_dump(exclude_unset=True))
    return _out(deal)


@router.get("/deals/{deal_id}", response_model=DealOut)
async def get_deal(deal_id: DealId, actor: ActorDep) -> DealOut:
    """One deal."""
    return _out(await deals.access_deal(actor, deal_id))


@router.patch("/deals/{deal_id}", response_model=DealOut)
async def patch_deal(deal_id: DealId, body: DealPatch, actor: ActorDep) -> DealOut:
    """Change a deal's fields; its stage changes with PATCH /deals/{id}/stage."""
    deal = await deals.do_update_deal(actor, deal_id, **body.model_dump(exclude_unset=True))
    return _out(deal)


@router.delete("/deals/{deal_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_deal(deal_id: DealId, actor: ActorDep) -> None:
    """Delete a deal with its history and notes."""
    await deals.do_delete_deal(actor, deal_id)


@router.patch("/deals/{deal_id}/stage", response_model=DealOut)
async def patch_deal_stage(deal_id: DealId, body: DealStageIn, actor: ActorDep) -> DealOut:
    """Move a deal to another stage, recording it in the deal's history."""
    deal = await deals.do_move_deal(actor, deal_id, body.stage_id, pipeline_id=body.pipeline_id)
    return _out(deal)


@router.get("/deals/{deal_id}/history", response_model=ListOut[StageChangeOut])
async def get_deal_history(
    deal_id: DealId, actor: ActorDep, cursor: str | None = None, limit: PageLimit = 50
) -> ListOut[StageChangeOut]:
    """The stages the deal went through, oldest first (the first row is its creation)."""
    page = await deals.list_deal_history(actor, deal_id, cursor=cursor, limit=limit)
    return ListOut(items=[_change_out(c) for c in page.items], next_cursor=page.next_cursor)
