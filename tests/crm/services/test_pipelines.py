"""Pipeline service rules: compact positions, where new deals start, locking out non-admins."""

from __future__ import annotations

import pytest

from crm.models import Pipeline, Role, Stage, StageKind
from crm.services.access import Actor, Scope
from crm.services.deals import do_create_deal
from crm.services.errors import Conflict, NotFound, PermissionDenied
from crm.services.pipelines import (
    access_pipeline,
    do_create_pipeline,
    do_create_stage,
    do_delete_pipeline,
    do_delete_stage,
    do_reorder_stages,
    first_open_stage,
)
from tests.conftest import Workspace


async def _positions(pipeline_id: int) -> list[tuple[str, int]]:
    stages = await Stage.filter(pipeline_id=pipeline_id).order_by("position")
    return [(s.name, s.position) for s in stages]


async def test_positions_stay_compact(workspace: Workspace) -> None:
    actor = workspace.actor
    view = await do_create_pipeline(actor, "P", [("a", StageKind.OPEN), ("b", StageKind.OPEN)])
    pid = view.pipeline.id
    await do_create_stage(actor, pid, "first", position=0)
    await do_create_stage(actor, pid, "middle", position=2)
    await do_create_stage(actor, pid, "last")
    assert await _positions(pid) == [("first", 0), ("a", 1), ("middle", 2), ("b", 3), ("last", 4)]
    middle = await Stage.get(pipeline_id=pid, name="middle")
    await do_delete_stage(actor, pid, middle.id)
    assert await _positions(pid) == [("first", 0), ("a", 1), ("b", 2), ("last", 3)]


async def test_new_deals_start_in_the_first_open_stage(workspace: Workspace) -> None:
    actor = workspace.actor
    default = await Pipeline.get(tenant_id=workspace.tenant_id, is_default=True)
    view = await access_pipeline(actor, default.id)
    won = next(s for s in view.stages if s.kind is StageKind.WON)
    # put the won stage first: deals must still start open
    order = [won.id, *[s.id for s in view.stages if s.id != won.id]]
    await do_reorder_stages(actor, default.id, order)
    assert (await first_open_stage(default.id)).name == "Cold"
    deal = await do_create_deal(actor, "d")
    assert deal.stage.name == "Cold" and deal.closed_at is None


async def test_stages_are_scoped_by_their_pipeline(workspace: Workspace) -> None:
    actor = workspace.actor
    other = await do_create_pipeline(actor, "Other")
    default = await Pipeline.get(tenant_id=workspace.tenant_id, is_default=True)
    # a stage of another pipeline in the same tenant is not found through this one
    with pytest.raises(NotFound):
        await do_delete_stage(actor, default.id, other.stages[0].id)
    assert await Stage.exists(id=other.stages[0].id)


async def test_admin_scope_and_role_are_both_needed(workspace: Workspace) -> None:
    pipeline = await Pipeline.get(tenant_id=workspace.tenant_id, is_default=True)
    narrow_key = Actor(
        tenant_id=workspace.tenant_id,
        user_id=workspace.owner_id,
        role=Role.OWNER,
        scopes=frozenset({Scope.READ, Scope.WRITE}),
    )
    bidi = Actor(tenant_id=workspace.tenant_id, user_id=workspace.owner_id, role=Role.BIDI)
    for actor in (narrow_key, bidi):
        with pytest.raises(PermissionDenied):
            await do_create_stage(actor, pipeline.id, "New")
    assert len((await access_pipeline(bidi, pipeline.id)).stages) == 6


async def test_a_deal_added_after_the_count_still_blocks_the_delete(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    actor = workspace.actor
    other = await do_create_pipeline(actor, "Other")
    deal = await do_create_deal(actor, "d", stage_id=other.stages[1].id)

    async def no_deals(*args: object, **kwargs: object) -> int:
        return 0  # as if the deal arrived between the count and the delete

    monkeypatch.setattr("crm.services.pipelines._deal_count", no_deals)
    with pytest.raises(Conflict) as exc:
        await do_delete_stage(actor, other.pipeline.id, deal.stage_id)
    assert exc.value.errors[0].field == "stage_id"
    with pytest.raises(Conflict) as exc:
        await do_delete_pipeline(actor, other.pipeline.id)
    assert exc.value.errors[0].field == "pipeline_id"
    assert len((await access_pipeline(actor, other.pipeline.id)).stages) == 6
