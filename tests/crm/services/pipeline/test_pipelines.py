"""Pipeline service rules: compact positions, where new deals start, locking out non-admins."""

from __future__ import annotations

from decimal import Decimal

import pytest

from crm.errors import Conflict, NotFound, PermissionDenied
from crm.models import Pipeline, Role, Stage, StageKind
from crm.services.access import Actor, Scope
from crm.services.pipeline.deals import do_create_deal
from crm.services.pipeline.pipelines import (
    access_pipeline,
    do_create_pipeline,
    do_create_stage,
    do_delete_pipeline,
    do_delete_stage,
    do_reorder_stages,
    first_open_stage,
    pipeline_summary,
    tenant_of_pipeline,
)
from tests.support.workspace import Workspace


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

    monkeypatch.setattr("crm.services.pipeline.pipelines._deal_count", no_deals)
    with pytest.raises(Conflict) as exc:
        await do_delete_stage(actor, other.pipeline.id, deal.stage_id)
    assert exc.value.errors[0].field == "stage_id"
    with pytest.raises(Conflict) as exc:
        await do_delete_pipeline(actor, other.pipeline.id)
    assert exc.value.errors[0].field == "pipeline_id"
    assert len((await access_pipeline(actor, other.pipeline.id)).stages) == 6


async def test_summary_counts_and_totals_per_stage_and_currency(
    workspace: Workspace, other_workspace: Workspace
) -> None:
    actor = workspace.actor
    pipeline = await Pipeline.get(tenant_id=workspace.tenant_id, is_default=True)
    stages = {s.name: s for s in await Stage.filter(pipeline_id=pipeline.id)}
    await do_create_deal(actor, "a", value="1500", currency="EUR")
    await do_create_deal(actor, "b", value="0.1", currency="EUR")
    await do_create_deal(actor, "c", value="0.2", currency="EUR")
    await do_create_deal(actor, "d", value="9999999999999999.97", currency="USD")
    await do_create_deal(actor, "e", value="0.01", currency="USD")  # beyond a float's digits
    await do_create_deal(actor, "w", value="7", stage_id=stages["Won"].id)
    await do_create_deal(other_workspace.actor, "theirs", value="100", currency="EUR")
    second = await do_create_pipeline(actor, "Partners")
    await do_create_deal(actor, "elsewhere", value="5", pipeline_id=second.pipeline.id)

    summary = await pipeline_summary(actor)
    assert summary.pipeline.id == pipeline.id
    assert [p.id for p in summary.pipelines] == [pipeline.id, second.pipeline.id]
    rows = {row.stage.name: row for row in summary.stages}
    assert [row.stage.name for row in summary.stages] == [
        "Cold",
        "Replied",
        "Qualified",
        "Meeting",
        "Won",
        "Lost",
    ]
    assert rows["Cold"].count == 5
    assert rows["Cold"].totals == {
        "EUR": Decimal("1500.30"),
        "USD": Decimal("9999999999999999.98"),
    }
    assert (rows["Won"].count, rows["Won"].totals) == (1, {"USD": Decimal("7.00")})
    assert (rows["Replied"].count, rows["Replied"].totals) == (0, {})

    other = await pipeline_summary(actor, second.pipeline.id)
    assert [(r.count, r.totals) for r in other.stages if r.count] == [(1, {"USD": Decimal("5.00")})]
    with pytest.raises(NotFound):
        await pipeline_summary(other_workspace.actor, pipeline.id)
    viewer = Actor(tenant_id=workspace.tenant_id, user_id=None, role=Role.VIEWER)
    assert (await pipeline_summary(viewer)).stages[0].count == 5
    assert await tenant_of_pipeline(pipeline.id) == workspace.tenant_id
