"""Lead notifications in Telegram: reply to answer the lead; Close, Assign to me, Snooze."""

from __future__ import annotations

import datetime as dt

from aiogram import F, Router
from aiogram.types import CallbackQuery, ForceReply, Message
from aiogram.utils.i18n import gettext as _

from bot.callbacks import ConvAct, ConvAction
from bot.keyboards import notification_keyboard
from bot.texts import no_workspace, refusal
from crm.models import ConversationStatus, User
from crm.services import conversations, operators
from crm.services.access import Actor
from crm.services.errors import ServiceError
from crm.services.outbound import Outgoing, do_send_message

SNOOZE = dt.timedelta(hours=1)


async def reply_to_lead(message: Message, user: User | None) -> None:
    """A Telegram reply to a notification goes to the lead of its conversation."""
    replied = message.reply_to_message
    if user is None or replied is None or message.text is None:
        return
    notification = await operators.conversation_for_reply(message.chat.id, replied.message_id)
    if notification is None or notification.user_id != user.id:
        await message.reply(_("Reply to a lead notification to answer the lead."))
        return
    actor = await operators.actor_for(user, notification.tenant_id)
    if actor is None:
        await message.reply(_("You are no longer a member of that workspace."))
        return
    try:
        await do_send_message(
            actor,
            notification.conversation_id,
            Outgoing(
                text=message.text, idempotency_key=f"tg:{message.chat.id}:{message.message_id}"
            ),
        )
    except ServiceError as exc:
        await message.reply(refusal(exc, actor))
        return
    await message.reply(_("Sent ✓"))


async def _actor_for_conversation(user: User | None, conversation_id: int) -> Actor | None:
    """The user acting in the workspace of a conversation they were notified of."""
    if user is None:
        return None
    tenant_id = await operators.tenant_of_conversation(conversation_id)
    if tenant_id is None:
        return None
    return await operators.actor_for(user, tenant_id)


async def ask_for_reply(query: CallbackQuery, callback_data: ConvAction, user: User | None) -> None:
    """Ask the operator to write the answer as a reply (ForceReply)."""
    actor = await _actor_for_conversation(user, callback_data.id)
    if actor is None or user is None or query.message is None:
        await query.answer(no_workspace(), show_alert=True)
        return
    await query.answer()
    prompt = await query.bot.send_message(  # type: ignore[union-attr]
        chat_id=query.message.chat.id,
        text=_("Write your answer as a reply to this message."),
        reply_markup=ForceReply(input_field_placeholder=_("Your answer to the lead")),
    )
    await operators.record_notification(
        user=user,
        chat_id=prompt.chat.id,
        telegram_message_id=prompt.message_id,
        conversation=await conversations.access_conversation(actor, callback_data.id),
        message_id=None,
    )


async def act_on_conversation(
    query: CallbackQuery, callback_data: ConvAction, user: User | None
) -> None:
    """Close, take, or snooze the conversation of a notification."""
    actor = await _actor_for_conversation(user, callback_data.id)
    if actor is None:
        await query.answer(no_workspace(), show_alert=True)
        return
    try:
        if callback_data.act is ConvAct.CLOSE:
            await conversations.do_set_status(actor, callback_data.id, ConversationStatus.CLOSED)
            done = _("Conversation closed.")
        elif callback_data.act is ConvAct.ASSIGN:
            await conversations.do_assign(actor, callback_data.id, actor.user_id)
            done = _("Assigned to you.")
        else:
            until = dt.datetime.now(dt.UTC) + SNOOZE
            await conversations.do_snooze(actor, callback_data.id, until)
            done = _("Snoozed for 1 hour.")
    except ServiceError as exc:
        await query.answer(refusal(exc, actor), show_alert=True)
        return
    await query.answer(done)
    if callback_data.act is ConvAct.CLOSE and isinstance(query.message, Message):
        await query.message.edit_reply_markup(
            reply_markup=notification_keyboard(callback_data.id, closed=True)
        )


async def plain_text(message: Message) -> None:
    """Text that answers no notification: explain how replying works."""
    await message.answer(_("To answer a lead, reply to their notification."))


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = Router(name="inbox")
    router.message.register(reply_to_lead, F.reply_to_message, F.text)
    router.callback_query.register(ask_for_reply, ConvAction.filter(F.act == ConvAct.REPLY))
    router.callback_query.register(
        act_on_conversation,
        ConvAction.filter(F.act.in_({ConvAct.CLOSE, ConvAct.ASSIGN, ConvAct.SNOOZE})),
    )
    router.message.register(plain_text, F.text, ~F.text.startswith("/"))
    return router
