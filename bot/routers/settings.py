"""``/timezone [zone]``: the operator's time zone, which the daily digest follows.

``/timezone Europe/Berlin`` or ``/timezone +3`` (stored as ``Etc/GMT-3``: the tz database
inverts the sign) sets it; ``/timezone`` alone shows it.
"""

from __future__ import annotations

import datetime as dt

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.texts import no_workspace
from crm.models import User
from crm.services import digest
from crm.services.errors import ValidationFailed


def _usage() -> str:
    return _(
        "Change it with /timezone and a zone name or a UTC offset: "
        "/timezone Europe/Berlin, /timezone +3."
    )


async def timezone(message: Message, command: CommandObject, user: User | None) -> None:
    """Show or set the time zone of the operator."""
    if user is None:
        await message.answer(no_workspace())
        return
    wanted = (command.args or "").strip()
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


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = Router(name="settings")
    router.message.register(timezone, Command("timezone"))
    return router
