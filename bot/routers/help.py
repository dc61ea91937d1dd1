"""``/help``: what the operator bot does."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.handling import PRIVATE_CHATS, feature_router


async def show_help(message: Message) -> None:
    """List what the bot does."""
    await message.answer(
        _(
            "I bring your leads' messages to Telegram and run the CRM from here.\n\n"
            "• Every message a lead writes on WhatsApp or Telegram arrives with buttons: Reply, "
            "Deal, Stage, Assign to me, Snooze, Close.\n"
            "• Reply to a notification (swipe it) with text, a photo, a document or a voice "
            "message to answer the lead; ticks show when it is delivered and read.\n"
            "• Send a .csv file to import contacts.\n"
            "• Type @ and my name in any chat to find a contact.\n\n"
            "/inbox: unread conversations\n"
            "/deals or /pipeline: deals by stage; move them with one tap\n"
            "/contacts [query]: find contacts\n"
            "/newcontact, /newdeal: quick add\n"
            "/team: members and roles; /invite [admin|member|viewer]: invite a colleague\n"
            "/teaminbox (in a forum group): one topic per lead for the whole team\n"
            "/workspace: switch between workspaces\n"
            "/ask [question]: answers from your own conversations and notes\n"
            "/settings: phone region, currency, time zone, stage names\n"
            "/timezone: your time zone for the 9:00 daily digest\n"
            "/lang: language; /cancel: leave a dialogue\n"
            "/help: this message"
        )
    )


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = feature_router("help", chats=PRIVATE_CHATS)
    router.message.register(show_help, Command("help"))
    return router
