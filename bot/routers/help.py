"""``/help``: what the operator bot does."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _


async def show_help(message: Message) -> None:
    """List what the bot does."""
    await message.answer(
        _(
            "I bring your leads' messages to Telegram.\n\n"
            "• Every message a lead writes on WhatsApp or Telegram arrives here with buttons: "
            "Reply, Close, Assign to me, Snooze.\n"
            "• Reply to a notification (swipe it or use Reply) to answer the lead.\n\n"
            "/start: your workspace\n"
            "/workspace: switch between workspaces\n"
            "/invite [admin|member|viewer]: invite a colleague\n"
            "/team: members and roles\n"
            "/help: this message"
        )
    )


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = Router(name="help")
    router.message.register(show_help, Command("help"))
    return router
