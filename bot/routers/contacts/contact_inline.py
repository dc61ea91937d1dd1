"""Inline mode: ``@bot query`` in any chat lists contacts of the operator's current workspace.

A chosen result posts the contact's name and identifiers; someone who never started the bot is
offered a button that starts it.
"""

from __future__ import annotations

import html

from aiogram import Router
from aiogram.enums import ParseMode
from aiogram.types import (
    InlineQuery,
    InlineQueryResultArticle,
    InlineQueryResultsButton,
    InputTextMessageContent,
)
from aiogram.utils.i18n import gettext as _

from bot.handling import PRIVATE_CHATS, feature_router
from bot.routers.contacts.contact_cards import contact_label, telegram_of
from crm.services.access import Actor
from crm.services.contacts import contacts
from crm.services.contacts.contacts import ContactFilters, ContactRecord

INLINE_LIMIT = 20
INLINE_CACHE_SECONDS = 5
INLINE_START = "contacts"


def shared_text(record: ContactRecord) -> str:
    """What a chosen inline result posts in the chat: the contact's name and identifiers."""
    contact = record.contact
    lines = [f"👤 <b>{html.escape(contact.name or contact_label(record))}</b>"]
    if contact.phone:
        lines.append(f"📞 {html.escape(contact.phone)}")
    if contact.email:
        lines.append(f"✉️ {html.escape(contact.email)}")
    if (telegram := telegram_of(record)) is not None:
        lines.append(f"💬 {html.escape(telegram)}")
    return "\n".join(lines)


def inline_result(record: ContactRecord) -> InlineQueryResultArticle:
    """One contact as an inline result."""
    contact = record.contact
    details = [v for v in (contact.phone, contact.email, telegram_of(record)) if v]
    if record.tags:
        details.append("🏷 " + ", ".join(record.tags))
    return InlineQueryResultArticle(
        id=f"contact-{contact.id}",
        title=contact.name or contact_label(record),
        description=" · ".join(details) or None,
        input_message_content=InputTextMessageContent(
            message_text=shared_text(record), parse_mode=ParseMode.HTML
        ),
    )


async def inline_contacts(inline_query: InlineQuery, actor: Actor | None) -> None:
    """Contacts of the current workspace matching the query; strangers get a start button."""
    if actor is None:
        await inline_query.answer(
            [],
            cache_time=0,
            is_personal=True,
            button=InlineQueryResultsButton(
                text=_("Start the bot to search your contacts"), start_parameter=INLINE_START
            ),
        )
        return
    query = inline_query.query.strip()
    page = await contacts.list_contacts(actor, ContactFilters(q=query or None), limit=INLINE_LIMIT)
    await inline_query.answer(
        [inline_result(r) for r in page.items],
        cache_time=INLINE_CACHE_SECONDS,
        is_personal=True,
    )


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    # Inline queries come from any chat; the router has no messages of its own.
    router = feature_router("contacts_inline", chats=PRIVATE_CHATS)
    router.inline_query.register(inline_contacts)
    return router
