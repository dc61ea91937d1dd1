"""``/newcontact``: add a contact from one line, or through a short dialogue.

``/newcontact Anna Petrova +4915112345678 anna@example.com`` adds a contact at once (phone, email
and @username are recognised); ``/newcontact`` alone asks for a name, then a phone or email
(``/skip`` adds it without one, ``/cancel`` leaves).
"""

from __future__ import annotations

import re
from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.handling import CURRENT_ACTOR, DIALOGUE_ACTOR, PRIVATE_CHATS, REFUSAL_FLAG, feature_router
from bot.routers.contacts.contact_cards import contact_refusal, send_card
from bot.routers.dialogue import answers_the_dialogue
from crm.errors import ServiceError
from crm.models import User
from crm.services.access import Actor
from crm.services.contacts import contacts

_PHONE_TOKEN = re.compile(r"^\+?[\d().\-]+$")


class NewContactForm(StatesGroup):
    """The ``/newcontact`` dialogue (its states keep the names they had in ``ContactForm``)."""

    name = State(group_name="ContactForm")
    identifier = State(group_name="ContactForm")


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
) -> None:
    """Create the contact and show its card (a refusal is the router's to show)."""
    record = await contacts.do_create_contact(actor, values)
    await message.answer(_("Contact added."))
    await send_card(bot, message.chat.id, actor, user, record.contact.id)


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
    await state.set_state(NewContactForm.name)
    await message.answer(_("Name of the new contact? Send /cancel to stop."))


async def name_given(message: Message, state: FSMContext) -> None:
    """Keep the name and ask for a phone number or an email."""
    name = (message.text or "").strip()
    if not name:
        await message.answer(_("Name of the new contact? Send /cancel to stop."))
        return
    await state.update_data(name=name)
    await state.set_state(NewContactForm.identifier)
    await message.answer(
        _("Their phone number or email? Send /skip to add the contact without one.")
    )


async def identifier_given(
    message: Message, state: FSMContext, actor: Actor, user: User | None, bot: Bot
) -> None:
    """Create the contact with the phone or email; a bad one is asked for again."""
    data: dict[str, Any] = await state.get_data()
    values = {"name": data.get("name", ""), **identifier_values(message.text or "")}
    await _create(message, actor, user, bot, values)
    await state.clear()


async def _ask_identifier_again(message: Message, exc: ServiceError, data: dict[str, Any]) -> None:
    """A refused phone or email: say why and ask for another (the dialogue stays)."""
    await message.answer(contact_refusal(exc, data.get("actor")))
    await message.answer(_("Send another phone number or email, /skip, or /cancel."))


async def skip_identifier(
    message: Message, state: FSMContext, actor: Actor, user: User | None, bot: Bot
) -> None:
    """Create the contact with its name only."""
    data: dict[str, Any] = await state.get_data()
    await state.clear()
    await _create(message, actor, user, bot, {"name": data.get("name", "")})


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = feature_router("new_contact", contact_refusal, chats=PRIVATE_CHATS)
    router.message.register(
        skip_identifier,
        Command("skip"),
        StateFilter(NewContactForm.identifier),
        flags=DIALOGUE_ACTOR,
    )
    router.message.register(new_contact, Command("newcontact"), flags=CURRENT_ACTOR)
    answer = (F.text, ~F.text.startswith("/"), answers_the_dialogue)
    router.message.register(name_given, StateFilter(NewContactForm.name), *answer)
    router.message.register(
        identifier_given,
        StateFilter(NewContactForm.identifier),
        *answer,
        flags={**DIALOGUE_ACTOR, REFUSAL_FLAG: _ask_identifier_again},
    )
    return router
