"""The operator bot's notifications: what was sent to whom, and what a reply to it answers.

A notification of a lead message is recorded before the Telegram call (``begin_notification``)
and marked sent or failed after it, so it is sent at most once. A Telegram reply to a
notification or to a "sent" confirmation answers the lead of its conversation
(``conversation_for_reply``); ``reply_delivery`` tells how such a reply fares.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from crm.messaging import DeliveryStatus
from crm.models import Conversation, Message, NotificationState, OperatorNotification, User

logger = logging.getLogger(__name__)


async def begin_notification(
    *, user: User, bot_id: int, chat_id: int, conversation: Conversation, message_id: int
) -> OperatorNotification | None:
    """Record the intent to tell ``user`` of a lead message, before the Telegram call.

    None when a delivery of the same event already began it: it is never sent twice.
    """
    try:
        return await OperatorNotification.create(
            tenant_id=conversation.tenant_id,
            user_id=user.id,
            bot_id=bot_id,
            chat_id=chat_id,
            telegram_message_id=None,
            conversation_id=conversation.id,
            lead_message_id=message_id,
            state=NotificationState.PENDING,
        )
    except IntegrityError:
        return None


async def _supersede(bot_id: int, chat_id: int, telegram_message_id: int, conn: Any) -> None:
    """Free a Telegram message id for the newest record: older rows with it stop answering.

    Message ids count per bot and chat and start again when the Bot API forgets its chats
    (a restarted emulator) or for a new bot; rows from before 0012 carry no bot.
    """
    stale = OperatorNotification.filter(
        Q(bot_id=bot_id) | Q(bot_id__isnull=True),
        chat_id=chat_id,
        telegram_message_id=telegram_message_id,
    )
    replaced = await stale.using_db(conn).update(telegram_message_id=None)
    if replaced:
        logger.info(
            "Telegram message %s in chat %s of bot %s now answers a newer notification "
            "(%s older record(s) replaced)",
            telegram_message_id,
            chat_id,
            bot_id,
            replaced,
        )


async def record_sent(notification: OperatorNotification, telegram_message_id: int) -> None:
    """Telegram took the notification whose intent was recorded: keep its message id."""
    assert notification.bot_id is not None
    notification.telegram_message_id = telegram_message_id
    notification.state = NotificationState.SENT
    try:
        # One statement in the usual case: this runs for every lead message (bench_notify).
        await notification.save(update_fields=["telegram_message_id", "state"])
    except IntegrityError:
        async with in_transaction() as conn:
            await _supersede(notification.bot_id, notification.chat_id, telegram_message_id, conn)
            await notification.save(using_db=conn, update_fields=["telegram_message_id", "state"])


async def record_failed(notification: OperatorNotification, reason: str) -> None:
    """Telegram refused the notification for good (or its fate is unknown): keep why."""
    notification.state = NotificationState.FAILED
    notification.error = reason[:500]
    await notification.save(update_fields=["state", "error"])


async def release_notification(notification: OperatorNotification) -> None:
    """Forget an intent whose message surely did not go out, so a retry of the event sends it."""
    await OperatorNotification.filter(id=notification.id, state=NotificationState.PENDING).delete()


async def record_notification(
    *,
    user: User,
    bot_id: int,
    chat_id: int,
    telegram_message_id: int,
    conversation: Conversation,
    message_id: int | None = None,
) -> OperatorNotification | None:
    """Remember a sent message that answers a conversation's lead when replied to.

    The newest record of a Telegram message id wins. None when ``message_id`` (a lead
    message, or an outgoing one for a confirmation) was already recorded for the user.
    """
    values: dict[str, Any] = {
        "tenant_id": conversation.tenant_id,
        "user_id": user.id,
        "bot_id": bot_id,
        "chat_id": chat_id,
        "telegram_message_id": telegram_message_id,
        "conversation_id": conversation.id,
        "lead_message_id": message_id,
    }
    return await _create_newest(values)


async def _create_newest(values: dict[str, Any]) -> OperatorNotification | None:
    """Create a sent notification row; an older row with its Telegram message id gives way."""
    try:
        return await OperatorNotification.create(**values)
    except IntegrityError:
        pass
    try:
        async with in_transaction() as conn:
            await _supersede(
                values["bot_id"], values["chat_id"], values["telegram_message_id"], conn
            )
            return await OperatorNotification.create(**values, using_db=conn)
    except IntegrityError:
        return None  # the (user, lead or outgoing message) pair is recorded already


async def conversation_for_reply(
    bot_id: int, chat_id: int, message_id: int
) -> OperatorNotification | None:
    """The notification a Telegram reply answers (by bot, chat and replied-to message id)."""
    rows = await OperatorNotification.filter(
        Q(bot_id=bot_id) | Q(bot_id__isnull=True),
        chat_id=chat_id,
        telegram_message_id=message_id,
    ).order_by("-id")
    exact = [row for row in rows if row.bot_id == bot_id]
    found = exact or rows
    return found[0] if found else None


# Messages an operator sent by replying to a notification in the bot's private chat carry this
# idempotency key prefix: their "sent" confirmation shows how they fare. (Messages written in a
# team inbox topic use "tg:" and have no confirmation.)
TELEGRAM_REPLY_PREFIX = "tgr:"


def telegram_reply_key(chat_id: int, message_id: int) -> str:
    """The idempotency key of a reply sent from Telegram message ``message_id`` in ``chat_id``."""
    return f"{TELEGRAM_REPLY_PREFIX}{chat_id}:{message_id}"


async def channel_of_conversation(conversation_id: int) -> str | None:
    """The messenger of a conversation (``whatsapp``, ``telegram``), if it exists."""
    conversation = await Conversation.filter(id=conversation_id).only("id", "channel").first()
    return conversation.channel.value if conversation is not None else None


async def record_confirmation(
    notification: OperatorNotification,
    bot_id: int,
    chat_id: int,
    telegram_message_id: int,
    message_id: int,
) -> OperatorNotification | None:
    """Remember the "sent" confirmation of a reply (``message_id``, the outgoing message).

    It is found again by the reply's status changes; a Telegram reply to it answers the lead
    of the same conversation. None when that reply already has a confirmation.
    """
    return await _create_newest(
        {
            "tenant_id": notification.tenant_id,
            "user_id": notification.user_id,
            "bot_id": bot_id,
            "chat_id": chat_id,
            "telegram_message_id": telegram_message_id,
            "conversation_id": notification.conversation_id,
            "lead_message_id": message_id,
        }
    )


@dataclass(frozen=True)
class ReplyDelivery:
    """Where an operator's outgoing message stands, and the confirmation that shows it."""

    status: DeliveryStatus
    error_title: str | None
    # Sent by replying to a notification in the bot: its confirmation shows the status.
    bot_reply: bool
    language: str
    chat_id: int | None = None
    telegram_message_id: int | None = None


async def reply_delivery(message_id: int) -> ReplyDelivery | None:
    """The status of an outgoing message and its author's confirmation in Telegram, if any."""
    message = (
        await Message.filter(id=message_id)
        .only("id", "status", "error_title", "idempotency_key", "author_user_id")
        .first()
    )
    if message is None or message.author_user_id is None:
        return None
    author = await User.filter(id=message.author_user_id).only("id", "language").first()
    confirmation = await OperatorNotification.filter(
        user_id=message.author_user_id, lead_message_id=message.id
    ).first()
    return ReplyDelivery(
        status=DeliveryStatus(message.status),
        error_title=message.error_title,
        bot_reply=(message.idempotency_key or "").startswith(TELEGRAM_REPLY_PREFIX),
        language=author.language if author is not None else "en",
        chat_id=confirmation.chat_id if confirmation is not None else None,
        telegram_message_id=(
            confirmation.telegram_message_id if confirmation is not None else None
        ),
    )
