"""The command menu, set with setMyCommands in every language of the bot."""

from __future__ import annotations

from aiogram import Bot
from aiogram.types import BotCommand
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import lazy_gettext as __

LANGUAGES = ("en", "ru")

COMMANDS = (
    ("inbox", __("Unread conversations")),
    ("deals", __("Deals by stage")),
    ("ask", __("Ask your history (AI)")),
    ("contacts", __("Find a contact")),
    ("newcontact", __("Add a contact")),
    ("newdeal", __("Add a deal")),
    ("team", __("Members and roles")),
    ("invite", __("Invite a colleague")),
    ("workspace", __("Switch workspace")),
    ("settings", __("Region, currency, time zone, stages")),
    ("timezone", __("Your time zone (daily digest)")),
    ("lang", __("Language")),
    ("cancel", __("Leave the current dialogue")),
    ("start", __("Your workspace")),
    ("help", __("What this bot does")),
)


def commands_in(i18n: I18n, language: str) -> list[BotCommand]:
    """The command list rendered in one language."""
    with i18n.context(), i18n.use_locale(language):
        return [BotCommand(command=name, description=str(text)) for name, text in COMMANDS]


async def set_commands(bot: Bot, i18n: I18n) -> None:
    """Set the menu for each language, English as the default."""
    await bot.set_my_commands(commands_in(i18n, "en"))
    for language in LANGUAGES:
        await bot.set_my_commands(commands_in(i18n, language), language_code=language)
