"""Migration 0013: a default won stage still called "Deal" becomes "Won" where that is safe."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

from tortoise import connections

from crm.models import Pipeline, Stage, StageKind
from crm.services.pipeline.pipelines import do_create_pipeline
from tests.support.workspace import Workspace

migration = importlib.import_module("migrations.0013_won_stage_name")


async def test_the_won_stage_deal_is_renamed_won_unless_that_would_clash(
    workspace: Workspace,
) -> None:
    actor = workspace.actor
    default = await Pipeline.get(tenant_id=workspace.tenant_id, is_default=True)
    won = await Stage.get(pipeline_id=default.id, kind=StageKind.WON)
    await Stage.filter(id=won.id).update(name="Deal")  # as workspaces made before 0013 have it
    clash = await do_create_pipeline(
        actor, "Clash", [("Cold", StageKind.OPEN), ("won", StageKind.OPEN), ("Deal", StageKind.WON)]
    )
    open_deal = await do_create_pipeline(
        actor, "Open", [("Deal", StageKind.OPEN), ("Signed", StageKind.WON)]
    )
    editor = SimpleNamespace(client=connections.get("default"))

    await migration._up(None, editor)

    assert (await Stage.get(id=won.id)).name == "Won"
    assert [
        s.name for s in await Stage.filter(pipeline_id=clash.pipeline.id).order_by("position")
    ] == [
        "Cold",
        "won",
        "Deal",
    ]
    assert [s.name for s in await Stage.filter(pipeline_id=open_deal.pipeline.id)] == [
        "Deal",
        "Signed",
    ]
    await migration._down(None, editor)
    assert (await Stage.get(id=won.id)).name == "Deal"
