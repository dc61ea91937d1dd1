"""The Title, Value and Note buttons of a deal card and their short dialogues (FSM).

The services decide whether the operator may change or annotate the deal before the question
is asked; the answer re-renders the card the dialogue started from. A bad value is explained
and asked for again; any other refusal ends the dialogue, as does ``/cancel``.
"""

from __future__ import annotations

import html
from typing import Any

from aiogram import Bot, F, Router
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _

from bot.callbacks import DealEdit, DealEditAct
from bot.handling import ACTOR_FLAG, DIALOGUE_CHATS, REFUSAL_FLAG, NeedsActor, feature_router
from bot.long_messages import not_modified
from bot.routers.dialogue import answers_the_dialogue
from bot.routers.pipeline import deal_cards as views
from bot.routers.pipeline.deal_amounts import AmountError, parse_amount
from bot.routers.pipeline.deal_cards import amount_error, deal_refusal, validation_text
from bot.routers.pipeline.deals import DEAL_ACTOR, MAX_TITLE, actor_in, send_card
from crm.errors import ServiceError, ValidationFailed
from crm.services.access import Actor
from crm.services.contacts import notes
from crm.services.pipeline import deal_cards, deals


class DealDialog(StatesGroup):
    """The short dialogues of a deal card; data: deal_id, tenant_id, card chat and message."""

    title = State()
    value = State()
    note = State()


async def _dialogue_actor(data: dict[str, Any]) -> Actor | None:
    """The operator in the workspace of the deal the dialogue is about."""
    state: FSMContext = data["state"]
    stored = await state.get_data()
    if "deal_id" not in stored:
        return None
    return await actor_in(data.get("user"), stored.get("tenant_id"))


# ---- dialogues: title, value, note -------------------------------------------------------------


async def ask_for_title(
    query: CallbackQuery, callback_data: DealEdit, actor: Actor, state: FSMContext, bot: Bot
) -> None:
    """Ask for a new title, once the services say the operator may change the deal."""
    deal = await deals.access_deal_to_change(actor, callback_data.id)
    prompt = _("Send the new title for <b>{title}</b>, or /cancel.").format(
        title=html.escape(deal.title)
    )
    await _start_dialogue(query, bot, state, DealDialog.title, actor, deal.id, prompt)


async def ask_for_value(
    query: CallbackQuery, callback_data: DealEdit, actor: Actor, state: FSMContext, bot: Bot
) -> None:
    """Ask for a new value (and maybe currency), once the operator may change the deal."""
    deal = await deals.access_deal_to_change(actor, callback_data.id)
    prompt = _(
        "Send the new value for <b>{title}</b> (now {value}), like 1500, 1 500,50 or "
        "1500.5. Add a currency code to change the currency: 2000 EUR. Or /cancel."
    ).format(title=html.escape(deal.title), value=views.money(deal.value, deal.currency))
    await _start_dialogue(query, bot, state, DealDialog.value, actor, deal.id, prompt)


async def ask_for_note(
    query: CallbackQuery, callback_data: DealEdit, actor: Actor, state: FSMContext, bot: Bot
) -> None:
    """Ask for a note, once the services say the operator may annotate the deal."""
    deal = await deals.access_deal_to_annotate(actor, callback_data.id)
    prompt = _("Send the note for <b>{title}</b>, or /cancel.").format(
        title=html.escape(deal.title)
    )
    await _start_dialogue(query, bot, state, DealDialog.note, actor, deal.id, prompt)


async def _start_dialogue(
    query: CallbackQuery,
    bot: Bot,
    state: FSMContext,
    form: State,
    actor: Actor,
    deal_id: int,
    prompt: str,
) -> None:
    """Enter the dialogue ``form`` about a deal, remembering its card, and ask its question."""
    await state.set_state(form)
    card = query.message if isinstance(query.message, Message) else None
    await state.set_data(
        {
            "deal_id": deal_id,
            "tenant_id": actor.tenant_id,
            "card_chat_id": card.chat.id if card is not None else None,
            "card_message_id": card.message_id if card is not None else None,
        }
    )
    chat_id = query.message.chat.id if query.message is not None else query.from_user.id
    sent = await bot.send_message(chat_id, prompt, parse_mode=ParseMode.HTML)
    await state.update_data(prompt_id=sent.message_id)


async def _refresh_card(bot: Bot, actor: Actor, data: dict[str, Any], chat_id: int) -> None:
    """Re-render the card the dialogue started from (a new card when it cannot be edited)."""
    deal_id = int(data["deal_id"])
    card = await deal_cards.deal_card(actor, deal_id)
    if data.get("card_chat_id") is not None and data.get("card_message_id") is not None:
        try:
            await bot.edit_message_text(
                views.card_text(card),
                chat_id=int(data["card_chat_id"]),
                message_id=int(data["card_message_id"]),
                parse_mode=ParseMode.HTML,
                reply_markup=views.card_keyboard(card),
            )
            return
        except TelegramBadRequest as exc:
            if not_modified(exc):
                return
    await send_card(bot, chat_id, actor, deal_id)


async def _finish(
    message: Message, state: FSMContext, bot: Bot, actor: Actor, data: dict[str, Any], done: str
) -> None:
    await state.clear()
    await _refresh_card(bot, actor, data, message.chat.id)
    await message.answer(done)


async def _refused(message: Message, exc: ServiceError, data: dict[str, Any]) -> None:
    """A validation error keeps the dialogue open; any other refusal ends it."""
    state: FSMContext = data["state"]
    if isinstance(exc, ValidationFailed):
        await message.answer(
            validation_text(exc) + "\n" + _("Send it again, or /cancel."),
            parse_mode=ParseMode.HTML,
        )
        return
    await state.clear()
    await message.answer(deal_refusal(exc, data.get("actor")))


async def receive_title(message: Message, state: FSMContext, actor: Actor, bot: Bot) -> None:
    """The new title of the deal."""
    data: dict[str, Any] = await state.get_data()
    title = (message.text or "").strip()
    if len(title) > MAX_TITLE:
        await message.answer(
            _("Title: at most {limit} characters, this one has {n}.").format(
                limit=MAX_TITLE, n=len(title)
            )
            + "\n"
            + _("Send it again, or /cancel.")
        )
        return
    await deals.do_update_deal(actor, int(data["deal_id"]), title=title)
    await _finish(message, state, bot, actor, data, _("Title saved ✓"))


async def receive_value(message: Message, state: FSMContext, actor: Actor, bot: Bot) -> None:
    """The new value (and maybe currency); a bad one is explained and the dialogue stays."""
    data: dict[str, Any] = await state.get_data()
    text = message.text or ""
    try:
        amount = parse_amount(text, views.current_locale())
    except AmountError as exc:
        await message.answer(
            amount_error(exc, text) + "\n" + _("Send it again, or /cancel."),
            parse_mode=ParseMode.HTML,
        )
        return
    if amount.currency is None:
        await deals.do_update_deal(actor, int(data["deal_id"]), value=amount.value)
    else:
        await deals.do_update_deal(
            actor, int(data["deal_id"]), value=amount.value, currency=amount.currency
        )
    await _finish(message, state, bot, actor, data, _("Value saved ✓"))


async def receive_note(message: Message, state: FSMContext, actor: Actor, bot: Bot) -> None:
    """A note on the deal."""
    data: dict[str, Any] = await state.get_data()
    await notes.do_create_note(actor, message.text or "", deal_id=int(data["deal_id"]))
    await _finish(message, state, bot, actor, data, _("Note added ✓"))


async def not_text(message: Message) -> None:
    """Anything but text during a dialogue."""
    await message.answer(_("Please send text, or /cancel."))


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = feature_router("deal_edits", deal_refusal, chats=DIALOGUE_CHATS)
    dialogue = StateFilter(DealDialog.title, DealDialog.value, DealDialog.note)
    answer = (F.text, ~F.text.startswith("/"), answers_the_dialogue)
    in_dialogue = {
        ACTOR_FLAG: NeedsActor(resolve=_dialogue_actor, ends_dialogue=True),
        REFUSAL_FLAG: _refused,
    }
    for state, receive in (
        (DealDialog.title, receive_title),
        (DealDialog.value, receive_value),
        (DealDialog.note, receive_note),
    ):
        router.message.register(receive, StateFilter(state), *answer, flags=in_dialogue)
    router.message.register(not_text, dialogue, ~F.text)
    for act, ask in (
        (DealEditAct.TITLE, ask_for_title),
        (DealEditAct.VALUE, ask_for_value),
        (DealEditAct.NOTE, ask_for_note),
    ):
        router.callback_query.register(ask, DealEdit.filter(F.act == act), flags=DEAL_ACTOR)
    return router
