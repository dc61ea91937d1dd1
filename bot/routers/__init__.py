"""One aiogram Router per feature of the operator bot."""

from __future__ import annotations

from collections.abc import Sequence

from aiogram import Router

from bot.routers import dialogue, fallback, help
from bot.routers.accounts import lang, start, team
from bot.routers.accounts import settings as settings_router
from bot.routers.ai import drafts as ai
from bot.routers.contacts import contact_cards, contact_inline, contact_notes, new_contact
from bot.routers.contacts import csv_import as imports
from bot.routers.inbox import conversations
from bot.routers.inbox import lead_notifications as inbox
from bot.routers.inbox import team_inbox as topics_router
from bot.routers.pipeline import deal_edits, deals


def build_routers(extra: Sequence[Router] = ()) -> list[Router]:
    """Fresh feature routers, in the order they are tried; ``extra`` ones go before the last."""
    return [
        start.build_router(),
        help.build_router(),
        # A reply to a notification answers its lead even while a dialogue waits for text.
        inbox.build_reply_router(),
        dialogue.build_router(),
        team.build_router(),
        lang.build_router(),
        settings_router.build_router(),
        contact_cards.build_router(),
        contact_notes.build_router(),
        new_contact.build_router(),
        contact_inline.build_router(),
        conversations.build_router(),
        imports.build_router(),
        deals.build_router(),
        deal_edits.build_router(),
        # Before inbox: the corrected text of a draft is a reply to the Edit prompt.
        ai.build_router(),
        # Group chats (team inbox topics); the inbox router takes private messages only.
        topics_router.build_router(),
        inbox.build_router(),
        *extra,
        # Last: answers what no router above took (an unknown command, a sticker...).
        fallback.build_router(),
    ]
