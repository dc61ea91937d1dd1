"""Lead notifications in Telegram: reply to answer the lead; Close, Assign to me, Snooze.

A reply may be text, or a photo, document, voice message, audio or video (with its caption):
the file is fetched from Telegram, kept in the media store and sent to the lead. The "Sent ✓"
the operator gets back is edited as the message is delivered, read or fails
(``bot.senders.delivery.show_delivery``).
"""

from __future__ import annotations

import datetime as dt
import logging
import mimetypes
from dataclasses import dataclass
from typing import Any

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import CallbackQuery, ForceReply, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import gettext as _

from bot.callbacks import ConvAct, ConvAction
from bot.dependencies import BotServices
from bot.handling import ACTOR_FLAG, GROUP_CHATS, PRIVATE_CHATS, NeedsActor, feature_router
from bot.long_messages import not_modified
from bot.routers.inbox.conversations import conversation_keyboard
from bot.senders.delivery import SHOWN_WHEN_SENT, show_delivery
from bot.texts import no_workspace, refusal
from crm.errors import ServiceError
from crm.messaging import OutboundKind
from crm.models import Conversation, ConversationStatus, OperatorNotification, User
from crm.services.access import Actor
from crm.services.accounts import operators
from crm.services.inbox import conversations, media, operator_notifications
from crm.services.inbox.outbound import Outgoing, do_send_message

logger = logging.getLogger(__name__)

SNOOZE = dt.timedelta(hours=1)
MIB = 1024 * 1024
# The Bot API hands a bot files of at most 20 MB (getFile).
TELEGRAM_DOWNLOAD_LIMIT = 20 * MIB


@dataclass(frozen=True)
class TelegramFile:
    """An attachment of an operator's Telegram message, as the lead will get it."""

    kind: OutboundKind
    file_id: str
    size: int | None
    filename: str
    mime_type: str


def attachment_of(message: Message) -> TelegramFile | None:
    """The photo, document, voice message, audio or video of a message; None for the rest."""
    if message.animation is not None or message.sticker is not None:
        return None  # a GIF also comes as a document; neither is for a lead
    if message.photo:
        photo = message.photo[-1]
        return TelegramFile(
            OutboundKind.IMAGE, photo.file_id, photo.file_size, "photo.jpg", "image/jpeg"
        )
    if message.document is not None:
        doc = message.document
        name = doc.file_name or "document"
        mime = doc.mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        return TelegramFile(OutboundKind.DOCUMENT, doc.file_id, doc.file_size, name, mime)
    if message.voice is not None:
        voice = message.voice
        mime = voice.mime_type or "audio/ogg"
        return TelegramFile(OutboundKind.VOICE, voice.file_id, voice.file_size, "voice.ogg", mime)
    if message.audio is not None:
        audio = message.audio
        name = audio.file_name or "audio.mp3"
        mime = audio.mime_type or mimetypes.guess_type(name)[0] or "audio/mpeg"
        return TelegramFile(OutboundKind.AUDIO, audio.file_id, audio.file_size, name, mime)
    if message.video is not None:
        video = message.video
        name = video.file_name or "video.mp4"
        mime = video.mime_type or mimetypes.guess_type(name)[0] or "video/mp4"
        return TelegramFile(OutboundKind.VIDEO, video.file_id, video.file_size, name, mime)
    return None


def too_large(limit: int) -> str:
    """The refusal of a file over ``limit`` bytes."""
    return _("The file is too large to send to the lead: at most {limit} MB.").format(
        limit=max(1, limit // MIB)
    )


async def _reply_target(
    message: Message, user: User | None
) -> tuple[OperatorNotification, Actor] | None:
    """The notification a reply answers and the operator acting in its workspace.

    Tells the operator why not when there is none.
    """
    replied = message.reply_to_message
    if user is None or replied is None or message.bot is None:
        return None
    notification = await operator_notifications.conversation_for_reply(
        message.bot.id, message.chat.id, replied.message_id
    )
    if notification is None or notification.user_id != user.id:
        await message.reply(_("Reply to a lead notification to answer the lead."))
        return None
    actor = await operators.actor_for(user, notification.tenant_id)
    if actor is None:
        await message.reply(_("You are no longer a member of that workspace."))
        return None
    return notification, actor


async def _send_reply(
    message: Message,
    bot: Bot,
    notification: OperatorNotification,
    actor: Actor,
    outgoing: Outgoing,
) -> None:
    """Queue the reply, confirm it, and keep the confirmation to show its delivery on.

    Refusals here and in ``reply_media_to_lead`` are not left to the router's middleware: the
    actor is found from the notification replied to (``_reply_target``), which the middleware
    never sees, so it would word a viewer's refusal as a stranger's; and the reply router
    (``build_reply_router``) has no refusal middleware.
    """
    try:
        sent = await do_send_message(actor, notification.conversation_id, outgoing)
    except ServiceError as exc:
        await message.reply(refusal(exc, actor))
        return
    confirmation = await message.reply(_("Sent ✓"))
    recorded = await operator_notifications.record_confirmation(
        notification, bot.id, confirmation.chat.id, confirmation.message_id, sent.id
    )
    if recorded is not None:
        # A receipt handled before the confirmation was recorded found nothing to edit.
        await show_delivery(bot, sent.id, shown=SHOWN_WHEN_SENT)


async def reply_to_lead(message: Message, user: User | None, bot: Bot) -> None:
    """A Telegram reply to a notification goes to the lead of its conversation."""
    if message.text is None:
        return
    target = await _reply_target(message, user)
    if target is None:
        return
    notification, actor = target
    key = operator_notifications.telegram_reply_key(message.chat.id, message.message_id)
    await _send_reply(
        message, bot, notification, actor, Outgoing(text=message.text, idempotency_key=key)
    )


async def reply_media_to_lead(
    message: Message, user: User | None, bot: Bot, services: BotServices
) -> None:
    """A photo, document, voice message, audio or video replying to a notification."""
    target = await _reply_target(message, user)
    if target is None:
        return
    notification, actor = target
    attachment = attachment_of(message)
    if attachment is None:
        await message.reply(
            _(
                "This cannot be sent to the lead: send text, a photo, a document, "
                "a voice message, audio or a video."
            )
        )
        return
    store = services.media_store
    if store is None:
        await message.reply(_("Files cannot be sent to leads from this bot."))
        return
    try:
        actor.require_write()  # before fetching anything for a viewer
    except ServiceError as exc:
        await message.reply(refusal(exc, actor))
        return
    channel = await operator_notifications.channel_of_conversation(notification.conversation_id)
    limit = min(media.upload_limit(channel, attachment.kind.value), TELEGRAM_DOWNLOAD_LIMIT)
    if attachment.size is not None and attachment.size > limit:
        await message.reply(too_large(limit))
        return
    try:
        data = await bot.download(attachment.file_id)
    except TelegramAPIError:
        await message.reply(_("The file could not be fetched from Telegram: send it again."))
        return
    content = data.read() if data is not None else b""
    if len(content) > limit:
        await message.reply(too_large(limit))
        return
    try:
        key = await media.do_upload(actor, store, attachment.filename, content)
    except ServiceError as exc:
        await message.reply(refusal(exc, actor))
        return
    outgoing = Outgoing(
        text=message.caption or "",
        kind=attachment.kind,
        media={"key": key, "mime_type": attachment.mime_type, "filename": attachment.filename},
        idempotency_key=operator_notifications.telegram_reply_key(
            message.chat.id, message.message_id
        ),
    )
    await _send_reply(message, bot, notification, actor, outgoing)


async def _conversation_actor(data: dict[str, Any]) -> Actor | None:
    """The presser in the workspace of the button's conversation."""
    return await operators.actor_for_conversation(data.get("user"), data["callback_data"].id)


CONVERSATION_ACTOR = {ACTOR_FLAG: NeedsActor(resolve=_conversation_actor)}


async def ask_for_reply(
    query: CallbackQuery,
    callback_data: ConvAction,
    actor: Actor,
    user: User | None,
    bot: Bot,
    callback_answer: CallbackAnswer,
) -> None:
    """Ask the operator to write the answer as a reply (ForceReply)."""
    if user is None or query.message is None:
        callback_answer.text, callback_answer.show_alert = no_workspace(), True
        return
    prompt = await bot.send_message(
        chat_id=query.message.chat.id,
        text=_("Write your answer as a reply to this message."),
        reply_markup=ForceReply(input_field_placeholder=_("Your answer to the lead")),
    )
    await operator_notifications.record_notification(
        user=user,
        bot_id=bot.id,
        chat_id=prompt.chat.id,
        telegram_message_id=prompt.message_id,
        conversation=await conversations.access_conversation(actor, callback_data.id),
    )


async def _show_state(
    query: CallbackQuery,
    callback_answer: CallbackAnswer,
    conversation: Conversation,
    actor: Actor,
    user: User | None,
    done: str | None,
) -> None:
    """Say what was done (else the state in full) and bring the notification's buttons up to
    date: closed, snoozed until when, who has it."""
    message = query.message
    if not isinstance(message, Message):
        callback_answer.text = done
        return
    private = message.chat.type == ChatType.PRIVATE
    markup, sentence = await conversation_keyboard(conversation, actor, user, private=private)
    callback_answer.text = done or sentence
    try:
        await message.edit_reply_markup(reply_markup=markup)
    except TelegramBadRequest as exc:
        if not not_modified(exc):
            # Deleted meanwhile, or too old to edit: the answer says what happened.
            logger.info("notification buttons not updated: %s", exc.message)


async def close_conversation(
    query: CallbackQuery,
    callback_data: ConvAction,
    actor: Actor,
    user: User | None,
    callback_answer: CallbackAnswer,
) -> None:
    """Close: the conversation is done."""
    conversation = await conversations.do_set_status(
        actor, callback_data.id, ConversationStatus.CLOSED
    )
    await _show_state(query, callback_answer, conversation, actor, user, _("Conversation closed."))


async def reopen_conversation(
    query: CallbackQuery,
    callback_data: ConvAction,
    actor: Actor,
    user: User | None,
    callback_answer: CallbackAnswer,
) -> None:
    """Reopen a closed conversation."""
    conversation = await conversations.do_set_status(
        actor, callback_data.id, ConversationStatus.OPEN
    )
    done = _("Conversation reopened.")
    await _show_state(query, callback_answer, conversation, actor, user, done)


async def take_conversation(
    query: CallbackQuery,
    callback_data: ConvAction,
    actor: Actor,
    user: User | None,
    callback_answer: CallbackAnswer,
) -> None:
    """Assign to me."""
    conversation = await conversations.do_assign(actor, callback_data.id, actor.user_id)
    await _show_state(query, callback_answer, conversation, actor, user, _("Assigned to you."))


async def snooze_conversation(
    query: CallbackQuery,
    callback_data: ConvAction,
    actor: Actor,
    user: User | None,
    callback_answer: CallbackAnswer,
) -> None:
    """Snooze for an hour."""
    until = dt.datetime.now(dt.UTC) + SNOOZE
    conversation = await conversations.do_snooze(actor, callback_data.id, until)
    await _show_state(query, callback_answer, conversation, actor, user, _("Snoozed for 1 hour."))


async def show_state(
    query: CallbackQuery,
    callback_data: ConvAction,
    actor: Actor,
    user: User | None,
    callback_answer: CallbackAnswer,
) -> None:
    """The state row: say it in full, and bring the buttons up to date."""
    conversation = await conversations.access_conversation(actor, callback_data.id)
    await _show_state(query, callback_answer, conversation, actor, user, None)


async def plain_text(message: Message) -> None:
    """Text (or a file) that answers no notification: explain how replying works."""
    await message.answer(_("To answer a lead, reply to their notification."))


async def answers_a_notification(message: Message) -> bool:
    """A reply in the bot's private chat to a message recorded as a notification (not a
    command): it goes to that notification's lead whatever dialogue is open."""
    replied = message.reply_to_message
    if replied is None or message.bot is None:
        return False
    if (message.text or "").startswith("/"):
        return False
    found = await operator_notifications.conversation_for_reply(
        message.bot.id, message.chat.id, replied.message_id
    )
    return found is not None


def build_reply_router() -> Router:
    """Replies to notifications, tried before every dialogue (an open draft Edit, a deal
    title...) so that such a reply never lands in the dialogue or is dropped."""
    router = feature_router("notification_replies", chats=PRIVATE_CHATS)
    router.message.register(reply_to_lead, F.text, answers_a_notification)
    router.message.register(reply_media_to_lead, ~F.text, answers_a_notification)
    return router


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    # Messages in groups are the team inbox's (bot/routers/inbox/team_inbox.py): a topic
    # message is a reply too, and must never be read as an answer to a notification.
    router = feature_router("inbox", refusal, chats=PRIVATE_CHATS, reply=True)
    router.message.register(reply_to_lead, F.reply_to_message, F.text)
    router.message.register(reply_media_to_lead, F.reply_to_message, ~F.text)
    # In the team inbox group the Reply button is the group router's: the answer is written
    # in the lead's topic there.
    router.callback_query.register(
        ask_for_reply,
        ConvAction.filter(F.act == ConvAct.REPLY),
        ~F.message.chat.type.in_(GROUP_CHATS),
        flags=CONVERSATION_ACTOR,
    )
    for act, handler in (
        (ConvAct.CLOSE, close_conversation),
        (ConvAct.REOPEN, reopen_conversation),
        (ConvAct.ASSIGN, take_conversation),
        (ConvAct.SNOOZE, snooze_conversation),
        (ConvAct.STATE, show_state),
    ):
        router.callback_query.register(
            handler, ConvAction.filter(F.act == act), flags=CONVERSATION_ACTOR
        )
    router.message.register(plain_text, F.text, ~F.text.startswith("/"))
    router.message.register(plain_text, F.photo | F.document | F.voice | F.audio | F.video)
    return router
