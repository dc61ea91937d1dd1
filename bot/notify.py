"""Event handlers that tell operators in Telegram: lead messages in, delivery failures.

They run on task workers (no incoming update), so each renders in the recipient's language
with ``i18n.use_locale``. Handlers are at-least-once: a lead message already announced to a
user (an ``OperatorNotification`` row) is not announced again.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from aiogram import Bot
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from tortoise.backends.base.client import BaseDBAsyncClient

from bot.keyboards import notification_keyboard
from channels.telegram.logs import redact
from crm.messaging import MessageKind
from crm.models import Contact, Conversation, Event, Message, User
from crm.services import operators
from crm.services.operators import OpenDeal
from crm.tasks.handlers import HandlerRegistry

logger = logging.getLogger(__name__)

RECEIVED_HANDLER = "bot.notify_message_received"
FAILED_HANDLER = "bot.notify_message_failed"
MAX_LEAD_TEXT = 3000
CHANNEL_NAMES = {"whatsapp": "WhatsApp", "telegram": "Telegram"}


def media_label(kind: str) -> str:
    """A bracketed, localized name of what a media message carries."""
    labels = {
        MessageKind.IMAGE: _("[photo]"),
        MessageKind.DOCUMENT: _("[document]"),
        MessageKind.AUDIO: _("[audio]"),
        MessageKind.VOICE: _("[voice message]"),
        MessageKind.VIDEO: _("[video]"),
        MessageKind.STICKER: _("[sticker]"),
        MessageKind.LOCATION: _("[location]"),
        MessageKind.CONTACTS: _("[contact card]"),
    }
    try:
        return labels.get(MessageKind(kind), f"[{kind}]")
    except ValueError:
        return f"[{kind}]"


def render_notification(
    *, lead_name: str, channel: str, deal: OpenDeal | None, kind: str, text: str
) -> str:
    """The HTML of a lead notification; everything the lead controls is escaped."""
    body = text if len(text) <= MAX_LEAD_TEXT else text[:MAX_LEAD_TEXT] + "…"
    if kind != MessageKind.TEXT.value:
        body = f"{media_label(kind)} {body}".strip()
    lines = [
        _("💬 <b>{name}</b> via {channel}").format(
            name=html.escape(lead_name), channel=CHANNEL_NAMES.get(channel, channel)
        )
    ]
    if deal is not None:
        lines.append(
            _("Deal: {title} ({stage})").format(
                title=html.escape(deal.title), stage=html.escape(deal.stage)
            )
        )
    lines.append("")
    lines.append(html.escape(body) or _("(empty message)"))
    return "\n".join(lines)


class Notifier:
    """Sends the notifications of the operator bot from event handlers."""

    def __init__(self, bot: Bot, i18n: I18n) -> None:
        self.bot = bot
        self.i18n = i18n

    def install(self, registry: HandlerRegistry) -> None:
        """Register the handlers (replacing those of an earlier notifier in this process)."""
        self.uninstall(registry)
        registry.add("message.received", self.message_received, name=RECEIVED_HANDLER, atomic=False)
        registry.add(
            "message.status_changed", self.status_changed, name=FAILED_HANDLER, atomic=False
        )

    @staticmethod
    def uninstall(registry: HandlerRegistry) -> None:
        """Unregister the handlers."""
        registry.remove(RECEIVED_HANDLER)
        registry.remove(FAILED_HANDLER)

    async def message_received(self, event: Event, conn: BaseDBAsyncClient) -> None:
        """Tell the assignee (or every member) of a new lead message, with action buttons."""
        if event.entity_id is None:
            return
        message = await Message.get_or_none(id=event.entity_id)
        if message is None:
            return
        conversation = await Conversation.get_or_none(id=message.conversation_id)
        if conversation is None:
            return
        contact = await Contact.get_or_none(id=conversation.contact_id)
        lead_name = (contact.name if contact is not None else "") or conversation.peer_id
        deal = await operators.open_deal_of(conversation.tenant_id, conversation.contact_id)
        for user in await operators.recipients_for(conversation):
            if await operators.already_notified(user.id, message.id):
                continue
            with self.i18n.context(), self.i18n.use_locale(operators.language_of(user.language)):
                text = render_notification(
                    lead_name=lead_name,
                    channel=conversation.channel.value,
                    deal=deal,
                    kind=message.kind.value,
                    text=message.text,
                )
                keyboard = notification_keyboard(conversation.id)
            sent = await self._send(user, text, reply_markup=keyboard, parse_mode=ParseMode.HTML)
            if sent is None:
                continue
            await operators.record_notification(
                user=user,
                chat_id=sent.chat.id,
                telegram_message_id=sent.message_id,
                conversation=conversation,
                message_id=message.id,
            )

    async def status_changed(self, event: Event, conn: BaseDBAsyncClient) -> None:
        """Tell the author of a message that it could not be delivered."""
        after: dict[str, Any] = dict(event.after or {})
        if after.get("status") != "failed" or not after.get("author_user_id"):
            return
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
        await self._send(user, text, parse_mode=ParseMode.HTML)

    async def _send(self, user: User, text: str, **kwargs: Any) -> Any:
        """Send to the user's private chat; None when Telegram refuses that chat for good."""
        assert user.telegram_id is not None
        try:
            return await self.bot.send_message(chat_id=user.telegram_id, text=text, **kwargs)
        except (TelegramForbiddenError, TelegramBadRequest) as exc:
            # The operator never started the bot, blocked it, or the chat is gone: a retry
            # would fail the same way.
            logger.info("operator %s not notified: %s", user.id, redact(str(exc)))
            return None
