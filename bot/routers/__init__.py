"""One aiogram Router per feature of the operator bot."""

from __future__ import annotations

from collections.abc import Sequence

from aiogram import Router

from bot.routers import (
    ai,
    contacts,
    conversations,
    deals,
    dialogue,
    fallback,
    help,
    imports,
    inbox,
    lang,
    start,
    team,
)
from bot.routers import settings as settings_router
from bot.routers import topics as topics_router


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
        contacts.build_router(),
        conversations.build_router(),
        imports.build_router(),
        deals.build_router(),
        # Before inbox: the corrected text of a draft is a reply to the Edit prompt.
        ai.build_router(),
        # Group chats (team inbox topics); the inbox router takes private messages only.
        topics_router.build_router(),
        inbox.build_router(),
        *extra,
        # Last: answers what no router above took (an unknown command, a sticker...).
        fallback.build_router(),
    ]
