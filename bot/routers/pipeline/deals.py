"""Deals and the pipeline in Telegram: ``/deals`` (``/pipeline``), deal cards, ``/newdeal``.

- ``/deals`` or ``/pipeline``: the default pipeline with each stage's deal count and value totals;
  a stage button lists its deals (8 a page, ◀️ ▶️), a deal button opens its card. With several
  pipelines, a row of buttons switches between them. List views edit their message in place.
- A deal card (sent as a new message, ``dl:<id>``) has one button per stage of its pipeline, the
  current one ticked: a tap moves the deal (history and event by ``do_move_deal``) and edits the
  card in place. Title, Value and Note start short dialogues (FSM); ``/cancel`` leaves them.
- The Deal and Stage buttons of a lead notification open the card of the contact's latest open
  deal, or its stage picker; with no open deal, a button creates one.
- ``/newdeal <title> [value]`` creates a deal owned by the operator and shows its card.

Viewers see everything but a stage button or an edit is refused with an alert; the crm services
decide (PermissionDenied), this module only words the refusal.
"""

from __future__ import annotations

import html
from typing import Any

from aiogram import Bot, F, Router
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import gettext as _

from bot.callbacks import (
    ConvAct,
    ConvAction,
    DealEdit,
    DealEditAct,
    DealMove,
    DealNew,
    DealOpen,
    DealView,
    PipelineShow,
)
from bot.handling import ACTOR_FLAG, CURRENT_ACTOR, REFUSAL_FLAG, NeedsActor, feature_router
from bot.long_messages import not_modified
from bot.routers.pipeline import deal_cards as views
from bot.routers.pipeline.deal_amounts import AmountError, parse_amount, split_title_and_amount
from crm.errors import NotFound, PermissionDenied, ServiceError, ValidationFailed
from crm.models import Role, User
from crm.services.access import Actor
from crm.services.accounts import operators
from crm.services.contacts import notes
from crm.services.pipeline import deal_views, deals, pipelines
from crm.services.pipeline.deal_views import DealCard

MAX_TITLE = 200


class DealDialog(StatesGroup):
    """The short dialogues of a deal card; data: deal_id, tenant_id, card chat and message."""

    title = State()
    value = State()
    note = State()


# ---- wording -------------------------------------------------------------------------------


def deal_refusal(exc: ServiceError, actor: Actor | None) -> str:
    """Why a deal action was refused, in the operator's language."""
    if isinstance(exc, PermissionDenied):
        if actor is None or actor.role is Role.VIEWER:
            return _("Viewers can look at deals but cannot change them.")
        return _("Only the deal's owner or an admin can change this deal.")
    if isinstance(exc, NotFound):
        return _("This deal or pipeline no longer exists.")
    return _("That did not work: {reason}").format(reason=exc.detail)


def amount_error(exc: AmountError, text: str) -> str:
    """A value that could not be read: the field and the reason."""
    reasons = {
        "empty": _("Value: send a number, for example 1500 or 1 500,50."),
        "not_number": _("Value: “{text}” is not a number. Write it like 1500, 1 500,50 or 1500.5."),
        "negative": _("Value: it cannot be negative."),
        "decimals": _("Value: use at most 2 digits after the decimal point."),
        "too_large": _("Value: the number is too large."),
        "currency": _("Value: “{code}” is not a currency code (use EUR, USD, RUB…)."),
    }
    return reasons.get(exc.reason, reasons["not_number"]).format(
        text=html.escape(text[:50]), code=html.escape(exc.detail)
    )


def _validation_text(exc: ValidationFailed) -> str:
    names = {"title": _("Title"), "value": _("Value"), "currency": _("Currency"), "body": _("Note")}
    error = exc.errors[0]
    return _("{field}: {reason}").format(
        field=names.get(error.field, error.field), reason=html.escape(error.reason)
    )


# ---- who acts ----------------------------------------------------------------------------------


async def _actor_in(user: User | None, tenant_id: int | None) -> Actor | None:
    """The user acting in the workspace a record belongs to (not necessarily the current one)."""
    if user is None or tenant_id is None:
        return None
    return await operators.actor_for(user, tenant_id)


async def _actor_for_deal(user: User | None, deal_id: int) -> Actor | None:
    return await _actor_in(user, await deals.tenant_of_deal(deal_id))


def _gone() -> str:
    return _("This deal or pipeline no longer exists.")


async def _pipeline_actor(data: dict[str, Any]) -> Actor | None:
    tenant_id = await pipelines.tenant_of_pipeline(data["callback_data"].pipeline)
    return await _actor_in(data.get("user"), tenant_id)


async def _deal_actor(data: dict[str, Any]) -> Actor | None:
    return await _actor_for_deal(data.get("user"), data["callback_data"].id)


async def _conversation_actor(data: dict[str, Any]) -> Actor | None:
    callback_data = data["callback_data"]
    conversation_id = callback_data.conversation if isinstance(callback_data, DealNew) else None
    return await operators.actor_for_conversation(
        data.get("user"), conversation_id or callback_data.id
    )


async def _dialogue_actor(data: dict[str, Any]) -> Actor | None:
    """The operator in the workspace of the deal the dialogue is about."""
    state: FSMContext = data["state"]
    stored = await state.get_data()
    if "deal_id" not in stored:
        return None
    return await _actor_in(data.get("user"), stored.get("tenant_id"))


PIPELINE_ACTOR = {ACTOR_FLAG: NeedsActor(resolve=_pipeline_actor)}
DEAL_ACTOR = {ACTOR_FLAG: NeedsActor(missing=_gone, resolve=_deal_actor)}
CONVERSATION_ACTOR = {ACTOR_FLAG: NeedsActor(resolve=_conversation_actor)}


# ---- sending -----------------------------------------------------------------------------------


async def _replace(query: CallbackQuery, bot: Bot, text: str, markup: InlineKeyboardMarkup) -> None:
    """Show ``text`` in place of the pressed message (or as a new one when it cannot be edited)."""
    if isinstance(query.message, Message):
        try:
            await query.message.edit_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)
            return
        except TelegramBadRequest as exc:
            if not_modified(exc):
                return
    await bot.send_message(query.from_user.id, text, parse_mode=ParseMode.HTML, reply_markup=markup)


async def _send_card(bot: Bot, chat_id: int, actor: Actor, deal_id: int) -> Message:
    card = await deal_views.deal_card(actor, deal_id)
    return await bot.send_message(
        chat_id,
        views.card_text(card),
        parse_mode=ParseMode.HTML,
        reply_markup=views.card_keyboard(card),
    )


# ---- /deals, /pipeline and the lists -----------------------------------------------------------


async def show_pipeline(message: Message, actor: Actor) -> None:
    """The default pipeline: stages with counts and totals, a button per stage."""
    summary = await pipelines.pipeline_summary(actor)
    await message.answer(
        views.pipeline_text(summary),
        parse_mode=ParseMode.HTML,
        reply_markup=views.pipeline_keyboard(summary),
    )


async def browse_pipeline(
    query: CallbackQuery, callback_data: PipelineShow, actor: Actor, bot: Bot
) -> None:
    """A pipeline's stages, or a page of one stage's deals, in place of the pressed message."""
    if callback_data.stage:
        page = await deal_views.list_stage_deals(
            actor, callback_data.stage, page=callback_data.page
        )
        text, markup = views.stage_deals_text(page), views.stage_deals_keyboard(page)
    else:
        summary = await pipelines.pipeline_summary(actor, callback_data.pipeline)
        text, markup = views.pipeline_text(summary), views.pipeline_keyboard(summary)
    await _replace(query, bot, text, markup)


# ---- the card ----------------------------------------------------------------------------------


async def open_deal(query: CallbackQuery, callback_data: DealOpen, actor: Actor, bot: Bot) -> None:
    """Send the card of a deal."""
    card = await deal_views.deal_card(actor, callback_data.id)
    chat_id = query.message.chat.id if query.message is not None else query.from_user.id
    await bot.send_message(
        chat_id,
        views.card_text(card),
        parse_mode=ParseMode.HTML,
        reply_markup=views.card_keyboard(card),
    )


async def move_deal(
    query: CallbackQuery,
    callback_data: DealMove,
    actor: Actor,
    bot: Bot,
    callback_answer: CallbackAnswer,
) -> None:
    """Move the deal to the pressed stage and re-render the pressed message."""
    before = await deals.access_deal(actor, callback_data.id)
    deal = await deals.do_move_deal(actor, callback_data.id, callback_data.stage)
    card = await deal_views.deal_card(actor, deal.id)
    if before.stage_id == deal.stage_id:
        callback_answer.text = _("Already in {stage}.").format(stage=deal.stage.name)
    else:
        callback_answer.text = _("Moved to {stage}.").format(stage=deal.stage.name)
    if callback_data.view is DealView.STAGES:
        await _replace(query, bot, views.stages_text(card), views.stages_keyboard(card))
    else:
        await _replace(query, bot, views.card_text(card), views.card_keyboard(card))


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


async def answers_the_dialogue(message: Message, state: FSMContext) -> bool:
    """Plain text, or a reply to the dialogue's prompt: a reply to a lead notification is not
    an answer and goes on to ``inbox.reply_to_lead``."""
    replied = message.reply_to_message
    if replied is None:
        return True
    data: dict[str, Any] = await state.get_data()
    return bool(replied.message_id == data.get("prompt_id"))


async def _refresh_card(bot: Bot, actor: Actor, data: dict[str, Any], chat_id: int) -> None:
    """Re-render the card the dialogue started from (a new card when it cannot be edited)."""
    deal_id = int(data["deal_id"])
    card = await deal_views.deal_card(actor, deal_id)
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
    await _send_card(bot, chat_id, actor, deal_id)


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
            _validation_text(exc) + "\n" + _("Send it again, or /cancel."),
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


# ---- notification buttons ----------------------------------------------------------------------


async def _conversation_card(
    query: CallbackQuery, conversation_id: int, actor: Actor, bot: Bot
) -> tuple[int, DealCard | None]:
    """The chat to answer in and the card of the conversation's latest open deal; with no
    open deal, the offer to create one is sent and the card is None."""
    found = await deal_views.deal_of_conversation(actor, conversation_id)
    chat_id = query.message.chat.id if query.message is not None else query.from_user.id
    if found.deal is None:
        await bot.send_message(
            chat_id,
            views.no_deal_text(deal_views.title_for_contact(found.contact)),
            parse_mode=ParseMode.HTML,
            reply_markup=views.no_deal_keyboard(conversation_id),
        )
        return chat_id, None
    return chat_id, await deal_views.deal_card(actor, found.deal.id)


async def conversation_deal(
    query: CallbackQuery, callback_data: ConvAction, actor: Actor, bot: Bot
) -> None:
    """Deal: the card of the contact's latest open deal."""
    chat_id, card = await _conversation_card(query, callback_data.id, actor, bot)
    if card is not None:
        await bot.send_message(
            chat_id,
            views.card_text(card),
            parse_mode=ParseMode.HTML,
            reply_markup=views.card_keyboard(card),
        )


async def conversation_stages(
    query: CallbackQuery, callback_data: ConvAction, actor: Actor, bot: Bot
) -> None:
    """Stage: the stage picker of the contact's latest open deal."""
    chat_id, card = await _conversation_card(query, callback_data.id, actor, bot)
    if card is not None:
        await bot.send_message(
            chat_id,
            views.stages_text(card),
            parse_mode=ParseMode.HTML,
            reply_markup=views.stages_keyboard(card),
        )


async def create_for_conversation(
    query: CallbackQuery,
    callback_data: DealNew,
    actor: Actor,
    bot: Bot,
    callback_answer: CallbackAnswer,
) -> None:
    """Create the lead's deal (or find the one created meanwhile) and show its card in place."""
    deal, created = await deal_views.do_open_deal_for_conversation(
        actor, callback_data.conversation
    )
    card = await deal_views.deal_card(actor, deal.id)
    callback_answer.text = _("Deal created.") if created else None
    await _replace(query, bot, views.card_text(card), views.card_keyboard(card))


# ---- /newdeal ----------------------------------------------------------------------------------


async def new_deal(message: Message, command: CommandObject, actor: Actor, bot: Bot) -> None:
    """``/newdeal <title> [value]``: the operator's deal in the default pipeline's first stage."""
    usage = _("Usage: /newdeal title [value], for example: /newdeal Website for Acme 1500")
    args = (command.args or "").strip()
    if not args:
        await message.answer(usage)
        return
    try:
        title, amount = split_title_and_amount(args, views.current_locale())
    except AmountError as exc:
        await message.answer(amount_error(exc, args), parse_mode=ParseMode.HTML)
        return
    if len(title) > MAX_TITLE:
        await message.answer(
            _("Title: at most {limit} characters, this one has {n}.").format(
                limit=MAX_TITLE, n=len(title)
            )
        )
        return
    try:
        if amount is None:
            deal = await deals.do_create_deal(actor, title)
        else:
            deal = await deals.do_create_deal(
                actor, title, value=amount.value, currency=amount.currency
            )
    except ValidationFailed as exc:
        await message.answer(_validation_text(exc), parse_mode=ParseMode.HTML)
        return
    await _send_card(bot, message.chat.id, actor, deal.id)


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = feature_router("deals", deal_refusal)
    dialogue = StateFilter(DealDialog.title, DealDialog.value, DealDialog.note)
    router.message.register(show_pipeline, Command("deals", "pipeline"), flags=CURRENT_ACTOR)
    router.message.register(new_deal, Command("newdeal"), flags=CURRENT_ACTOR)
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
    callbacks = router.callback_query
    callbacks.register(browse_pipeline, PipelineShow.filter(), flags=PIPELINE_ACTOR)
    callbacks.register(open_deal, DealOpen.filter(), flags=DEAL_ACTOR)
    callbacks.register(move_deal, DealMove.filter(), flags=DEAL_ACTOR)
    for act, ask in (
        (DealEditAct.TITLE, ask_for_title),
        (DealEditAct.VALUE, ask_for_value),
        (DealEditAct.NOTE, ask_for_note),
    ):
        callbacks.register(ask, DealEdit.filter(F.act == act), flags=DEAL_ACTOR)
    callbacks.register(create_for_conversation, DealNew.filter(), flags=CONVERSATION_ACTOR)
    callbacks.register(
        conversation_deal, ConvAction.filter(F.act == ConvAct.DEAL), flags=CONVERSATION_ACTOR
    )
    callbacks.register(
        conversation_stages, ConvAction.filter(F.act == ConvAct.STAGE), flags=CONVERSATION_ACTOR
    )
    return router
