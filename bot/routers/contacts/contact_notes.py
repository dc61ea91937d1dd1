"""Tags and notes on a contact: the "Add tag" and "Add note" buttons of a card and their dialogues.

Only the contact's owner or an admin may tag it; viewers may not write notes. ``/cancel`` leaves
a dialogue; a refusal ends it, a bad value is asked for again.
"""

from __future__ import annotations

from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import gettext as _

from bot.callbacks import ContactAct, ContactAction
from bot.handling import CURRENT_ACTOR, DIALOGUE_ACTOR, PRIVATE_CHATS, REFUSAL_FLAG, feature_router
from bot.routers.contacts.contact_cards import contact_label, contact_refusal, send_card
from bot.routers.dialogue import answers_the_dialogue
from bot.texts import no_workspace
from crm.errors import NotFound, PermissionDenied, ServiceError
from crm.models import User
from crm.services.access import Actor
from crm.services.contacts import contacts, notes, tags


class ContactForm(StatesGroup):
    """The dialogues of the card's buttons."""

    tag = State()
    note = State()


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


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = feature_router("contact_notes", contact_refusal, chats=PRIVATE_CHATS)
    answer = (F.text, ~F.text.startswith("/"), answers_the_dialogue)
    in_dialogue = {**DIALOGUE_ACTOR, REFUSAL_FLAG: _refused_in_dialogue}
    router.message.register(tag_given, StateFilter(ContactForm.tag), *answer, flags=in_dialogue)
    router.message.register(note_given, StateFilter(ContactForm.note), *answer, flags=in_dialogue)
    router.callback_query.register(
        ask_for_tag, ContactAction.filter(F.act == ContactAct.TAG), flags=CURRENT_ACTOR
    )
    router.callback_query.register(
        ask_for_note, ContactAction.filter(F.act == ContactAct.NOTE), flags=CURRENT_ACTOR
    )
    return router
