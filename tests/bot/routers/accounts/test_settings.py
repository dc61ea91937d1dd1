"""Workspace defaults by the owner's language, and ``/settings`` to change them."""

from __future__ import annotations

from crm.models import Contact, Pipeline, Stage, Tenant, User
from tests.support.bot import (
    count,
    invite_link,
    join,
    next_message,
    onboard_in_russian,
    onboard_owner,
    say,
    send_file,
)
from tests.support.polling import eventually
from tests.support.service import RunningService

OWNER = 6101
RUSSIAN = 6102
MEMBER = 6103


async def stage_names(tenant_id: int) -> list[str]:
    pipeline = await Pipeline.get(tenant_id=tenant_id, is_default=True)
    return [s.name for s in await Stage.filter(pipeline_id=pipeline.id).order_by("position")]


async def answer_to(service: RunningService, user_id: int, text: str) -> str:
    """What the bot answers to ``text``."""
    before = await count(service, user_id)
    await say(service, user_id, text)
    return str((await next_message(service, user_id, before))["text"])


async def test_a_russian_owner_gets_russian_defaults_and_imports_russian_numbers(
    service: RunningService,
) -> None:
    owner = await onboard_in_russian(service, RUSSIAN)
    tenant = await Tenant.get(id=owner.current_tenant_id)
    assert (tenant.default_region, tenant.default_currency) == ("RU", "RUB")
    assert await stage_names(tenant.id) == [
        "Холодный контакт",
        "Есть ответ",
        "Квалифицирован",
        "Встреча",
        "Выиграна",
        "Проиграна",
    ]
    await send_file(service, RUSSIAN, "Имя,Телефон\nИван Петров,8 916 123-45-67\n".encode())

    async def imported() -> bool:
        return await Contact.filter(tenant_id=tenant.id).exists()

    await eventually(imported)
    assert (await Contact.get(tenant_id=tenant.id)).phone == "+79161234567"
    shown = await answer_to(service, RUSSIAN, "/settings")
    assert "Регион телефонов: RU" in shown and "Валюта: RUB" in shown
    assert "5. Выиграна" in shown


async def test_an_english_owner_gets_us_defaults_and_the_won_stage(
    service: RunningService,
) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    tenant = await Tenant.get(id=owner.current_tenant_id)
    assert (tenant.default_region, tenant.default_currency) == ("US", "USD")
    assert await stage_names(tenant.id) == [
        "Cold",
        "Replied",
        "Qualified",
        "Meeting",
        "Won",
        "Lost",
    ]


async def test_settings_change_region_currency_time_zone_and_stage_names(
    service: RunningService,
) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    tenant_id = owner.current_tenant_id or 0
    shown = await answer_to(service, OWNER, "/settings")
    assert "Phone region: US" in shown and "Currency: USD" in shown
    assert "Your time zone: not set (UTC)" in shown and "5. Won" in shown

    assert (await answer_to(service, OWNER, "/settings region de")).startswith(
        "Phone region set: DE."
    )
    assert "not a country code" in await answer_to(service, OWNER, "/settings region XX")
    assert (await answer_to(service, OWNER, "/settings currency eur")).startswith(
        "Currency set: EUR."
    )
    assert "not a currency code" in await answer_to(service, OWNER, "/settings currency ABC")
    tenant = await Tenant.get(id=tenant_id)
    assert (tenant.default_region, tenant.default_currency) == ("DE", "EUR")

    assert await answer_to(service, OWNER, "/settings stage 5 Signed") == "Stage 5 is now “Signed”."
    assert await answer_to(service, OWNER, "/settings stage 1 lost") == (
        "Another stage is already called “lost”."
    )
    assert "no stage 9" in await answer_to(service, OWNER, "/settings stage 9 Nine")
    assert (await stage_names(tenant_id))[4] == "Signed"

    zone = await answer_to(service, OWNER, "/settings timezone Europe/Berlin")
    assert zone.startswith("Time zone set: Europe/Berlin.")
    assert (await User.get(telegram_id=OWNER)).timezone == "Europe/Berlin"

    await join(service, MEMBER, "Boris", await invite_link(service, OWNER, "member"))
    refused = await answer_to(service, MEMBER, "/settings region RU")
    assert refused == "Only owners and admins can change the workspace settings."
    assert (await Tenant.get(id=tenant_id)).default_region == "DE"
