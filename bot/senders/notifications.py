"""Event handlers that tell operators in Telegram: lead messages in, where their replies stand.

They run on task workers (no incoming update), so each renders in the recipient's language
with ``i18n.use_locale``. Handlers are at-least-once, notifications at most once per user and
lead message: the ``OperatorNotification`` row is written (pending) before the Telegram call
and gets the message id after it, so a redelivered event never sends again. A send that
surely did not happen (flood control, a 5xx, no connection) releases the row and the event is
retried; one Telegram refused is recorded as failed with the reason, and logged.

A lead's photo, document, voice message, audio or video reaches the operator as that media,
uploaded once per lead message: the other recipients get it by Telegram file id (never as a
forward, which can hide who sent it). A text too long for one Telegram message is split, the
buttons on the last part; the ``OperatorNotification`` points at the part with the buttons.

An operator's reply sent from Telegram gets a "Sent ✓" confirmation (an ``OperatorNotification``
whose ``lead_message_id`` is the outgoing message); ``bot.senders.delivery.show_delivery`` edits
it as the message is delivered, read, or fails.

What a notification says and carries is ``bot.senders.notification_content``.
"""

from __future__ import annotations

import functools
import html
import logging
from dataclasses import dataclass
from typing import Any

from aiogram import Bot
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import BufferedInputFile, InlineKeyboardMarkup
from aiogram.types import Message as TelegramMessage
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from tortoise.backends.base.client import BaseDBAsyncClient

from bot.keyboards import notification_keyboard
from bot.long_messages import send_long
from bot.senders.delivery import show_delivery
from bot.senders.notification_content import (
    CAPTION_LIMIT,
    SEND_AS,
    Attachment,
    attachment_of,
    file_id_of,
    render_notification,
    telegram_length,
)
from crm.infrastructure.media_store import LocalMediaStore, stored_bytes
from crm.messaging import DeliveryStatus
from crm.models import (
    Contact,
    Conversation,
    ConversationStatus,
    Event,
    Message,
    OperatorNotification,
    Role,
    User,
)
from crm.services.accounts import operators
from crm.services.ai import intents
from crm.services.events.catalog import MessageReceived, MessageStatusChanged
from crm.services.inbox import lead_recipients, operator_notifications
from crm.tasks.handlers import HandlerRegistry, Order
from telegram_transport.logs import redact

logger = logging.getLogger(__name__)

RECEIVED_HANDLER = "bot.notify_message_received"
STATUS_HANDLER = "bot.notify_message_status"
# A guess below this is noise on a notification (the intent is still stored and reported).
SHOWN_INTENT_CONFIDENCE = 0.6
_TICKED = frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.READ, DeliveryStatus.FAILED})


def never_sent(exc: TelegramNetworkError) -> bool:
    """True when the connection failed before Telegram saw the request (nothing was sent)."""
    # aiogram folds aiohttp's error into the message as "<ErrorType>: <text>".
    return exc.message.startswith(("ClientConnectorError", "ClientConnectorDNSError"))


@dataclass
class Notified:
    """The messages one notification took: ``carrier`` has the buttons."""

    carrier: TelegramMessage
    others: list[TelegramMessage]


class Notifier:
    """Sends the notifications of the operator bot from event handlers."""

    def __init__(self, bot: Bot, i18n: I18n, *, media: LocalMediaStore | None = None) -> None:
        self.bot = bot
        self.i18n = i18n
        self.media = media

    def install(self, registry: HandlerRegistry) -> None:
        """Register the handlers (replacing those of an earlier notifier in this process)."""
        self.uninstall(registry)
        registry.add(
            MessageReceived,
            self.message_received,
            name=RECEIVED_HANDLER,
            atomic=False,
            order=Order.NOTIFY,
        )
        registry.add(
            MessageStatusChanged,
            self.status_changed,
            name=STATUS_HANDLER,
            atomic=False,
            order=Order.NOTIFY,
        )

    @staticmethod
    def uninstall(registry: HandlerRegistry) -> None:
        """Unregister the handlers."""
        registry.remove(RECEIVED_HANDLER)
        registry.remove(STATUS_HANDLER)

    async def message_received(self, event: Event, conn: BaseDBAsyncClient) -> None:
        """Tell the assignee (or every member) of a new lead message, with action buttons."""
        if event.entity_id is None:
            return
        # One query for the message, its conversation and the lead: this runs for every
        # lead message (bench_notify).
        message = (
            await Message.filter(id=event.entity_id).select_related("conversation__contact").first()
        )
        if message is None:
            return
        conversation = message.conversation
        contact = conversation.contact
        lead_name = contact.name or conversation.peer_id
        deal = await lead_recipients.open_deal_of(conversation.tenant_id, conversation.contact_id)
        # Classified by the AI's handler, which runs before this one for the same event.
        classified = await intents.intent_of(message.id)
        members = await lead_recipients.recipients_for(conversation)
        if not members:
            logger.info("lead message %s: no member with a Telegram id to notify", message.id)
            return
        recipients = await lead_recipients.not_yet_notified(members, message.id)
        if not recipients:
            return
        roles = await lead_recipients.roles_in(conversation.tenant_id, [u.id for u in recipients])
        attachment = await self._attachment(message)
        uploaded: dict[str, str] = {}  # the file id of the first upload, for the others
        for user in recipients:
            with self.i18n.context(), self.i18n.use_locale(operators.language_of(user.language)):
                render = functools.partial(
                    render_notification,
                    lead_name=lead_name,
                    channel=conversation.channel.value,
                    deal=deal,
                    kind=message.kind.value,
                    text=message.text,
                    intent=classified.intent
                    if classified is not None and classified.confidence >= SHOWN_INTENT_CONFIDENCE
                    else None,
                )
                text = render()
                caption = render(attached=True) if attachment is not None else None
                keyboard = notification_keyboard(
                    conversation.id,
                    closed=conversation.status is ConversationStatus.CLOSED,
                    role=roles.get(user.id, Role.VIEWER),
                    mine=conversation.assignee_id == user.id,
                    taken=conversation.assignee_id not in (None, user.id),
                )
            assert user.telegram_id is not None
            # Recorded before the Telegram call: a redelivered event (a worker killed after
            # the send, before the record of its message id) finds it and sends nothing.
            intent = await operator_notifications.begin_notification(
                user=user,
                bot_id=self.bot.id,
                chat_id=user.telegram_id,
                conversation=conversation,
                message_id=message.id,
            )
            if intent is None:
                continue
            notified = await self._notify_once(
                intent, user, text, caption, keyboard, attachment, uploaded
            )
            if notified is None:
                continue
            # Every part answers the lead when replied to; the one with the buttons is the
            # notification of the lead message.
            for other in notified.others:
                await operator_notifications.record_notification(
                    user=user,
                    bot_id=self.bot.id,
                    chat_id=other.chat.id,
                    telegram_message_id=other.message_id,
                    conversation=conversation,
                )
            await operator_notifications.record_sent(intent, notified.carrier.message_id)

    async def _notify_once(
        self,
        intent: OperatorNotification,
        user: User,
        text: str,
        caption: str | None,
        keyboard: InlineKeyboardMarkup,
        attachment: Attachment | None,
        uploaded: dict[str, str],
    ) -> Notified | None:
        """Send a notification whose intent is recorded; None when it did not go out.

        Refused for good: recorded as failed with Telegram's reason, and logged. Surely not
        sent (flood control, a server error, no connection): the intent is released and the
        error raised, so the retry of the event sends it. Unknown (a timeout may hide a
        message Telegram took): kept, and never sent again.
        """
        try:
            return await self._notify(user, text, caption, keyboard, attachment, uploaded)
        except (
            TelegramForbiddenError,
            TelegramBadRequest,
            TelegramNotFound,
            TelegramUnauthorizedError,
            TelegramEntityTooLarge,
        ) as exc:
            # The operator never started the bot, blocked it, the chat is gone, or the token
            # was revoked: a retry would fail the same way.
            reason = redact(exc.message)
            logger.warning(
                "operator %s (chat %s) not notified of lead message %s: %s",
                user.id,
                intent.chat_id,
                intent.lead_message_id,
                reason,
            )
            await operator_notifications.record_failed(intent, reason)
            return None
        except (TelegramRetryAfter, TelegramServerError) as exc:
            await self._release(intent, user, exc)
            raise
        except TelegramNetworkError as exc:
            if never_sent(exc):
                await self._release(intent, user, exc)
                raise
            reason = f"delivery state unknown: {redact(exc.message)}"
            logger.warning(
                "notification of lead message %s to operator %s may not have arrived, not "
                "sent again: %s",
                intent.lead_message_id,
                user.id,
                reason,
            )
            await operator_notifications.record_failed(intent, reason)
            return None

    @staticmethod
    async def _release(intent: OperatorNotification, user: User, exc: Exception) -> None:
        logger.warning(
            "notification of lead message %s to operator %s not sent, retried with the event: %s",
            intent.lead_message_id,
            user.id,
            redact(str(exc)),
        )
        await operator_notifications.release_notification(intent)

    async def _attachment(self, message: Message) -> Attachment | None:
        """The lead's media from the store; None when it is not there (a label stands in)."""
        if self.media is None or message.kind not in SEND_AS:
            return None
        media = dict(message.media or {})
        return attachment_of(message.kind.value, media, await stored_bytes(self.media, media))

    async def _notify(
        self,
        user: User,
        text: str,
        caption: str | None,
        keyboard: InlineKeyboardMarkup,
        attachment: Attachment | None,
        uploaded: dict[str, str],
    ) -> Notified:
        """Send one notification (Telegram's errors are the caller's)."""
        assert user.telegram_id is not None
        chat_id = user.telegram_id
        if attachment is not None and caption is not None:
            try:
                return await self._with_media(chat_id, caption, keyboard, attachment, uploaded)
            except (TelegramBadRequest, TelegramEntityTooLarge) as exc:
                # Telegram refused the file itself: the label tells of it instead.
                logger.info("media notification refused, text instead: %s", redact(str(exc)))
        parts = await send_long(
            self.bot, chat_id, text, reply_markup=keyboard, parse_mode=ParseMode.HTML
        )
        return Notified(carrier=parts[-1], others=parts[:-1])

    async def _with_media(
        self,
        chat_id: int,
        caption: str,
        keyboard: InlineKeyboardMarkup,
        attachment: Attachment,
        uploaded: dict[str, str],
    ) -> Notified:
        """The media with the notification as its caption, or, too long, then the text."""
        fits = telegram_length(caption) <= CAPTION_LIMIT
        sent = await self._send_media(
            chat_id,
            attachment,
            uploaded,
            caption=caption if fits else None,
            keyboard=keyboard if fits else None,
        )
        if fits:
            return Notified(carrier=sent, others=[])
        parts = await send_long(
            self.bot, chat_id, caption, reply_markup=keyboard, parse_mode=ParseMode.HTML
        )
        return Notified(carrier=parts[-1], others=[sent, *parts[:-1]])

    async def _send_media(
        self,
        chat_id: int,
        attachment: Attachment,
        uploaded: dict[str, str],
        *,
        caption: str | None,
        keyboard: InlineKeyboardMarkup | None,
    ) -> TelegramMessage:
        """Send the media: uploaded the first time, by its Telegram file id afterwards."""
        send_as = attachment.send_as
        file: BufferedInputFile | str = uploaded.get(send_as) or BufferedInputFile(
            attachment.data, filename=attachment.filename
        )
        common: dict[str, Any] = {
            "chat_id": chat_id,
            "caption": caption,
            "parse_mode": ParseMode.HTML if caption else None,
            "reply_markup": keyboard,
        }
        sent: TelegramMessage
        if send_as == "photo":
            sent = await self.bot.send_photo(photo=file, **common)
        elif send_as == "voice":
            sent = await self.bot.send_voice(voice=file, **common)
        elif send_as == "audio":
            sent = await self.bot.send_audio(audio=file, **common)
        elif send_as == "video":
            sent = await self.bot.send_video(video=file, **common)
        else:
            sent = await self.bot.send_document(document=file, **common)
        if send_as not in uploaded and (file_id := file_id_of(sent, send_as)) is not None:
            uploaded[send_as] = file_id
        return sent

    async def status_changed(self, event: Event, conn: BaseDBAsyncClient) -> None:
        """Show a reply's progress on its confirmation, or tell its author it failed."""
        if event.entity_id is None:
            return
        after: dict[str, Any] = dict(event.after or {})
        try:
            status = DeliveryStatus(str(after.get("status")))
        except ValueError:
            return
        if status not in _TICKED or not after.get("author_user_id"):
            return
        reply = await operator_notifications.reply_delivery(event.entity_id)
        if reply is not None and reply.bot_reply:
            # Sent by replying in Telegram: its confirmation shows the status (when the reply
            # handler records the confirmation after this, it shows the status itself).
            await show_delivery(self.bot, event.entity_id, i18n=self.i18n)
            return
        if status is DeliveryStatus.FAILED:
            await self._tell_failure(after)

    async def _tell_failure(self, after: dict[str, Any]) -> None:
        """Tell the author of a message sent elsewhere (the API, say) that it failed."""
        user = await User.get_or_none(id=int(after["author_user_id"]))
        if user is None or user.telegram_id is None:
            return
        conversation = await Conversation.get_or_none(id=int(after.get("conversation_id") or 0))
        contact = (
            await Contact.get_or_none(id=conversation.contact_id)
            if conversation is not None
            else None
        )
        lead_name = (contact.name if contact is not None else "") or (
            conversation.peer_id if conversation is not None else ""
        )
        reason = str(after.get("error_title") or "")
        with self.i18n.context(), self.i18n.use_locale(operators.language_of(user.language)):
            text = _("⚠️ Your message to {name} was not delivered: {reason}").format(
                name=html.escape(lead_name), reason=html.escape(reason or _("unknown error"))
            )
        try:
            await self.bot.send_message(
                chat_id=user.telegram_id, text=text, parse_mode=ParseMode.HTML
            )
        except (TelegramForbiddenError, TelegramBadRequest) as exc:
            logger.info("operator %s not told of a failure: %s", user.id, redact(str(exc)))
