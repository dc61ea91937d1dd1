"""Deal service rules: value checks, closed_at through moves, history of system moves."""

from __future__ import annotations

from decimal import Decimal

import pytest

from crm.models import DealStageChange, Pipeline, Stage
from crm.services.access import Actor
from crm.services.deals import clean_currency, clean_value, do_create_deal, do_move_deal
from crm.services.errors import ValidationFailed
from tests.conftest import Workspace


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", "0.00"),
        ("12.5", "12.50"),
        (7, "7.00"),
        (Decimal("9999999999999999.99"), "9999999999999999.99"),  # the largest that fits
        ("10000000000000000", None),
    ],
)
def test_clean_value(raw: object, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(ValidationFailed):
            clean_value(raw)  # type: ignore[arg-type]
    else:
        assert str(clean_value(raw)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", ["-0.01", "1.001", "Infinity", "sNaN", "", "1,5"])
def test_bad_values(raw: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        clean_value(raw)
    assert exc.value.errors[0].field == "value"


def test_currency_codes() -> None:
    assert clean_currency(" rub ") == "RUB"
    for bad in ("RUBL", "R1B", "QQQ", "ДОЛ"):
        with pytest.raises(ValidationFailed):
            clean_currency(bad)


async def test_closed_at_follows_the_stage_kind(workspace: Workspace) -> None:
    actor = workspace.actor
    pipeline = await Pipeline.get(tenant_id=workspace.tenant_id, is_default=True)
    stages = {s.name: s for s in await Stage.filter(pipeline_id=pipeline.id)}
    deal = await do_create_deal(actor, "d")
    won = await do_move_deal(actor, deal.id, stages["Deal"].id)
    assert won.closed_at is not None
    lost = await do_move_deal(actor, deal.id, stages["Lost"].id)
    assert lost.closed_at is not None and lost.closed_at >= won.closed_at
    reopened = await do_move_deal(actor, deal.id, stages["Replied"].id)
    assert reopened.closed_at is None
    assert reopened.stage_changed_at is not None
    assert reopened.stage_changed_at > lost.stage_changed_at  # type: ignore[operator]


async def test_system_moves_are_recorded_without_a_user(workspace: Workspace) -> None:
    system = Actor.system(workspace.tenant_id)
    pipeline = await Pipeline.get(tenant_id=workspace.tenant_id, is_default=True)
    replied = await Stage.get(pipeline_id=pipeline.id, name="Replied")
    deal = await do_create_deal(workspace.actor, "d")
    await do_move_deal(system, deal.id, replied.id)
    await do_move_deal(system, deal.id, replied.id)  # no-op
    history = await DealStageChange.filter(deal_id=deal.id).order_by("id")
    assert [(h.changed_by_id, h.to_stage_id) for h in history] == [
        (workspace.owner_id, deal.stage_id),
        (None, replied.id),
    ]
