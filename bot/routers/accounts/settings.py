"""``/settings``: the workspace's defaults; ``/timezone [zone]``: the operator's time zone.

``/settings`` shows the phone region (numbers without ``+`` are read as in that country), the
default currency of deals, the operator's time zone and the stages of the default pipeline;
``/settings region DE``, ``/settings currency EUR``, ``/settings stage 2 Talking`` change them
(owners and admins), ``/settings timezone Europe/Berlin`` the operator's own zone.

``/timezone Europe/Berlin`` or ``/timezone +3`` (stored as ``Etc/GMT-3``: the tz database
inverts the sign) sets it; ``/timezone`` alone shows it.
"""

from __future__ import annotations

import datetime as dt

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.handling import CURRENT_ACTOR, PRIVATE_CHATS, feature_router
from bot.texts import no_workspace
from crm.errors import Conflict, PermissionDenied, ServiceError, ValidationFailed
from crm.models import User
from crm.services.access import Actor
from crm.services.accounts import workspaces as tenants
from crm.services.inbox import digest
from crm.services.pipeline import pipelines


def _usage() -> str:
    return _(
        "Change it with /timezone and a zone name or a UTC offset: "
        "/timezone Europe/Berlin, /timezone +3."
    )


async def timezone(message: Message, command: CommandObject, user: User | None) -> None:
    """Show or set the time zone of the operator."""
    await _timezone(message, (command.args or "").strip(), user)


async def _timezone(message: Message, wanted: str, user: User | None) -> None:
    if user is None:
        await message.answer(no_workspace())
        return
    now = dt.datetime.now(dt.UTC)
    if not wanted:
        local = digest.local_time(user.timezone, now)
        if user.timezone:
            text = _("Your time zone: {zone}. It is {time} there now.").format(
                zone=digest.zone_label(user.timezone), time=local.strftime("%H:%M")
            )
        else:
            text = _("Your time zone is not set: the daily digest follows UTC.")
        await message.answer(text + "\n" + _usage())
        return
    try:
        user = await digest.do_set_timezone(user, wanted)
    except ValidationFailed:
        await message.answer(
            _("“{zone}” is not a time zone I know.").format(zone=wanted[:64]) + "\n" + _usage()
        )
        return
    local = digest.local_time(user.timezone, now)
    await message.answer(
        _(
            "Time zone set: {zone}. It is {time} there now; your daily digest comes at "
            "{hour}:00 local time."
        ).format(
            zone=digest.zone_label(user.timezone),
            time=local.strftime("%H:%M"),
            hour=f"{digest.DIGEST_HOUR:02d}",
        )
    )


def _settings_usage() -> str:
    return _(
        "Change them with:\n"
        "/settings region DE: the country of phone numbers written without +\n"
        "/settings currency EUR: the currency of new deals\n"
        "/settings timezone Europe/Berlin: your time zone\n"
        "/settings stage 2 Talking: rename a stage"
    )


async def _overview(actor: Actor, user: User) -> str:
    """The workspace's settings and the operator's time zone, as HTML-free text."""
    tenant = await tenants.access_tenant(actor)
    summary = await pipelines.pipeline_summary(actor)
    zone = digest.zone_label(user.timezone) if user.timezone else _("not set (UTC)")
    lines = [
        _("Settings of “{workspace}”").format(workspace=tenant.name),
        "",
        _("Phone region: {region}").format(region=tenant.default_region),
        _("Currency: {currency}").format(currency=tenant.default_currency),
        _("Your time zone: {zone}").format(zone=zone),
        _("Stages of “{pipeline}”:").format(pipeline=summary.pipeline.name),
    ]
    lines += [f"{i}. {row.stage.name}" for i, row in enumerate(summary.stages, 1)]
    return "\n".join([*lines, "", _settings_usage()])


async def _rename_stage(actor: Actor, args: str) -> str:
    """``<number> <new name>``: rename a stage of the default pipeline."""
    number, _sep, name = args.partition(" ")
    summary = await pipelines.pipeline_summary(actor)
    stages = [row.stage for row in summary.stages]
    if not number.isdigit() or not name.strip():
        return _("Write the stage's number and its new name: /settings stage 2 Talking")
    if not 1 <= int(number) <= len(stages):
        return _("There is no stage {number}: pick one from 1 to {count}.").format(
            number=number, count=len(stages)
        )
    stage = stages[int(number) - 1]
    try:
        renamed = await pipelines.do_update_stage(
            actor, summary.pipeline.id, stage.id, name=name.strip()
        )
    except Conflict:
        return _("Another stage is already called “{name}”.").format(name=name.strip()[:100])
    except ValidationFailed:
        return _("A stage name has 1 to 100 characters.")
    return _("Stage {number} is now “{name}”.").format(number=number, name=renamed.name)


async def _change(actor: Actor, key: str, value: str) -> str:
    """Change one workspace default; the answer to the operator."""
    if key == "stage":
        return await _rename_stage(actor, value)
    if not value:
        return _settings_usage()
    if key == "region":
        try:
            tenant = await tenants.do_update_tenant(actor, default_region=value)
        except ValidationFailed:
            return _(
                "“{code}” is not a country code I know: use two letters, like DE or RU."
            ).format(code=value[:8])
        return _(
            "Phone region set: {region}. Numbers written without + are read as numbers of "
            "this country."
        ).format(region=tenant.default_region)
    try:
        tenant = await tenants.do_update_tenant(actor, default_currency=value)
    except ValidationFailed:
        return _("“{code}” is not a currency code: use three letters, like EUR or RUB.").format(
            code=value[:8]
        )
    return _("Currency set: {currency}. New deals are in it unless you name another.").format(
        currency=tenant.default_currency
    )


async def settings(message: Message, command: CommandObject, user: User, actor: Actor) -> None:
    """Show the workspace's settings, or change one of them (an actor implies a user)."""
    key, _sep, value = (command.args or "").strip().partition(" ")
    key, value = key.lower(), value.strip()
    if not key:
        await message.answer(await _overview(actor, user))
        return
    if key in ("timezone", "tz"):
        await _timezone(message, value, user)
        return
    if key not in ("region", "currency", "stage"):
        await message.answer(_settings_usage())
        return
    await message.answer(await _change(actor, key, value))


def settings_refusal(exc: ServiceError, actor: Actor | None) -> str:
    """Why a workspace setting was not changed."""
    if isinstance(exc, PermissionDenied):
        return _("Only owners and admins can change the workspace settings.")
    return _("That did not work: {reason}").format(reason=exc.detail)


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = feature_router("settings", settings_refusal, chats=PRIVATE_CHATS)
    router.message.register(timezone, Command("timezone"))
    router.message.register(settings, Command("settings"), flags=CURRENT_ACTOR)
    return router
