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
from bot.routers.inbox import conversations, lead_notifications, team_inbox
from bot.routers.pipeline import deal_edits, deals


def build_routers(extra: Sequence[Router] = ()) -> list[Router]:
    """Fresh feature routers, in the order they are tried; ``extra`` ones go before the last.

    Every router declares the chats whose messages it takes (``bot.handling.feature_router``):
    commands and the inbox take private chats' only, the team inbox's group router every
    message of a group. The rules of order left are those of a catch-all after what it must
    not catch: replies to notifications before the dialogues (a reply answers its lead
    whatever dialogue is open); the dialogues (``/cancel``, deal edits, the draft's Edit, which
    a button of the team inbox group may start there too) before the inbox's and the group's
    catch-alls; the fallback last.
    """
    return [
        # Before the dialogues: a reply to a notification answers its lead.
        lead_notifications.build_reply_router(),
        start.build_router(),
        help.build_router(),
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
        ai.build_router(),
        # After the dialogues: every other message of a group (team inbox topics).
        team_inbox.build_router(),
        # After the dialogues: any other text, file or reply in a private chat.
        lead_notifications.build_router(),
        *extra,
        # Last: answers what no router above took (an unknown command, a sticker...).
        fallback.build_router(),
    ]
