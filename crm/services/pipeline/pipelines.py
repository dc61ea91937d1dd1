"""Pipelines and their ordered stages: every member reads them, only admins change them.

Rules this module keeps:

- A pipeline always keeps at least one open stage, because new deals start in the first open
  stage. Won and lost stages are optional (a pipeline may track work that is never "won"), so
  the last won or lost stage may be deleted or changed like any other.
- A stage or a pipeline that holds deals cannot be deleted (409 naming how many); move the
  deals first. The default pipeline cannot be deleted; make another one the default instead.
- Stage names are unique within a pipeline, pipeline names within a tenant, ignoring case.
- Positions are always 0..n-1 in order; inserting, deleting and reordering renumber them.
- Changing a stage's kind keeps its deals' ``closed_at`` true: set when the stage becomes won or
  lost, cleared when it becomes open.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.functions import Count, Sum
from tortoise.transactions import in_transaction

from crm.errors import Conflict, NotFound, ValidationFailed
from crm.infrastructure.pagination import Page, paginate_by_id
from crm.models import Deal, Pipeline, Stage, StageKind
from crm.services.access import Actor
from crm.services.accounts.workspaces import DEFAULT_STAGES
from crm.services.events.catalog import (
    PipelineCreated,
    PipelineDeleted,
    PipelineStagesReordered,
    PipelineUpdated,
    StageCreated,
    StageDeleted,
    StageUpdated,
)
from crm.services.events.recording import record_event, save_if_changed, snapshot
from crm.services.references import UNSET, Unset, lock_in_tenant

MAX_STAGES = 50


@dataclass
class PipelineView:
    """A pipeline with its stages in order."""

    pipeline: Pipeline
    stages: list[Stage] = field(default_factory=list)


def _pipeline_snapshot(view: PipelineView) -> dict[str, Any]:
    return {**snapshot(view.pipeline), "stages": [snapshot(s) for s in view.stages]}


def _clean_name(name: str, field_name: str = "name") -> str:
    cleaned = name.strip()
    if not cleaned:
        raise ValidationFailed(field_name, "must not be empty")
    if len(cleaned) > 100:
        raise ValidationFailed(field_name, "must be at most 100 characters")
    return cleaned


async def _stages_of(pipeline_id: int, conn: BaseDBAsyncClient | None = None) -> list[Stage]:
    return await Stage.filter(pipeline_id=pipeline_id).using_db(conn).order_by("position", "id")


async def _renumber(stages: Sequence[Stage], conn: BaseDBAsyncClient) -> None:
    # Only rows whose position moved are written.
    for position, stage in enumerate(stages):
        if stage.position != position:
            stage.position = position
            await Stage.filter(id=stage.id).using_db(conn).update(position=position)


async def _lock_pipeline(actor: Actor, pipeline_id: int, conn: BaseDBAsyncClient) -> Pipeline:
    # Locking the pipeline row serializes every change to its stages (positions stay 0..n-1).
    pipeline = await lock_in_tenant(actor, Pipeline, pipeline_id, "pipeline", conn)
    return pipeline


async def _check_pipeline_name_free(
    actor: Actor, name: str, conn: BaseDBAsyncClient, exclude_id: int | None = None
) -> None:
    query = Pipeline.filter(tenant_id=actor.tenant_id).using_db(conn)
    if exclude_id is not None:
        query = query.exclude(id=exclude_id)
    names = await query.values_list("name", flat=True)
    if any(str(n).lower() == name.lower() for n in names):
        raise Conflict("name", "another pipeline already has this name")


def _check_stage_name_free(stages: Sequence[Stage], name: str, exclude_id: int | None) -> None:
    if any(s.name.lower() == name.lower() and s.id != exclude_id for s in stages):
        raise Conflict("name", "another stage of this pipeline already has this name")


async def _deal_count(actor: Actor, conn: BaseDBAsyncClient, **filters: Any) -> int:
    return await Deal.filter(tenant_id=actor.tenant_id, **filters).using_db(conn).count()


def _plural_deals(n: int) -> str:
    return f"{n} deal" if n == 1 else f"{n} deals"


async def first_open_stage(pipeline_id: int, conn: BaseDBAsyncClient | None = None) -> Stage:
    """Where new deals of a pipeline start."""
    stage = (
        await Stage.filter(pipeline_id=pipeline_id, kind=StageKind.OPEN)
        .using_db(conn)
        .order_by("position", "id")
        .first()
    )
    if stage is None:  # the rules above keep an open stage; this guards data made by hand
        raise ValidationFailed("stage_id", "the pipeline has no open stage to start deals in")
    return stage


async def list_pipelines(actor: Actor, cursor: str | None = None, limit: int = 50) -> Page[Any]:
    """Pipelines of the tenant, oldest first, each with its stages."""
    actor.require_read()
    page = await paginate_by_id(Pipeline.filter(tenant_id=actor.tenant_id), cursor, limit)
    ids = [p.id for p in page.items]
    stages = await Stage.filter(pipeline_id__in=ids).order_by("position", "id") if ids else []
    views = {p.id: PipelineView(p) for p in page.items}
    for stage in stages:
        views[stage.pipeline_id].stages.append(stage)
    return Page(list(views.values()), page.next_cursor)


async def access_pipeline(actor: Actor, pipeline_id: int) -> PipelineView:
    """One pipeline with its stages."""
    actor.require_read()
    pipeline = await Pipeline.get_or_none(id=pipeline_id, tenant_id=actor.tenant_id)
    if pipeline is None:
        raise NotFound("pipeline", pipeline_id)
    return PipelineView(pipeline, await _stages_of(pipeline.id))


@dataclass(frozen=True)
class StageSummary:
    """One stage with how many deals it holds and their value per currency."""

    stage: Stage
    count: int
    # Currency code -> total value, sorted by code; empty when the stage holds no deals.
    totals: dict[str, decimal.Decimal]


@dataclass(frozen=True)
class PipelineSummary:
    """A pipeline at a glance: its stages in order with counts and totals."""

    pipeline: Pipeline
    stages: list[StageSummary]
    # Every pipeline of the tenant, the default first (for a picker).
    pipelines: list[Pipeline]


async def tenant_of_pipeline(pipeline_id: int) -> int | None:
    """The tenant a pipeline belongs to (callers check membership before acting)."""
    pipeline = await Pipeline.filter(id=pipeline_id).only("id", "tenant_id").first()
    return pipeline.tenant_id if pipeline is not None else None


async def pipeline_summary(actor: Actor, pipeline_id: int | None = None) -> PipelineSummary:
    """Deal counts and value totals per stage of a pipeline (the default one when omitted).

    On PostgreSQL one grouped query counts and sums (a row per stage and currency); SQLite,
    the embedded single-team store, sums exactly in Python because it has no decimal type.
    """
    actor.require_read()
    pipelines = list(await Pipeline.filter(tenant_id=actor.tenant_id).order_by("id"))
    pipelines.sort(key=lambda p: not p.is_default)  # stable: the default first, then by age
    if pipeline_id is None:
        if not pipelines:
            raise NotFound("pipeline", "default")
        pipeline = pipelines[0]
    else:
        found = [p for p in pipelines if p.id == pipeline_id]
        if not found:
            raise NotFound("pipeline", pipeline_id)
        pipeline = found[0]
    stages = await _stages_of(pipeline.id)
    query = Deal.filter(tenant_id=actor.tenant_id, pipeline_id=pipeline.id)
    counts: dict[int, int] = {}
    totals: dict[int, dict[str, decimal.Decimal]] = {}

    def add(stage_id: int, currency: str, deals: int, total: decimal.Decimal) -> None:
        counts[stage_id] = counts.get(stage_id, 0) + deals
        per_currency = totals.setdefault(stage_id, {})
        per_currency[currency] = per_currency.get(currency, decimal.Decimal(0)) + total

    if connections.get("default").capabilities.dialect == "postgres":
        # One row per stage and currency, summed exactly (numeric).
        rows = (
            await query.annotate(deals=Count("id"), total=Sum("value"))
            .group_by("stage_id", "currency")
            .values("stage_id", "currency", "deals", "total")
        )
        for row in rows:
            add(
                int(row["stage_id"]),
                str(row["currency"]),
                int(row["deals"]),
                decimal.Decimal(str(row["total"] or 0)),
            )
    else:
        # SQLite keeps decimals as text and would sum them as floats: add them up exactly here.
        for stage_id, currency, value in await query.values_list("stage_id", "currency", "value"):
            add(int(stage_id), str(currency), 1, decimal.Decimal(str(value)))
    cent = decimal.Decimal("0.01")
    return PipelineSummary(
        pipeline,
        [
            StageSummary(
                s,
                counts.get(s.id, 0),
                {
                    code: total.quantize(cent)
                    for code, total in sorted(totals.get(s.id, {}).items())
                },
            )
            for s in stages
        ],
        pipelines,
    )


async def _make_default(actor: Actor, pipeline: Pipeline, conn: BaseDBAsyncClient) -> None:
    await (
        Pipeline.filter(tenant_id=actor.tenant_id, is_default=True)
        .exclude(id=pipeline.id)
        .using_db(conn)
        .update(is_default=False)
    )
    pipeline.is_default = True


async def do_create_pipeline(
    actor: Actor,
    name: str,
    stages: Sequence[tuple[str, StageKind]] | None = None,
    *,
    is_default: bool = False,
) -> PipelineView:
    """Create a pipeline with the given stages (the default set when omitted)."""
    actor.require_admin()
    cleaned = _clean_name(name)
    wanted = list(DEFAULT_STAGES if stages is None else stages)
    if not wanted:
        raise ValidationFailed("stages", "a pipeline needs at least one stage")
    if len(wanted) > MAX_STAGES:
        raise ValidationFailed("stages", f"a pipeline has at most {MAX_STAGES} stages")
    if not any(kind is StageKind.OPEN for _, kind in wanted):
        raise ValidationFailed("stages", "a pipeline needs at least one open stage")
    stage_names = [_clean_name(n, f"stages.{i}.name") for i, (n, _) in enumerate(wanted)]
    if len({n.lower() for n in stage_names}) != len(stage_names):
        raise ValidationFailed("stages", "stage names must be unique within the pipeline")
    async with in_transaction() as conn:
        await _check_pipeline_name_free(actor, cleaned, conn)
        pipeline = await Pipeline.create(
            tenant_id=actor.tenant_id, name=cleaned, is_default=False, using_db=conn
        )
        if is_default:
            await _make_default(actor, pipeline, conn)
            await pipeline.save(using_db=conn, update_fields=["is_default"])
        for position, (stage_name, (_, kind)) in enumerate(zip(stage_names, wanted, strict=True)):
            await Stage.create(
                tenant_id=actor.tenant_id,
                pipeline_id=pipeline.id,
                name=stage_name,
                position=position,
                kind=kind,
                using_db=conn,
            )
        view = PipelineView(pipeline, await _stages_of(pipeline.id, conn))
        await record_event(
            actor,
            PipelineCreated,
            pipeline.id,
            after=_pipeline_snapshot(view),
            using_db=conn,
        )
    return view


async def do_update_pipeline(
    actor: Actor,
    pipeline_id: int,
    *,
    name: str | Unset = UNSET,
    is_default: bool | Unset = UNSET,
) -> PipelineView:
    """Rename a pipeline or make it the tenant's default."""
    actor.require_admin()
    async with in_transaction() as conn:
        pipeline = await _lock_pipeline(actor, pipeline_id, conn)
        before = snapshot(pipeline)
        if not isinstance(name, Unset):
            cleaned = _clean_name(name)
            await _check_pipeline_name_free(actor, cleaned, conn, exclude_id=pipeline.id)
            pipeline.name = cleaned
        if is_default is True and not pipeline.is_default:
            await _make_default(actor, pipeline, conn)
        elif is_default is False and pipeline.is_default:
            raise ValidationFailed(
                "is_default", "a tenant always has a default pipeline; make another one default"
            )
        view = PipelineView(pipeline, await _stages_of(pipeline.id, conn))
        await save_if_changed(actor, pipeline, before, PipelineUpdated, using_db=conn)
    return view


async def do_delete_pipeline(actor: Actor, pipeline_id: int) -> None:
    """Delete a pipeline and its stages; refused for the default one and one holding deals."""
    actor.require_admin()
    async with in_transaction() as conn:
        pipeline = await _lock_pipeline(actor, pipeline_id, conn)
        if pipeline.is_default:
            raise Conflict(
                "pipeline_id", "the default pipeline cannot be deleted; make another one default"
            )
        deals = await _deal_count(actor, conn, pipeline_id=pipeline.id)
        if deals:
            raise Conflict(
                "pipeline_id", f"{_plural_deals(deals)} in this pipeline; move or delete them first"
            )
        before = _pipeline_snapshot(PipelineView(pipeline, await _stages_of(pipeline.id, conn)))
        try:
            await pipeline.delete(using_db=conn)
        except IntegrityError:
            # A deal was created in it after the count (the foreign key restricts the delete).
            raise Conflict("pipeline_id", "a deal was just added to this pipeline") from None
        await record_event(actor, PipelineDeleted, pipeline_id, before=before, using_db=conn)


def _stage_in(stages: Sequence[Stage], stage_id: int) -> Stage:
    for stage in stages:
        if stage.id == stage_id:
            return stage
    raise NotFound("stage", stage_id)


async def do_create_stage(
    actor: Actor,
    pipeline_id: int,
    name: str,
    kind: StageKind = StageKind.OPEN,
    *,
    position: int | None = None,
) -> Stage:
    """Add a stage at ``position`` (the end when omitted), shifting the ones after it."""
    actor.require_admin()
    async with in_transaction() as conn:
        await _lock_pipeline(actor, pipeline_id, conn)
        cleaned = _clean_name(name)
        stages = await _stages_of(pipeline_id, conn)
        if len(stages) >= MAX_STAGES:
            raise ValidationFailed("name", f"a pipeline has at most {MAX_STAGES} stages")
        _check_stage_name_free(stages, cleaned, None)
        at = len(stages) if position is None else position
        if not 0 <= at <= len(stages):
            raise ValidationFailed("position", f"must be between 0 and {len(stages)}")
        # Make room first so the new row takes a free position.
        for stage in stages[at:]:
            await Stage.filter(id=stage.id).using_db(conn).update(position=stage.position + 1)
        stage = await Stage.create(
            tenant_id=actor.tenant_id,
            pipeline_id=pipeline_id,
            name=cleaned,
            kind=kind,
            position=at,
            using_db=conn,
        )
        await _renumber(await _stages_of(pipeline_id, conn), conn)
        await stage.refresh_from_db(using_db=conn)
        await record_event(actor, StageCreated, stage.id, after=snapshot(stage), using_db=conn)
    return stage


async def do_update_stage(
    actor: Actor,
    pipeline_id: int,
    stage_id: int,
    *,
    name: str | Unset = UNSET,
    kind: StageKind | Unset = UNSET,
) -> Stage:
    """Rename a stage or change its kind (open, won, lost)."""
    actor.require_admin()
    async with in_transaction() as conn:
        await _lock_pipeline(actor, pipeline_id, conn)
        stages = await _stages_of(pipeline_id, conn)
        stage = _stage_in(stages, stage_id)
        before = snapshot(stage)
        if not isinstance(name, Unset):
            cleaned = _clean_name(name)
            _check_stage_name_free(stages, cleaned, stage.id)
            stage.name = cleaned
        if not isinstance(kind, Unset) and kind is not stage.kind:
            open_left = [s for s in stages if s.kind is StageKind.OPEN and s.id != stage.id]
            if stage.kind is StageKind.OPEN and not open_left:
                raise Conflict("kind", "a pipeline needs at least one open stage")
            now = dt.datetime.now(dt.UTC)
            deals = Deal.filter(tenant_id=actor.tenant_id, stage_id=stage.id).using_db(conn)
            if kind is StageKind.OPEN:
                await deals.update(closed_at=None, updated_at=now)
            elif stage.kind is StageKind.OPEN:
                await deals.update(closed_at=now, updated_at=now)
            stage.kind = kind
        await save_if_changed(actor, stage, before, StageUpdated, using_db=conn)
    return stage


async def do_delete_stage(actor: Actor, pipeline_id: int, stage_id: int) -> None:
    """Delete a stage that holds no deals and is not the pipeline's last open stage."""
    actor.require_admin()
    async with in_transaction() as conn:
        await _lock_pipeline(actor, pipeline_id, conn)
        stages = await _stages_of(pipeline_id, conn)
        stage = _stage_in(stages, stage_id)
        deals = await _deal_count(actor, conn, stage_id=stage.id)
        if deals:
            raise Conflict(
                "stage_id", f"{_plural_deals(deals)} in this stage; move them to another first"
            )
        remaining = [s for s in stages if s.id != stage.id]
        if stage.kind is StageKind.OPEN and not any(s.kind is StageKind.OPEN for s in remaining):
            raise Conflict("stage_id", "the last open stage of a pipeline cannot be deleted")
        before = snapshot(stage)
        try:
            await stage.delete(using_db=conn)
        except IntegrityError:
            # A deal entered it after the count (the foreign key restricts the delete).
            raise Conflict("stage_id", "a deal was just moved into this stage") from None
        await _renumber(remaining, conn)
        await record_event(actor, StageDeleted, stage_id, before=before, using_db=conn)


async def do_reorder_stages(
    actor: Actor, pipeline_id: int, stage_ids: Sequence[int]
) -> PipelineView:
    """Put the stages in the order of ``stage_ids``, which must list each stage exactly once."""
    actor.require_admin()
    async with in_transaction() as conn:
        pipeline = await _lock_pipeline(actor, pipeline_id, conn)
        stages = await _stages_of(pipeline_id, conn)
        current = [s.id for s in stages]
        wanted = list(stage_ids)
        if sorted(wanted) != sorted(current):
            problems = []
            missing = sorted(set(current) - set(wanted))
            unknown = sorted(set(wanted) - set(current))
            repeated = sorted({i for i in wanted if wanted.count(i) > 1})
            if missing:
                problems.append(f"missing {missing}")
            if unknown:
                problems.append(f"not stages of this pipeline {unknown}")
            if repeated:
                problems.append(f"repeated {repeated}")
            raise ValidationFailed(
                "stage_ids",
                "must list each stage of the pipeline exactly once: " + "; ".join(problems),
            )
        by_id = {s.id: s for s in stages}
        ordered = [by_id[i] for i in wanted]
        if wanted != current:
            await _renumber(ordered, conn)
            await record_event(
                actor,
                PipelineStagesReordered,
                pipeline.id,
                before={"stage_ids": current},
                after={"stage_ids": wanted},
                using_db=conn,
            )
    return PipelineView(pipeline, ordered)
