"""The confirmation of an operator's reply, edited as the reply is delivered, read, or fails.

An operator's reply sent from Telegram gets a "Sent ✓" confirmation (an ``OperatorNotification``
whose ``lead_message_id`` is the outgoing message); ``show_delivery`` edits it when a receipt
comes (on workers, ``bot.senders.notifications``) and right after the confirmation is recorded
(``bot.routers.inbox.lead_notifications``), whichever sees the newer status.
"""

from __future__ import annotations

import html
import logging

from aiogram import Bot
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.long_messages import not_modified
from crm.messaging import DeliveryStatus
from crm.services.accounts import operators
from crm.services.inbox import operator_notifications
from crm.services.inbox.operator_notifications import ReplyDelivery

logger = logging.getLogger(__name__)

# What the confirmation of a reply shows; queued and sent both read "Sent ✓".
_STAGES = {
    DeliveryStatus.QUEUED: "sent",
    DeliveryStatus.SENT: "sent",
    DeliveryStatus.DELIVERED: "delivered",
    DeliveryStatus.READ: "read",
    DeliveryStatus.FAILED: "failed",
}
SHOWN_WHEN_SENT = "sent"


def delivery_text(status: DeliveryStatus, reason: str | None) -> str:
    """What the confirmation of an operator's reply says at ``status``."""
    if status is DeliveryStatus.DELIVERED:
        return _("✓✓ Delivered")
    if status is DeliveryStatus.READ:
        return _("✓✓ Read")
    if status is DeliveryStatus.FAILED:
        return _("⚠️ Not delivered: {reason}").format(
            reason=html.escape(reason or _("unknown error"))
        )
    return _("Sent ✓")


async def show_delivery(
    bot: Bot, message_id: int, *, i18n: I18n | None = None, shown: str | None = None
) -> None:
    """Edit the confirmation of an outgoing message to show where the message stands now.

    Statuses only move forward in the database (``STATUS_RANK``), but receipts are handled
    concurrently and at least once, so the edit is of the status read afresh, never of the
    receipt at hand, and each edit is followed by another read: whoever edits last shows the
    latest status. ``shown`` is what the confirmation already says (``SHOWN_WHEN_SENT``).
    With ``i18n`` the text is in the author's language (workers); without, in the current one.
    """
    for _attempt in range(len(_STAGES)):
        state = await operator_notifications.reply_delivery(message_id)
        if state is None or state.chat_id is None or state.telegram_message_id is None:
            return
        stage = _STAGES[state.status]
        if stage == shown:
            return
        text = _localized_delivery_text(state, i18n)
        try:
            await bot.edit_message_text(
                text=text,
                chat_id=state.chat_id,
                message_id=state.telegram_message_id,
                parse_mode=ParseMode.HTML,
            )
        except TelegramBadRequest as exc:
            if not not_modified(exc):
                # The operator deleted the confirmation, or the chat is gone.
                logger.info("confirmation of message %s not edited: %s", message_id, exc.message)
                return
        except TelegramForbiddenError:
            return
        shown = stage


def _localized_delivery_text(state: ReplyDelivery, i18n: I18n | None) -> str:
    if i18n is None:
        return delivery_text(state.status, state.error_title)
    with i18n.context(), i18n.use_locale(operators.language_of(state.language)):
        return delivery_text(state.status, state.error_title)
