"""Contacts in the operator bot: ``/contacts``, cards, tags and notes, ``/newcontact``, inline mode.

- ``/contacts <query>`` searches the current workspace (name, phone, email, @username); without a
  query it pages through the most recent contacts. A button opens a contact card.
- A card offers "Add tag" and "Add note": short dialogues (``/cancel`` leaves them).
- ``/newcontact Anna Petrova +4915112345678 anna@example.com`` adds a contact at once (phone,
  email and @username are recognised); ``/newcontact`` alone asks for a name, then a phone or
  email.
- ``@bot query`` in any chat lists contacts of the operator's current workspace.
"""

from __future__ import annotations

import html
import math
import re
from typing import Any

from aiogram import Bot, F, Router
from aiogram.enums import ParseMode
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQuery,
    InlineQueryResultArticle,
    InlineQueryResultsButton,
    InputTextMessageContent,
    Message,
)
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import gettext as _

from bot.callbacks import ContactAct, ContactAction, ContactOpen, ContactsPage, DealOpen
from bot.handling import CURRENT_ACTOR, DIALOGUE_ACTOR, REFUSAL_FLAG, feature_router
from bot.keyboards import pager_row
from bot.long_messages import edit_in_place
from bot.routers.inbox.conversations import local_time
from bot.texts import no_workspace
from crm.errors import NotFound, PermissionDenied, ServiceError
from crm.models import Role, User
from crm.services.access import Actor
from crm.services.contacts import contacts, notes, tags
from crm.services.contacts.contacts import ContactCard, ContactFilters, ContactRecord

PAGE_SIZE = 10
SEARCH_LIMIT = 10
INLINE_LIMIT = 20
INLINE_CACHE_SECONDS = 5
CARD_NOTES = 3
NOTE_CHARS = 300
BUTTON_CHARS = 60
INLINE_START = "contacts"
_PHONE_TOKEN = re.compile(r"^\+?[\d().\-]+$")


class ContactForm(StatesGroup):
    """The dialogues of this module."""

    tag = State()
    note = State()
    name = State()
    identifier = State()


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


def _short(text: str, limit: int = BUTTON_CHARS) -> str:
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
        return _short(f"{name} · {identifier}")
    return _short(name)


def _telegram_of(record: ContactRecord) -> str | None:
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
        _("Telegram: {telegram}").format(telegram=value(_telegram_of(card.record))),
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
                text=_short(f"💼 {deal.title} · {deal.stage.name}"),
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
    """Send the card of the pressed contact."""
    if query.message is None:
        callback_answer.text, callback_answer.show_alert = no_workspace(), True
        return
    try:
        await send_card(bot, query.message.chat.id, actor, user, callback_data.id)
    except NotFound:
        callback_answer.text = _("This contact is not in your current workspace.")
        callback_answer.show_alert = True


# ---- tag and note dialogues ----------------------------------------------------------------


async def _start_dialogue(
    chat_id: int, bot: Bot, state: FSMContext, form: State, contact_id: int, prompt: str
) -> None:
    """Enter the dialogue ``form`` about a contact and ask its question."""
    await state.set_state(form)
    sent = await bot.send_message(chat_id, prompt)
    await state.update_data(contact_id=contact_id, prompt_id=sent.message_id)


async def ask_for_tag(
    query: CallbackQuery,
    callback_data: ContactAction,
    actor: Actor,
    state: FSMContext,
    bot: Bot,
    callback_answer: CallbackAnswer,
) -> None:
    """Ask for tags; only the contact's owner or an admin may tag it."""
    if query.message is None:
        callback_answer.text, callback_answer.show_alert = no_workspace(), True
        return
    record = await contacts.access_contact(actor, callback_data.id)
    actor.require_owner_or_admin_of(record.contact.owner_id)
    prompt = _(
        "Which tag for {name}? Several can be separated by commas. Send /cancel to stop."
    ).format(name=record.contact.name or contact_label(record))
    await _start_dialogue(
        query.message.chat.id, bot, state, ContactForm.tag, record.contact.id, prompt
    )


async def ask_for_note(
    query: CallbackQuery,
    callback_data: ContactAction,
    actor: Actor,
    state: FSMContext,
    bot: Bot,
    callback_answer: CallbackAnswer,
) -> None:
    """Ask for a note; viewers are refused."""
    if query.message is None:
        callback_answer.text, callback_answer.show_alert = no_workspace(), True
        return
    record = await contacts.access_contact(actor, callback_data.id)
    actor.require_write()
    prompt = _("Write the note on {name}. Send /cancel to stop.").format(
        name=record.contact.name or contact_label(record)
    )
    await _start_dialogue(
        query.message.chat.id, bot, state, ContactForm.note, record.contact.id, prompt
    )


async def not_a_reply_elsewhere(message: Message, state: FSMContext) -> bool:
    """A dialogue answer is plain text, or a reply to the dialogue's own prompt.

    A reply to a lead notification goes on to ``inbox.reply_to_lead`` instead.
    """
    replied = message.reply_to_message
    if replied is None:
        return True
    data: dict[str, Any] = await state.get_data()
    return bool(replied.message_id == data.get("prompt_id"))


async def _finish_with_card(
    message: Message, state: FSMContext, actor: Actor, user: User | None, bot: Bot, done: str
) -> None:
    data: dict[str, Any] = await state.get_data()
    await state.clear()
    await message.answer(done)
    await send_card(bot, message.chat.id, actor, user, int(data["contact_id"]))


async def tag_given(
    message: Message, state: FSMContext, actor: Actor, user: User | None, bot: Bot
) -> None:
    """Put the named tags on the contact of the dialogue."""
    data: dict[str, Any] = await state.get_data()
    names = [part.strip() for part in (message.text or "").split(",") if part.strip()]
    added = await tags.do_tag_contact(actor, int(data["contact_id"]), names)
    done = _("Tags of the contact: {tags}").format(tags=", ".join(t.tag.name for t in added))
    await _finish_with_card(message, state, actor, user, bot, done)


async def note_given(
    message: Message, state: FSMContext, actor: Actor, user: User | None, bot: Bot
) -> None:
    """Write the note on the contact of the dialogue."""
    data: dict[str, Any] = await state.get_data()
    await notes.do_create_note(actor, message.text or "", contact_id=int(data["contact_id"]))
    await _finish_with_card(message, state, actor, user, bot, _("Note saved."))


async def _refused_in_dialogue(message: Message, exc: ServiceError, data: dict[str, Any]) -> None:
    """A refusal ends the dialogue; a bad value is asked for again."""
    text = contact_refusal(exc, data.get("actor"))
    if isinstance(exc, PermissionDenied | NotFound):
        await data["state"].clear()
    else:
        text += "\n" + _("Try again, or send /cancel.")
    await message.answer(text)


# ---- /newcontact ---------------------------------------------------------------------------


def parse_new_contact(text: str) -> dict[str, Any]:
    """Name, phone, email and @username from free text: identifiers are recognised, the rest
    is the name. Neighbouring number groups ("+49 151 1234") make one phone number."""
    name: list[str] = []
    values: dict[str, Any] = {}
    phone: list[str] = []

    def flush_phone() -> None:
        if phone and "phone" not in values:
            values["phone"] = " ".join(phone)
        elif phone:
            name.extend(phone)
        phone.clear()

    for token in text.split():
        if _PHONE_TOKEN.match(token) and any(ch.isdigit() for ch in token):
            phone.append(token)
            continue
        flush_phone()
        if token.startswith("@") and len(token) > 1 and "telegram_username" not in values:
            values["telegram_username"] = token
        elif "@" in token and "email" not in values:
            values["email"] = token
        else:
            name.append(token)
    flush_phone()
    if name:
        values["name"] = " ".join(name)
    return values


def identifier_values(text: str) -> dict[str, Any]:
    """What the dialogue's second answer is: an email, a @username, or a phone number."""
    answer = text.strip()
    if answer.startswith("@"):
        return {"telegram_username": answer}
    if "@" in answer:
        return {"email": answer}
    return {"phone": answer}


async def _create(
    message: Message, actor: Actor, user: User | None, bot: Bot, values: dict[str, Any]
) -> bool:
    """Create the contact and show its card; False (with the reason shown) when refused."""
    try:
        record = await contacts.do_create_contact(actor, values)
    except ServiceError as exc:
        await message.answer(contact_refusal(exc, actor))
        return False
    await message.answer(_("Contact added."))
    await send_card(bot, message.chat.id, actor, user, record.contact.id)
    return True


async def new_contact(
    message: Message,
    command: CommandObject,
    actor: Actor,
    user: User | None,
    state: FSMContext,
    bot: Bot,
) -> None:
    """Add a contact from one line, or start the dialogue."""
    args = (command.args or "").strip()
    if args:
        await state.clear()
        await _create(message, actor, user, bot, parse_new_contact(args))
        return
    actor.require_write()
    await state.set_state(ContactForm.name)
    await message.answer(_("Name of the new contact? Send /cancel to stop."))


async def name_given(message: Message, state: FSMContext) -> None:
    """Keep the name and ask for a phone number or an email."""
    name = (message.text or "").strip()
    if not name:
        await message.answer(_("Name of the new contact? Send /cancel to stop."))
        return
    await state.update_data(name=name)
    await state.set_state(ContactForm.identifier)
    await message.answer(
        _("Their phone number or email? Send /skip to add the contact without one.")
    )


async def identifier_given(
    message: Message, state: FSMContext, actor: Actor, user: User | None, bot: Bot
) -> None:
    """Create the contact with the phone or email; a bad one is asked for again."""
    data: dict[str, Any] = await state.get_data()
    values = {"name": data.get("name", ""), **identifier_values(message.text or "")}
    if await _create(message, actor, user, bot, values):
        await state.clear()
    else:
        await message.answer(_("Send another phone number or email, /skip, or /cancel."))


async def skip_identifier(
    message: Message, state: FSMContext, actor: Actor, user: User | None, bot: Bot
) -> None:
    """Create the contact with its name only."""
    data: dict[str, Any] = await state.get_data()
    await state.clear()
    await _create(message, actor, user, bot, {"name": data.get("name", "")})


# ---- inline mode ---------------------------------------------------------------------------


def shared_text(record: ContactRecord) -> str:
    """What a chosen inline result posts in the chat: the contact's name and identifiers."""
    contact = record.contact
    lines = [f"👤 <b>{html.escape(contact.name or contact_label(record))}</b>"]
    if contact.phone:
        lines.append(f"📞 {html.escape(contact.phone)}")
    if contact.email:
        lines.append(f"✉️ {html.escape(contact.email)}")
    if (telegram := _telegram_of(record)) is not None:
        lines.append(f"💬 {html.escape(telegram)}")
    return "\n".join(lines)


def inline_result(record: ContactRecord) -> InlineQueryResultArticle:
    """One contact as an inline result."""
    contact = record.contact
    details = [v for v in (contact.phone, contact.email, _telegram_of(record)) if v]
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
    router = feature_router("contacts", contact_refusal)
    router.message.register(
        skip_identifier,
        Command("skip"),
        StateFilter(ContactForm.identifier),
        flags=DIALOGUE_ACTOR,
    )
    router.message.register(list_contacts, Command("contacts"), flags=CURRENT_ACTOR)
    router.message.register(new_contact, Command("newcontact"), flags=CURRENT_ACTOR)
    answer = (F.text, ~F.text.startswith("/"), not_a_reply_elsewhere)
    in_dialogue = {**DIALOGUE_ACTOR, REFUSAL_FLAG: _refused_in_dialogue}
    router.message.register(tag_given, StateFilter(ContactForm.tag), *answer, flags=in_dialogue)
    router.message.register(note_given, StateFilter(ContactForm.note), *answer, flags=in_dialogue)
    router.message.register(name_given, StateFilter(ContactForm.name), *answer)
    router.message.register(
        identifier_given, StateFilter(ContactForm.identifier), *answer, flags=DIALOGUE_ACTOR
    )
    router.callback_query.register(open_card, ContactOpen.filter(), flags=CURRENT_ACTOR)
    router.callback_query.register(turn_page, ContactsPage.filter(), flags=CURRENT_ACTOR)
    router.callback_query.register(
        ask_for_tag, ContactAction.filter(F.act == ContactAct.TAG), flags=CURRENT_ACTOR
    )
    router.callback_query.register(
        ask_for_note, ContactAction.filter(F.act == ContactAct.NOTE), flags=CURRENT_ACTOR
    )
    router.inline_query.register(inline_contacts)
    return router
