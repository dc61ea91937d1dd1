"""Contact cards in the operator bot: ``/contacts``, its pages, and the card a button opens.

- ``/contacts <query>`` searches the current workspace (name, phone, email, @username); without a
  query it pages through the most recent contacts. A button opens a contact card.
- A card shows the contact, its latest notes and deals, and offers "Add tag" and "Add note"
  (``bot.routers.contacts.contact_notes``).
"""

from __future__ import annotations

import html
import math

from aiogram import Bot, Router
from aiogram.enums import ParseMode
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import gettext as _

from bot.callbacks import ContactAct, ContactAction, ContactOpen, ContactsPage, DealOpen
from bot.handling import CURRENT_ACTOR, PRIVATE_CHATS, feature_router
from bot.keyboards import pager_row
from bot.long_messages import edit_in_place
from bot.routers.inbox.conversations import local_time
from bot.texts import no_workspace
from crm.errors import NotFound, PermissionDenied, ServiceError
from crm.models import Role, User
from crm.services.access import Actor
from crm.services.contacts import contacts
from crm.services.contacts.contacts import ContactCard, ContactFilters, ContactRecord

PAGE_SIZE = 10
SEARCH_LIMIT = 10
CARD_NOTES = 3
NOTE_CHARS = 300
BUTTON_CHARS = 60


# ---- wording -------------------------------------------------------------------------------


def field_label(field: str) -> str:
    """The localized name of a contact field a service complained about."""
    labels = {
        "name": _("name"),
        "phone": _("phone"),
        "email": _("email"),
        "telegram_username": _("Telegram username"),
        "tags": _("tag"),
        "body": _("note"),
    }
    return labels.get(field.split(".", 1)[0], field)


def contact_refusal(exc: ServiceError, actor: Actor | None) -> str:
    """Why a contact could not be changed or created: role, ownership, or the field and reason."""
    if isinstance(exc, PermissionDenied):
        if actor is not None and actor.role is Role.VIEWER:
            return _("Viewers cannot add or change contacts.")
        return _("You may not change this contact: it belongs to another member.")
    if isinstance(exc, NotFound):
        return _("This contact is not in your current workspace.")
    reasons = [
        _("{field}: {reason}").format(field=field_label(e.field), reason=e.reason)
        for e in exc.errors
    ] or [exc.detail]
    return _("Not saved. {reasons}").format(reasons="; ".join(reasons))


def short(text: str, limit: int = BUTTON_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def contact_label(record: ContactRecord) -> str:
    """A contact on a button: name and its first identifier."""
    contact = record.contact
    identifier = (
        contact.phone
        or contact.email
        or (f"@{contact.telegram_username}" if contact.telegram_username else "")
    )
    name = contact.name or identifier or _("Contact #{id}").format(id=contact.id)
    if identifier and identifier != name:
        return short(f"{name} · {identifier}")
    return short(name)


def telegram_of(record: ContactRecord) -> str | None:
    """The contact's @username, else its Telegram id."""
    contact = record.contact
    if contact.telegram_username:
        return f"@{contact.telegram_username}"
    if contact.telegram_id:
        return str(contact.telegram_id)
    return None


def render_card(card: ContactCard, user: User | None) -> tuple[str, InlineKeyboardMarkup]:
    """The HTML of a contact card and its buttons; everything people wrote is escaped."""
    contact = card.record.contact
    missing = "—"

    def value(raw: str | None) -> str:
        return html.escape(raw) if raw else missing

    name = contact.name or _("Contact #{id}").format(id=contact.id)
    lines = [
        f"👤 <b>{html.escape(name)}</b>",
        _("Phone: {phone}").format(phone=value(contact.phone)),
        _("Email: {email}").format(email=value(contact.email)),
        _("Telegram: {telegram}").format(telegram=value(telegram_of(card.record))),
        _("Company: {company}").format(company=value(card.company_name)),
        _("Owner: {owner}").format(owner=value(card.owner_name)),
        _("Tags: {tags}").format(tags=value(", ".join(card.record.tags))),
        "",
        _("<b>Latest notes</b>"),
    ]
    if card.notes:
        for note in card.notes:
            body = note.body if len(note.body) <= NOTE_CHARS else note.body[:NOTE_CHARS] + "…"
            lines.append(f"• <i>{local_time(note.created_at, user)}</i> {html.escape(body)}")
    else:
        lines.append(_("No notes yet."))
    lines += ["", _("<b>Deals</b>")]
    if card.deals:
        for deal in card.deals:
            lines.append(
                _("• {title}: {stage}").format(
                    title=html.escape(deal.title), stage=html.escape(deal.stage.name)
                )
            )
    else:
        lines.append(_("No deals yet."))
    rows = [
        [
            InlineKeyboardButton(
                text=short(f"💼 {deal.title} · {deal.stage.name}"),
                callback_data=DealOpen(id=deal.id).pack(),
            )
        ]
        for deal in card.deals
    ]
    rows.append(
        [
            InlineKeyboardButton(
                text=_("🏷 Add tag"),
                callback_data=ContactAction(act=ContactAct.TAG, id=contact.id).pack(),
            ),
            InlineKeyboardButton(
                text=_("📝 Add note"),
                callback_data=ContactAction(act=ContactAct.NOTE, id=contact.id).pack(),
            ),
        ]
    )
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows)


async def send_card(
    bot: Bot, chat_id: int, actor: Actor, user: User | None, contact_id: int
) -> None:
    """Send the card of one contact of the actor's workspace."""
    card = await contacts.access_contact_card(actor, contact_id, notes=CARD_NOTES)
    text, markup = render_card(card, user)
    await bot.send_message(chat_id, text, parse_mode=ParseMode.HTML, reply_markup=markup)


def _contact_rows(records: list[ContactRecord]) -> list[list[InlineKeyboardButton]]:
    return [
        [
            InlineKeyboardButton(
                text=contact_label(r), callback_data=ContactOpen(id=r.contact.id).pack()
            )
        ]
        for r in records
    ]


# ---- /contacts -----------------------------------------------------------------------------


async def _recent(actor: Actor, page: int) -> tuple[str, InlineKeyboardMarkup | None]:
    """One page of the most recent contacts (clamped to the last page)."""
    page = max(1, page)
    records, total = await contacts.recent_contacts(
        actor, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
    )
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if page > pages:
        page = pages
        records, total = await contacts.recent_contacts(
            actor, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
        )
    if total == 0:
        return _("No contacts yet. Add one with /newcontact Name +phone email."), None
    text = _(
        "{n} contact in this workspace, newest first. Search with /contacts name, phone or email.",
        "{n} contacts in this workspace, newest first. Search with /contacts name, phone or email.",
        total,
    ).format(n=total)
    rows = _contact_rows(records)
    if pages > 1:
        rows.append(pager_row(page, pages, lambda p: ContactsPage(page=p).pack()))
    return text, InlineKeyboardMarkup(inline_keyboard=rows)


async def list_contacts(message: Message, command: CommandObject, actor: Actor) -> None:
    """Search the workspace's contacts, or list the most recent ones."""
    query = (command.args or "").strip()
    if not query:
        text, markup = await _recent(actor, 1)
        await message.answer(text, reply_markup=markup)
        return
    page = await contacts.list_contacts(actor, ContactFilters(q=query), limit=SEARCH_LIMIT)
    if not page.items:
        await message.answer(_("No contact matches “{query}”.").format(query=query))
        return
    text = _("Contacts matching “{query}”:").format(query=query)
    if page.next_cursor is not None:
        text += "\n" + _("Only the first {n} are shown: narrow the search to see others.").format(
            n=SEARCH_LIMIT
        )
    await message.answer(
        text, reply_markup=InlineKeyboardMarkup(inline_keyboard=_contact_rows(page.items))
    )


async def turn_page(query: CallbackQuery, callback_data: ContactsPage, actor: Actor) -> None:
    """Show another page of the recent contacts in the same message."""
    text, markup = await _recent(actor, callback_data.page)
    if isinstance(query.message, Message):
        await edit_in_place(query.message, text, reply_markup=markup)


async def open_card(
    query: CallbackQuery,
    callback_data: ContactOpen,
    actor: Actor,
    user: User | None,
    bot: Bot,
    callback_answer: CallbackAnswer,
) -> None:
    """Send the card of the pressed contact (a contact of another workspace is refused)."""
    if query.message is None:
        callback_answer.text, callback_answer.show_alert = no_workspace(), True
        return
    await send_card(bot, query.message.chat.id, actor, user, callback_data.id)


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = feature_router("contacts", contact_refusal, chats=PRIVATE_CHATS)
    router.message.register(list_contacts, Command("contacts"), flags=CURRENT_ACTOR)
    router.callback_query.register(open_card, ContactOpen.filter(), flags=CURRENT_ACTOR)
    router.callback_query.register(turn_page, ContactsPage.filter(), flags=CURRENT_ACTOR)
    return router
