"""The last router: a private message no other router took gets a pointer to ``/help``.

It is included after every feature router, so replies to notifications, dialogue answers and
the team inbox topics (group chats) are all handled before it; it only answers in private
chats, where a message left unanswered would look like a bot that is down.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.handling import PRIVATE_CHATS


def _command_of(text: str) -> str:
    """``/foo@bot args`` -> ``/foo``."""
    return text.split(maxsplit=1)[0].split("@", 1)[0]


async def unknown_command(message: Message) -> None:
    """A /command the bot does not know."""
    command = _command_of(message.text or "")[:64]
    await message.answer(
        _("I do not know the command {command}. Send /help to see what I can do.").format(
            command=command
        )
    )


async def unhandled(message: Message) -> None:
    """Anything else nothing answered: say what the bot can do with it."""
    await message.answer(
        _(
            "I cannot do anything with this message. To answer a lead, reply to their "
            "notification; send /help to see what I can do."
        )
    )


def build_router() -> Router:
    """A fresh fallback router; it must be included last (one per Dispatcher)."""
    router = Router(name="fallback")
    router.message.filter(F.chat.type.in_(PRIVATE_CHATS))
    router.message.register(unknown_command, F.text.startswith("/"))
    router.message.register(unhandled)
    return router
