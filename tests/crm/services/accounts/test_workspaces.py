"""Workspace defaults: by the owner's language and phone; checked when changed."""

from __future__ import annotations

import pytest

from crm.errors import ValidationFailed
from crm.models import Pipeline, Stage
from crm.services.accounts.workspaces import do_create_tenant, do_update_tenant, same_default_stage
from tests.support.workspace import Workspace


async def _stages(tenant_id: int) -> list[str]:
    pipeline = await Pipeline.get(tenant_id=tenant_id, is_default=True)
    return [s.name for s in await Stage.filter(pipeline_id=pipeline.id).order_by("position")]


async def test_defaults_follow_the_owners_language_and_phone() -> None:
    russian = (await do_create_tenant("Ромашка", owner_email="o@example.com", language="ru")).tenant
    assert (russian.default_region, russian.default_currency) == ("RU", "RUB")
    assert (await _stages(russian.id))[4] == "Выиграна"
    german = (
        await do_create_tenant(
            "Acme", owner_email="a@example.com", language="en-GB", owner_phone="+4915112345678"
        )
    ).tenant
    assert (german.default_region, german.default_currency) == ("DE", "USD")
    assert (await _stages(german.id))[4] == "Won"
    chosen = (
        await do_create_tenant(
            "Kept", owner_email="k@example.com", language="ru", default_region="kz"
        )
    ).tenant
    assert chosen.default_region == "KZ"


async def test_a_region_or_currency_that_does_not_exist_is_refused(workspace: Workspace) -> None:
    with pytest.raises(ValidationFailed) as region:
        await do_update_tenant(workspace.actor, default_region="XX")
    assert region.value.errors[0].field == "default_region"
    with pytest.raises(ValidationFailed) as currency:
        await do_update_tenant(workspace.actor, default_currency="ABC")
    assert currency.value.errors[0].field == "default_currency"
    tenant = await do_update_tenant(workspace.actor, default_region="de", default_currency="eur")
    assert (tenant.default_region, tenant.default_currency) == ("DE", "EUR")


def test_a_default_stage_is_known_by_all_its_names() -> None:
    assert same_default_stage("Replied") == {"replied", "есть ответ"}
    assert same_default_stage("deal") == {"won", "выиграна", "deal"}
    assert same_default_stage("Proposal") == {"proposal"}
