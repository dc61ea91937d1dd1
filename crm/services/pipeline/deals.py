"""Deals: an opportunity's value, owner and place in a pipeline, with its stage history.

Role rules: every member reads every deal of the tenant; a bidi creates deals and changes, moves
or deletes only deals they own or that nobody owns; admins and owners change any. A new deal is
owned by its creator unless ``owner_id`` says otherwise; a bidi may assign only themselves or
nobody. The ids a deal points at (pipeline, stage, contact, company, owner) must exist in the
tenant, else 422 naming the field with the same reason for a missing id and another tenant's.

Every stage a deal enters is a row of its history, the first one written when the deal is
created (from no stage). ``closed_at`` is set whenever the deal enters a won or lost stage and
cleared when it returns to an open one.

How the operator bot and the agents look deals up (a stage's page, a deal card, a lead's open
deal) is in ``crm.services.pipeline.deal_cards``.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

from babel.numbers import is_currency
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from crm.errors import NotFound, ValidationFailed
from crm.infrastructure.pagination import (
    Page,
    SortSpec,
    numeric_sort,
    paginate_by_id,
    paginate_sorted,
)
from crm.models import Company, Contact, Deal, DealStageChange, Pipeline, Stage, StageKind, Tenant
from crm.services.access import Actor
from crm.services.events.catalog import DealCreated, DealDeleted, DealStageChanged, DealUpdated
from crm.services.events.recording import record_event, save_if_changed, snapshot
from crm.services.pipeline.pipelines import first_open_stage
from crm.services.references import (
    UNSET,
    Unset,
    check_owner_assignable,
    default_owner,
    lock_in_tenant,
    require_in_tenant,
)

DEAL_SORTS: dict[str, SortSpec] = {
    "created_at": SortSpec("created_at", "datetime"),
    "updated_at": SortSpec("updated_at", "datetime"),
    "value": numeric_sort("deal", "value"),
}
CENT = decimal.Decimal("0.01")
# The column holds 18 digits, 2 of them after the point.
MAX_VALUE = decimal.Decimal(10) ** 16


def clean_value(value: decimal.Decimal | int | str) -> decimal.Decimal:
    """A deal value: finite, not negative, at most 2 decimal places, fits the column."""
    try:
        amount = decimal.Decimal(str(value).strip())
    except decimal.InvalidOperation:
        raise ValidationFailed("value", f"'{value}' is not a decimal number") from None
    if not amount.is_finite():
        raise ValidationFailed("value", "must be a finite number")
    if amount < 0:
        raise ValidationFailed("value", "must not be negative")
    if amount >= MAX_VALUE:
        raise ValidationFailed("value", f"must be less than {MAX_VALUE:.0f}")
    if amount != amount.quantize(CENT):
        raise ValidationFailed("value", "must have at most 2 decimal places")
    return amount.quantize(CENT)


def clean_currency(code: str) -> str:
    """An ISO 4217 code, upper-cased."""
    cleaned = code.strip().upper()
    if len(cleaned) != 3 or not cleaned.isascii() or not cleaned.isalpha():
        raise ValidationFailed("currency", f"'{code}' is not a 3-letter currency code")
    if not is_currency(cleaned):
        raise ValidationFailed("currency", f"'{cleaned}' is not an ISO 4217 currency code")
    return cleaned


def _clean_title(title: str) -> str:
    cleaned = title.strip()
    if not cleaned:
        raise ValidationFailed("title", "must not be empty")
    if len(cleaned) > 200:
        raise ValidationFailed("title", "must be at most 200 characters")
    return cleaned


def _closed_at_for(kind: StageKind, now: dt.datetime) -> dt.datetime | None:
    return None if kind is StageKind.OPEN else now


async def _resolve_placement(
    actor: Actor, pipeline_id: int | None, stage_id: int | None, conn: BaseDBAsyncClient
) -> Stage:
    """The stage a deal goes to: the one given, else the first open one of the pipeline."""
    if pipeline_id is not None:
        await require_in_tenant(actor, Pipeline, pipeline_id, "pipeline_id", conn)
    if stage_id is None:
        if pipeline_id is None:
            default = (
                await Pipeline.filter(tenant_id=actor.tenant_id, is_default=True)
                .using_db(conn)
                .first()
            )
            if default is None:
                raise ValidationFailed("pipeline_id", "there is no default pipeline; give one")
            pipeline_id = default.id
        return await first_open_stage(pipeline_id, conn)
    stage = await Stage.filter(id=stage_id, tenant_id=actor.tenant_id).using_db(conn).first()
    if stage is None:
        raise ValidationFailed("stage_id", f"{stage_id} does not exist in this organization")
    if pipeline_id is not None and stage.pipeline_id != pipeline_id:
        raise ValidationFailed("stage_id", f"is not a stage of pipeline {pipeline_id}")
    return stage


async def _load(deal_id: int, conn: BaseDBAsyncClient | None = None) -> Deal:
    return await Deal.filter(id=deal_id).using_db(conn).select_related("stage").get()


async def _lock_deal(actor: Actor, deal_id: int, conn: BaseDBAsyncClient) -> Deal:
    deal = await lock_in_tenant(actor, Deal, deal_id, "deal", conn)
    return deal


async def access_deal(actor: Actor, deal_id: int) -> Deal:
    """One deal of the actor's tenant, with its stage."""
    actor.require_read()
    deal = await Deal.filter(id=deal_id, tenant_id=actor.tenant_id).select_related("stage").first()
    if deal is None:
        raise NotFound("deal", deal_id)
    return deal


async def list_deals(
    actor: Actor,
    *,
    pipeline_id: int | None = None,
    stage_id: int | None = None,
    owner_id: int | None = None,
    contact_id: int | None = None,
    company_id: int | None = None,
    status: str | None = None,
    sort: str = "created_at",
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Deal]:
    """Deals of the tenant matching every filter given, with their stages."""
    actor.require_read()
    filters: dict[str, Any] = {
        key: value
        for key, value in (
            ("pipeline_id", pipeline_id),
            ("stage_id", stage_id),
            ("owner_id", owner_id),
            ("contact_id", contact_id),
            ("company_id", company_id),
        )
        if value is not None
    }
    if status is not None:
        try:
            filters["stage__kind"] = StageKind(status)
        except ValueError:
            raise ValidationFailed("status", "must be one of: open, won, lost") from None
    query = Deal.filter(tenant_id=actor.tenant_id, **filters).select_related("stage")
    return await paginate_sorted(query, sort, DEAL_SORTS, cursor, limit)


async def do_create_deal(
    actor: Actor,
    title: str,
    *,
    value: decimal.Decimal | int | str = 0,
    currency: str | None = None,
    pipeline_id: int | None = None,
    stage_id: int | None = None,
    contact_id: int | None = None,
    company_id: int | None = None,
    owner_id: int | Unset | None = UNSET,
) -> Deal:
    """Create a deal; it starts in the default pipeline's first open stage unless told."""
    actor.require_write()
    cleaned_title = _clean_title(title)
    amount = clean_value(value)
    code = clean_currency(currency) if currency is not None else None
    owner = default_owner(actor, owner_id)
    async with in_transaction() as conn:
        stage = await _resolve_placement(actor, pipeline_id, stage_id, conn)
        if contact_id is not None:
            await require_in_tenant(actor, Contact, contact_id, "contact_id", conn)
        if company_id is not None:
            await require_in_tenant(actor, Company, company_id, "company_id", conn)
        await check_owner_assignable(actor, owner, conn)
        if code is None:
            tenant = await Tenant.filter(id=actor.tenant_id).using_db(conn).get()
            code = tenant.default_currency
        now = dt.datetime.now(dt.UTC)
        deal = await Deal.create(
            tenant_id=actor.tenant_id,
            title=cleaned_title,
            value=amount,
            currency=code,
            pipeline_id=stage.pipeline_id,
            stage_id=stage.id,
            contact_id=contact_id,
            company_id=company_id,
            owner_id=owner,
            stage_changed_at=now,
            closed_at=_closed_at_for(stage.kind, now),
            using_db=conn,
        )
        await DealStageChange.create(
            tenant_id=actor.tenant_id,
            deal_id=deal.id,
            from_stage_id=None,
            to_stage_id=stage.id,
            changed_by_id=actor.user_id,
            using_db=conn,
        )
        await record_event(actor, DealCreated, deal.id, after=snapshot(deal), using_db=conn)
        return await _load(deal.id, conn)


async def do_update_deal(
    actor: Actor,
    deal_id: int,
    *,
    title: str | Unset = UNSET,
    value: decimal.Decimal | int | str | Unset = UNSET,
    currency: str | Unset = UNSET,
    contact_id: int | Unset | None = UNSET,
    company_id: int | Unset | None = UNSET,
    owner_id: int | Unset | None = UNSET,
) -> Deal:
    """Change a deal's fields (not its stage: that is ``do_move_deal``, which keeps history)."""
    actor.require_read()
    async with in_transaction() as conn:
        deal = await _lock_deal(actor, deal_id, conn)
        actor.require_owner_or_admin_of(deal.owner_id)
        before = snapshot(deal)
        if not isinstance(title, Unset):
            deal.title = _clean_title(title)
        if not isinstance(value, Unset):
            deal.value = clean_value(value)
        if not isinstance(currency, Unset):
            deal.currency = clean_currency(currency)
        if not isinstance(contact_id, Unset) and contact_id != deal.contact_id:
            if contact_id is not None:
                await require_in_tenant(actor, Contact, contact_id, "contact_id", conn)
            deal.contact_id = contact_id
        if not isinstance(company_id, Unset) and company_id != deal.company_id:
            if company_id is not None:
                await require_in_tenant(actor, Company, company_id, "company_id", conn)
            deal.company_id = company_id
        if not isinstance(owner_id, Unset) and owner_id != deal.owner_id:
            await check_owner_assignable(actor, owner_id, conn)
            deal.owner_id = owner_id
        await save_if_changed(actor, deal, before, DealUpdated, using_db=conn)
        return await _load(deal.id, conn)


async def do_move_deal(
    actor: Actor,
    deal_id: int,
    stage_id: int,
    *,
    pipeline_id: int | None = None,
    rule: str | None = None,
) -> Deal:
    """Move a deal to a stage of its pipeline (or of ``pipeline_id``), recording the history.

    Moving to the stage the deal is already in changes nothing and writes no history. ``rule``
    names the pipeline rule that moved it (on the event's ``after``), for who is told of it.
    """
    actor.require_read()
    async with in_transaction() as conn:
        deal = await _lock_deal(actor, deal_id, conn)
        actor.require_owner_or_admin_of(deal.owner_id)
        stage = await _resolve_placement(
            actor, deal.pipeline_id if pipeline_id is None else pipeline_id, stage_id, conn
        )
        if stage.id == deal.stage_id:
            return await _load(deal.id, conn)
        before = snapshot(deal)
        now = dt.datetime.now(dt.UTC)
        from_stage_id = deal.stage_id
        deal.pipeline_id = stage.pipeline_id
        deal.stage_id = stage.id
        deal.stage_changed_at = now
        deal.closed_at = _closed_at_for(stage.kind, now)
        await deal.save(using_db=conn)
        await DealStageChange.create(
            tenant_id=actor.tenant_id,
            deal_id=deal.id,
            from_stage_id=from_stage_id,
            to_stage_id=stage.id,
            changed_by_id=actor.user_id,
            changed_at=now,
            using_db=conn,
        )
        after = snapshot(deal)
        if rule is not None:
            after["rule"] = rule
        await record_event(
            actor,
            DealStageChanged,
            deal.id,
            before=before,
            after=after,
            using_db=conn,
        )
        return await _load(deal.id, conn)


async def do_delete_deal(actor: Actor, deal_id: int) -> None:
    """Delete a deal with its history and notes."""
    actor.require_read()
    async with in_transaction() as conn:
        deal = await _lock_deal(actor, deal_id, conn)
        actor.require_owner_or_admin_of(deal.owner_id)
        before = snapshot(deal)
        await deal.delete(using_db=conn)
        await record_event(actor, DealDeleted, deal_id, before=before, using_db=conn)


async def list_deal_history(
    actor: Actor, deal_id: int, *, cursor: str | None = None, limit: int = 50
) -> Page[DealStageChange]:
    """A deal's moves between stages, oldest first, with the stages' names."""
    deal = await access_deal(actor, deal_id)
    query = DealStageChange.filter(tenant_id=actor.tenant_id, deal_id=deal.id).select_related(
        "from_stage", "to_stage"
    )
    return await paginate_by_id(query, cursor, limit)


async def tenant_of_deal(deal_id: int) -> int | None:
    """The tenant a deal belongs to (callers check membership before acting)."""
    deal = await Deal.filter(id=deal_id).only("id", "tenant_id").first()
    return deal.tenant_id if deal is not None else None


async def access_deal_to_change(actor: Actor, deal_id: int) -> Deal:
    """A deal the actor may edit or move (PermissionDenied otherwise), checked before asking."""
    deal = await access_deal(actor, deal_id)
    actor.require_owner_or_admin_of(deal.owner_id)
    return deal


async def access_deal_to_annotate(actor: Actor, deal_id: int) -> Deal:
    """A deal the actor may write a note on: any member who writes (the rule of notes)."""
    deal = await access_deal(actor, deal_id)
    actor.require_write()
    return deal
