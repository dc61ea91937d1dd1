"""The AI in the operator bot: reply drafts with Send / Edit / Regenerate / Reject, and /ask.

A draft is sent only when the operator taps Send (or sends a corrected text after Edit): the
AI never writes to a lead from here on its own. Every decision is recorded on the draft.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from aiogram import Bot, F, Router
from aiogram.enums import ParseMode
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import gettext as _

from bot.callbacks import ConvAct, ConvAction, DraftAct, DraftAction, InboxOpen
from bot.dependencies import BotServices
from bot.handling import (
    ACTOR_FLAG,
    CURRENT_ACTOR,
    DIALOGUE_CHATS,
    PRIVATE_CHATS,
    NeedsActor,
    feature_router,
)
from bot.keyboards import draft_keyboard
from bot.long_messages import edit_in_place, send_long
from bot.texts import draft_decided, no_workspace, refusal, render_draft
from crm.errors import ServiceError
from crm.models import Draft, DraftStatus, User
from crm.services.access import Actor
from crm.services.accounts import operators
from crm.services.ai import drafts
from crm.services.ai import modes as ai_modes

MAX_LINKS = 5

if TYPE_CHECKING:
    from agents.ask import Answer


class DraftDialog(StatesGroup):
    """Waiting for the operator's corrected text of a draft."""

    edit = State()


def _no_ai() -> str:
    return _("The AI is not available in this bot.")


async def _draft_actor(user: User | None, draft_id: int) -> tuple[Actor, Draft] | None:
    """The operator acting on a draft in the draft's own workspace."""
    if user is None:
        return None
    found = await Draft.get_or_none(id=draft_id)
    if found is None:
        return None
    actor = await operators.actor_for(user, found.tenant_id)
    if actor is None:
        return None
    return actor, found


async def _conversation_actor(data: dict[str, Any]) -> Actor | None:
    """The presser in the workspace of the button's conversation."""
    return await operators.actor_for_conversation(data.get("user"), data["callback_data"].id)


async def _button_draft_actor(data: dict[str, Any]) -> Actor | None:
    """The presser in the workspace of the button's draft; the draft goes in ``data`` too."""
    found = await _draft_actor(data.get("user"), data["callback_data"].id)
    if found is None:
        return None
    actor, data["draft"] = found
    return actor


def _draft_elsewhere() -> str:
    return _("This draft is not in your workspaces.")


CONVERSATION_ACTOR = {ACTOR_FLAG: NeedsActor(resolve=_conversation_actor)}
DRAFT_ACTOR = {ACTOR_FLAG: NeedsActor(missing=_draft_elsewhere, resolve=_button_draft_actor)}


def _refuse_alert(callback_answer: CallbackAnswer, text: str) -> None:
    callback_answer.text, callback_answer.show_alert = text, True


async def ask_for_draft(
    query: CallbackQuery,
    callback_data: ConvAction,
    actor: Actor,
    services: BotServices,
    callback_answer: CallbackAnswer,
) -> None:
    """The Draft button of a notification or conversation: propose a reply."""
    if query.message is None:
        _refuse_alert(callback_answer, no_workspace())
        return
    if services.assistant is None:
        _refuse_alert(callback_answer, _no_ai())
        return
    draft = await services.assistant.draft_reply(actor, callback_data.id)
    await query.bot.send_message(  # type: ignore[union-attr]
        chat_id=query.message.chat.id,
        text=render_draft(draft),
        parse_mode=ParseMode.HTML,
        reply_markup=draft_keyboard(draft.id),
    )


async def hand_back(
    query: CallbackQuery, callback_data: ConvAction, actor: Actor, callback_answer: CallbackAnswer
) -> None:
    """The Hand back button of a hand-off alert: the AI may act in the conversation again."""
    if not isinstance(query.message, Message):
        _refuse_alert(callback_answer, no_workspace())
        return
    await ai_modes.do_hand_back(actor, callback_data.id)
    callback_answer.text = _("The AI is back in this conversation.")
    # The alert keeps its conversation buttons; only the hand-back row (the last) goes.
    rows = query.message.reply_markup.inline_keyboard if query.message.reply_markup else []
    kept = [row for row in rows if not any(b.callback_data == query.data for b in row)]
    await edit_in_place(
        query.message,
        (query.message.html_text or "") + "\n\n" + _("🤖 Handed back to the AI."),
        reply_markup=InlineKeyboardMarkup(inline_keyboard=kept) if kept else None,
        parse_mode=ParseMode.HTML,
    )


async def send_draft(
    query: CallbackQuery, actor: Actor, draft: Draft, callback_answer: CallbackAnswer
) -> None:
    """Send: the draft goes to the lead as written."""
    if not isinstance(query.message, Message):
        _refuse_alert(callback_answer, _draft_elsewhere())
        return
    sent = await drafts.do_send_draft(actor, draft.id)
    callback_answer.text = _("Sent ✓")
    await edit_in_place(
        query.message,
        _("✅ Sent to the lead:") + "\n\n" + html.escape(sent.final_text or sent.text),
        parse_mode=ParseMode.HTML,
    )


async def reject_draft(
    query: CallbackQuery, actor: Actor, draft: Draft, callback_answer: CallbackAnswer
) -> None:
    """Reject: the draft is dropped."""
    if not isinstance(query.message, Message):
        _refuse_alert(callback_answer, _draft_elsewhere())
        return
    await drafts.do_reject_draft(actor, draft.id)
    callback_answer.text = _("Draft rejected.")
    await edit_in_place(
        query.message,
        _("🗑 Draft rejected:") + "\n\n" + html.escape(draft.text),
        parse_mode=ParseMode.HTML,
    )


async def regenerate_draft(
    query: CallbackQuery,
    actor: Actor,
    draft: Draft,
    services: BotServices,
    callback_answer: CallbackAnswer,
) -> None:
    """Regenerate: a fresh draft in place of this one."""
    if not isinstance(query.message, Message):
        _refuse_alert(callback_answer, _draft_elsewhere())
        return
    if services.assistant is None:
        _refuse_alert(callback_answer, _no_ai())
        return
    fresh = await services.assistant.regenerate(actor, draft.id)
    await edit_in_place(
        query.message,
        render_draft(fresh),
        parse_mode=ParseMode.HTML,
        reply_markup=draft_keyboard(fresh.id),
    )


async def edit_draft(
    query: CallbackQuery,
    actor: Actor,
    draft: Draft,
    state: FSMContext,
    bot: Bot,
    callback_answer: CallbackAnswer,
) -> None:
    """Edit: ask for the corrected text, as a reply to the prompt."""
    message = query.message
    if not isinstance(message, Message):
        _refuse_alert(callback_answer, _draft_elsewhere())
        return
    # Checked now so a viewer is told at once, not after typing the whole text.
    await drafts.access_conversation_to_draft(actor, draft.conversation_id)
    if draft.status is not DraftStatus.PENDING:
        _refuse_alert(callback_answer, draft_decided(draft.status))
        return
    await state.set_state(DraftDialog.edit)
    prompt = await bot.send_message(
        chat_id=message.chat.id,
        text=_("Send the corrected text as a reply to this message, or /cancel."),
        reply_markup=ForceReply(input_field_placeholder=_("The text the lead gets")),
    )
    await state.set_data(
        {
            "draft_id": draft.id,
            "prompt_id": prompt.message_id,
            "card_chat_id": message.chat.id,
            "card_message_id": message.message_id,
        }
    )


async def receive_edit(message: Message, state: FSMContext, user: User | None, bot: Bot) -> None:
    """The operator's corrected draft: sent to the lead and recorded as an edit."""
    data: dict[str, Any] = await state.get_data()
    replied = message.reply_to_message
    if replied is not None and replied.message_id != data.get("prompt_id"):
        return  # a reply to something else while editing: not the corrected text
    await state.clear()
    found = await _draft_actor(user, int(data.get("draft_id") or 0))
    if found is None or not message.text:
        await message.answer(_("This draft is not in your workspaces."))
        return
    actor, draft = found
    try:
        sent = await drafts.do_send_draft(actor, draft.id, message.text)
    # Not the router's refusal: the actor is found here from the draft (the middleware never
    # saw it, so a viewer would be worded as someone else), and the refusal is a reply.
    except ServiceError as exc:
        await message.reply(refusal(exc, actor))
        return
    await message.reply(_("Sent ✓ (edited)"))
    if data.get("card_chat_id") and data.get("card_message_id"):
        await bot.edit_message_text(
            _("✏️ Sent after editing:") + "\n\n" + html.escape(sent.final_text or ""),
            chat_id=int(data["card_chat_id"]),
            message_id=int(data["card_message_id"]),
            parse_mode=ParseMode.HTML,
        )


async def ask_history(
    message: Message,
    command: CommandObject,
    actor: Actor,
    services: BotServices,
    bot: Bot,
) -> None:
    """``/ask question``: an answer from the workspace's history, with its conversations."""
    question = (command.args or "").strip()
    if not question:
        await message.answer(
            _(
                "Ask about your own conversations, notes and knowledge base: /ask what did we "
                "offer Acme?"
            )
        )
        return
    if services.assistant is None:
        await message.answer(_no_ai())
        return
    answer = await services.assistant.ask(actor, question)
    rows = []
    seen: set[int] = set()
    for cited in answer.citations:
        conversation_id = cited.get("conversation_id")
        if not conversation_id or conversation_id in seen or len(seen) >= MAX_LINKS:
            continue
        seen.add(int(conversation_id))
        lead = cited.get("lead") or _("a lead")
        rows.append(
            [
                InlineKeyboardButton(
                    text="💬 " + lead[:60],
                    callback_data=InboxOpen(id=int(conversation_id)).pack(),
                )
            ]
        )
    markup = InlineKeyboardMarkup(inline_keyboard=rows) if rows else None
    text = html.escape(answer.answer) if answer.source == "model" else offline_answer(answer)
    await send_long(bot, message.chat.id, text, reply_markup=markup, parse_mode=ParseMode.HTML)


def offline_answer(answer: Answer) -> str:
    """The HTML of an answer made of passages (no model), in the operator's language."""
    if not answer.citations:
        return _("Nothing in your history matches this question.")
    lines = [_("From your history:")]
    for i, cited in enumerate(answer.citations, 1):
        line = f"{i}. «{html.escape(str(cited.get('text') or ''))}»"
        if cited.get("lead"):
            line += " — <b>" + html.escape(str(cited["lead"])) + "</b>"
        lines.append(line)
    return "\n".join(lines)


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = feature_router("ai", refusal, chats=DIALOGUE_CHATS)
    # The Edit dialogue of a draft is answered where its button was pressed; /ask is a
    # command of private chats, like every other.
    router.message.register(
        ask_history, Command("ask"), F.chat.type.in_(PRIVATE_CHATS), flags=CURRENT_ACTOR
    )
    router.message.register(receive_edit, DraftDialog.edit, F.text, ~F.text.startswith("/"))
    callbacks = router.callback_query
    callbacks.register(
        ask_for_draft, ConvAction.filter(F.act == ConvAct.DRAFT), flags=CONVERSATION_ACTOR
    )
    callbacks.register(
        hand_back, ConvAction.filter(F.act == ConvAct.HAND_BACK), flags=CONVERSATION_ACTOR
    )
    for act, decide in (
        (DraftAct.SEND, send_draft),
        (DraftAct.REJECT, reject_draft),
        (DraftAct.REGENERATE, regenerate_draft),
        (DraftAct.EDIT, edit_draft),
    ):
        callbacks.register(decide, DraftAction.filter(F.act == act), flags=DRAFT_ACTOR)
    return router
