"""Pipelines and their ordered stages: everyone reads, admins change."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from crm.api.dependencies import ActorDep
from crm.api.schemas import Count, Id, ListOut, PageLimit, StrictModel, not_null
from crm.models import Stage, StageKind
from crm.services.pipeline import pipelines
from crm.services.pipeline.pipelines import MAX_STAGES, PipelineView

router = APIRouter(tags=["pipelines"])

PipelineId = Id
StageId = Id


class StageOut(BaseModel):
    id: int
    pipeline_id: int
    name: str
    position: int
    kind: StageKind


class PipelineOut(BaseModel):
    id: int
    name: str
    is_default: bool
    created_at: dt.datetime
    stages: list[StageOut]


class StageSpec(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    kind: StageKind = StageKind.OPEN


class PipelineIn(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    stages: list[StageSpec] | None = Field(
        default=None,
        max_length=MAX_STAGES,
        description="in order; default: Cold, Replied, Qualified, Meeting, Won (won), Lost",
    )
    is_default: bool = False


class PipelinePatch(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    is_default: bool | None = Field(default=None, description="true makes it the default")

    _not_null = not_null("name", "is_default")


class StageIn(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    kind: StageKind = StageKind.OPEN
    position: Count | None = Field(default=None, description="default: after the last")


class StagePatch(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    kind: StageKind | None = None

    _not_null = not_null("name", "kind")


class StageOrderIn(StrictModel):
    stage_ids: list[Id] = Field(max_length=MAX_STAGES)


def _stage_out(stage: Stage) -> StageOut:
    return StageOut.model_validate(stage, from_attributes=True)


def _out(view: PipelineView) -> PipelineOut:
    p = view.pipeline
    return PipelineOut(
        id=p.id,
        name=p.name,
        is_default=p.is_default,
        created_at=p.created_at,
        stages=[_stage_out(s) for s in view.stages],
    )


@router.get("/pipelines", response_model=ListOut[PipelineOut])
async def get_pipelines(
    actor: ActorDep, cursor: str | None = None, limit: PageLimit = 50
) -> ListOut[PipelineOut]:
    """Pipelines, each with its stages in order."""
    page = await pipelines.list_pipelines(actor, cursor, limit)
    return ListOut(items=[_out(v) for v in page.items], next_cursor=page.next_cursor)


@router.post("/pipelines", response_model=PipelineOut, status_code=status.HTTP_201_CREATED)
async def post_pipeline(body: PipelineIn, actor: ActorDep) -> PipelineOut:
    """Create a pipeline (admin)."""
    stages = None if body.stages is None else [(s.name, s.kind) for s in body.stages]
    view = await pipelines.do_create_pipeline(actor, body.name, stages, is_default=body.is_default)
    return _out(view)


@router.get("/pipelines/{pipeline_id}", response_model=PipelineOut)
async def get_pipeline(pipeline_id: PipelineId, actor: ActorDep) -> PipelineOut:
    """One pipeline with its stages."""
    return _out(await pipelines.access_pipeline(actor, pipeline_id))


@router.patch("/pipelines/{pipeline_id}", response_model=PipelineOut)
async def patch_pipeline(
    pipeline_id: PipelineId, body: PipelinePatch, actor: ActorDep
) -> PipelineOut:
    """Rename a pipeline or make it the default (admin)."""
    view = await pipelines.do_update_pipeline(
        actor, pipeline_id, **body.model_dump(exclude_unset=True)
    )
    return _out(view)


@router.delete("/pipelines/{pipeline_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_pipeline(pipeline_id: PipelineId, actor: ActorDep) -> None:
    """Delete a pipeline without deals that is not the default (admin)."""
    await pipelines.do_delete_pipeline(actor, pipeline_id)


@router.post(
    "/pipelines/{pipeline_id}/stages",
    response_model=StageOut,
    status_code=status.HTTP_201_CREATED,
)
async def post_stage(pipeline_id: PipelineId, body: StageIn, actor: ActorDep) -> StageOut:
    """Add a stage, at ``position`` or at the end (admin)."""
    stage = await pipelines.do_create_stage(
        actor, pipeline_id, body.name, body.kind, position=body.position
    )
    return _stage_out(stage)


@router.put("/pipelines/{pipeline_id}/stages/order", response_model=PipelineOut)
async def put_stage_order(
    pipeline_id: PipelineId, body: StageOrderIn, actor: ActorDep
) -> PipelineOut:
    """Reorder the stages: ``stage_ids`` lists every stage of the pipeline once (admin)."""
    return _out(await pipelines.do_reorder_stages(actor, pipeline_id, body.stage_ids))


@router.patch("/pipelines/{pipeline_id}/stages/{stage_id}", response_model=StageOut)
async def patch_stage(
    pipeline_id: PipelineId, stage_id: StageId, body: StagePatch, actor: ActorDep
) -> StageOut:
    """Rename a stage or change its kind (admin)."""
    stage = await pipelines.do_update_stage(
        actor, pipeline_id, stage_id, **body.model_dump(exclude_unset=True)
    )
    return _stage_out(stage)


@router.delete("/pipelines/{pipeline_id}/stages/{stage_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_stage(pipeline_id: PipelineId, stage_id: StageId, actor: ActorDep) -> None:
    """Delete a stage without deals (admin)."""
    await pipelines.do_delete_stage(actor, pipeline_id, stage_id)
