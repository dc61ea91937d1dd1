"""Deals and the pipeline in Telegram: ``/deals`` (``/pipeline``), deal cards, ``/newdeal``.

- ``/deals`` or ``/pipeline``: the default pipeline with each stage's deal count and value totals;
  a stage button lists its deals (8 a page, ◀️ ▶️), a deal button opens its card. With several
  pipelines, a row of buttons switches between them. List views edit their message in place.
- A deal card (sent as a new message, ``dl:<id>``) has one button per stage of its pipeline, the
  current one ticked: a tap moves the deal (history and event by ``do_move_deal``) and edits the
  card in place. Its Title, Value and Note buttons are ``bot.routers.pipeline.deal_edits``.
- The Deal and Stage buttons of a lead notification open the card of the contact's latest open
  deal, or its stage picker; with no open deal, a button creates one.
- ``/newdeal <title> [value]`` creates a deal owned by the operator and shows its card.

Viewers see everything but a stage button or an edit is refused with an alert; the crm services
decide (PermissionDenied), ``deal_cards.deal_refusal`` only words the refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiogram import Bot, F, Router
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import gettext as _

from bot.callbacks import ConvAct, ConvAction, DealMove, DealNew, DealOpen, DealView, PipelineShow
from bot.handling import ACTOR_FLAG, CURRENT_ACTOR, PRIVATE_CHATS, NeedsActor, feature_router
from bot.long_messages import not_modified
from bot.routers.pipeline import deal_cards as views
from bot.routers.pipeline.deal_amounts import AmountError, split_title_and_amount
from bot.routers.pipeline.deal_cards import amount_error, deal_refusal, validation_text
from crm.errors import ValidationFailed
from crm.models import User
from crm.services.access import Actor
from crm.services.accounts import operators
from crm.services.pipeline import deal_cards, deals, pipelines
from crm.services.pipeline.deal_cards import DealCard

MAX_TITLE = 200


# ---- who acts ----------------------------------------------------------------------------------


async def actor_in(user: User | None, tenant_id: int | None) -> Actor | None:
    """The user acting in the workspace a record belongs to (not necessarily the current one)."""
    if user is None or tenant_id is None:
        return None
    return await operators.actor_for(user, tenant_id)


async def _actor_for_deal(user: User | None, deal_id: int) -> Actor | None:
    return await actor_in(user, await deals.tenant_of_deal(deal_id))


def _gone() -> str:
    return _("This deal or pipeline no longer exists.")


async def _pipeline_actor(data: dict[str, Any]) -> Actor | None:
    tenant_id = await pipelines.tenant_of_pipeline(data["callback_data"].pipeline)
    return await actor_in(data.get("user"), tenant_id)


async def _deal_actor(data: dict[str, Any]) -> Actor | None:
    return await _actor_for_deal(data.get("user"), data["callback_data"].id)


async def _conversation_actor(data: dict[str, Any]) -> Actor | None:
    callback_data = data["callback_data"]
    conversation_id = callback_data.conversation if isinstance(callback_data, DealNew) else None
    return await operators.actor_for_conversation(
        data.get("user"), conversation_id or callback_data.id
    )


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


async def send_card(bot: Bot, chat_id: int, actor: Actor, deal_id: int) -> Message:
    """Send the card of a deal as a new message."""
    card = await deal_cards.deal_card(actor, deal_id)
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
        page = await deal_cards.list_stage_deals(
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
    card = await deal_cards.deal_card(actor, callback_data.id)
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
    card = await deal_cards.deal_card(actor, deal.id)
    if before.stage_id == deal.stage_id:
        callback_answer.text = _("Already in {stage}.").format(stage=deal.stage.name)
    else:
        callback_answer.text = _("Moved to {stage}.").format(stage=deal.stage.name)
    if callback_data.view is DealView.STAGES:
        await _replace(query, bot, views.stages_text(card), views.stages_keyboard(card))
    else:
        await _replace(query, bot, views.card_text(card), views.card_keyboard(card))


# ---- notification buttons ----------------------------------------------------------------------


async def _conversation_card(
    query: CallbackQuery, conversation_id: int, actor: Actor, bot: Bot
) -> tuple[int, DealCard | None]:
    """The chat to answer in and the card of the conversation's latest open deal; with no
    open deal, the offer to create one is sent and the card is None."""
    found = await deal_cards.deal_of_conversation(actor, conversation_id)
    chat_id = query.message.chat.id if query.message is not None else query.from_user.id
    if found.deal is None:
        await bot.send_message(
            chat_id,
            views.no_deal_text(deal_cards.title_for_contact(found.contact)),
            parse_mode=ParseMode.HTML,
            reply_markup=views.no_deal_keyboard(conversation_id),
        )
        return chat_id, None
    return chat_id, await deal_cards.deal_card(actor, found.deal.id)


async def _send_conversation_card(
    query: CallbackQuery,
    conversation_id: int,
    actor: Actor,
    bot: Bot,
    render: Callable[[DealCard], tuple[str, InlineKeyboardMarkup]],
) -> None:
    """Send what ``render`` makes of the conversation's deal card (nothing when it has none)."""
    chat_id, card = await _conversation_card(query, conversation_id, actor, bot)
    if card is not None:
        text, keyboard = render(card)
        await bot.send_message(chat_id, text, parse_mode=ParseMode.HTML, reply_markup=keyboard)


async def conversation_deal(
    query: CallbackQuery, callback_data: ConvAction, actor: Actor, bot: Bot
) -> None:
    """Deal: the card of the contact's latest open deal."""
    await _send_conversation_card(
        query, callback_data.id, actor, bot, lambda c: (views.card_text(c), views.card_keyboard(c))
    )


async def conversation_stages(
    query: CallbackQuery, callback_data: ConvAction, actor: Actor, bot: Bot
) -> None:
    """Stage: the stage picker of the contact's latest open deal."""
    await _send_conversation_card(
        query,
        callback_data.id,
        actor,
        bot,
        lambda c: (views.stages_text(c), views.stages_keyboard(c)),
    )


async def create_for_conversation(
    query: CallbackQuery,
    callback_data: DealNew,
    actor: Actor,
    bot: Bot,
    callback_answer: CallbackAnswer,
) -> None:
    """Create the lead's deal (or find the one created meanwhile) and show its card in place."""
    deal, created = await deal_cards.do_open_deal_for_conversation(
        actor, callback_data.conversation
    )
    card = await deal_cards.deal_card(actor, deal.id)
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
        await message.answer(validation_text(exc), parse_mode=ParseMode.HTML)
        return
    await send_card(bot, message.chat.id, actor, deal.id)


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = feature_router("deals", deal_refusal, chats=PRIVATE_CHATS)
    router.message.register(show_pipeline, Command("deals", "pipeline"), flags=CURRENT_ACTOR)
    router.message.register(new_deal, Command("newdeal"), flags=CURRENT_ACTOR)
    callbacks = router.callback_query
    callbacks.register(browse_pipeline, PipelineShow.filter(), flags=PIPELINE_ACTOR)
    callbacks.register(open_deal, DealOpen.filter(), flags=DEAL_ACTOR)
    callbacks.register(move_deal, DealMove.filter(), flags=DEAL_ACTOR)
    callbacks.register(create_for_conversation, DealNew.filter(), flags=CONVERSATION_ACTOR)
    callbacks.register(
        conversation_deal, ConvAction.filter(F.act == ConvAct.DEAL), flags=CONVERSATION_ACTOR
    )
    callbacks.register(
        conversation_stages, ConvAction.filter(F.act == ConvAct.STAGE), flags=CONVERSATION_ACTOR
    )
    return router
