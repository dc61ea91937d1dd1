"""Delivery receipts of our messages: moved forward once each, never backward, early ones held.

A receipt is keyed on the message's status rank: a late or repeated one changes nothing.
"""

from __future__ import annotations

from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from crm.messaging import STATUS_RANK, ConnectionInfo, DeliveryStatus, InboundStatus
from crm.models import Direction, Message, PendingStatus
from crm.services.access import Actor
from crm.services.events.catalog import MessageStatusChanged
from crm.services.events.recording import record_event
from crm.services.text import clean_optional, clean_text

TRACKER_PREFIX = "crm-message:"


def tracker_for(message_id: int) -> str:
    """What a send attaches so the provider's receipts name our message (WhatsApp)."""
    return f"{TRACKER_PREFIX}{message_id}"


def _tracked_message_id(tracker: str | None) -> int | None:
    if not tracker or not tracker.startswith(TRACKER_PREFIX):
        return None
    number = tracker[len(TRACKER_PREFIX) :]
    return int(number) if number.isdigit() and len(number) < 19 else None


async def apply_status(connection: ConnectionInfo, receipt: InboundStatus) -> Message | None:
    """Move an outbound message forward (sent, delivered, read, failed); never backward.

    A receipt for an id not stored yet (the send call has not returned) waits in
    PendingStatus and is applied when the sender records the id. When the receipt's tracker
    names a message whose provider id was never recorded (its worker died, or the answer to
    the send was lost), the receipt records the id and its status replaces our guess.
    """
    message = await _apply_status_to_stored(connection.id, receipt)
    if message is not None:
        return message
    message = await _apply_status_by_tracker(connection.id, receipt)
    if message is not None:
        return message
    try:
        await PendingStatus.create(
            connection_id=connection.id,
            external_id=receipt.external_id,
            status=receipt.status,
            error_code=receipt.error_code,
            error_title=clean_optional(receipt.error_title),
            at=receipt.at,
        )
    except IntegrityError:
        return None  # the same receipt is already waiting
    # The sender may have recorded the id between our lookup and the insert: look again, and
    # drop the waiting receipt in the same transaction as applying it (never both or neither).
    return await _apply_status_to_stored(connection.id, receipt, drop_pending=True)


async def lock_message(
    connection_id: int, external_id: str, conn: BaseDBAsyncClient
) -> Message | None:
    """The message a provider id names on a connection, locked for update."""
    query = Message.filter(connection_id=connection_id, external_id=external_id)
    return await query.using_db(conn).select_for_update().first()


async def _apply_status_to_stored(
    connection_id: int, receipt: InboundStatus, *, drop_pending: bool = False
) -> Message | None:
    async with in_transaction() as conn:
        message = await lock_message(connection_id, receipt.external_id, conn)
        if message is None:
            return None
        await _advance(message, receipt, conn)
        if drop_pending:
            await (
                PendingStatus.filter(connection_id=connection_id, external_id=receipt.external_id)
                .using_db(conn)
                .delete()
            )
    return message


async def _apply_status_by_tracker(connection_id: int, receipt: InboundStatus) -> Message | None:
    message_id = _tracked_message_id(receipt.tracker)
    if message_id is None:
        return None
    async with in_transaction() as conn:
        message = (
            await Message.filter(
                id=message_id,
                connection_id=connection_id,
                direction=Direction.OUT,
                external_id=None,
            )
            .using_db(conn)
            .select_for_update()
            .first()
        )
        if message is None:
            return None
        # The provider accepted it after all: whatever we marked (queued, or failed with the
        # delivery state unknown) was a guess, and the provider's word replaces it.
        guessed = message.status
        message.external_id = receipt.external_id
        message.sending_since = None
        await message.save(using_db=conn, update_fields=["external_id", "sending_since"])
        if guessed is DeliveryStatus.FAILED:
            message.status = DeliveryStatus.QUEUED
            message.error_code = None
            message.error_title = None
        if not await _advance(message, receipt, conn):
            message.status = guessed
    return message


async def _advance(message: Message, receipt: InboundStatus, conn: BaseDBAsyncClient) -> bool:
    if message.direction is not Direction.OUT:
        return False
    if STATUS_RANK[receipt.status] <= STATUS_RANK[message.status]:
        return False  # a late or repeated receipt
    message.status = receipt.status
    message.status_at = receipt.at
    if receipt.status is DeliveryStatus.FAILED:
        message.error_code = receipt.error_code
        message.error_title = clean_text(receipt.error_title or "")[:500] or None
    else:
        # Delivered or read after a failure: it arrived; the failure no longer describes it.
        message.error_code = None
        message.error_title = None
    await message.save(
        using_db=conn, update_fields=["status", "status_at", "error_code", "error_title"]
    )
    await record_event(
        Actor.system(message.tenant_id),
        MessageStatusChanged,
        message.id,
        after=status_event(message),
        using_db=conn,
    )
    return True


def status_event(message: Message) -> dict[str, Any]:
    """The payload of a message.status_changed event."""
    return {
        "conversation_id": message.conversation_id,
        "status": message.status.value,
        "error_code": message.error_code,
        "error_title": message.error_title,
        "author_user_id": message.author_user_id,
    }


async def apply_pending_statuses(message: Message) -> None:
    """Apply receipts that arrived before the message's provider id was known."""
    if message.external_id is None:
        return
    pending = await PendingStatus.filter(
        connection_id=message.connection_id, external_id=message.external_id
    ).order_by("id")
    if not pending:
        return
    async with in_transaction() as conn:
        locked = await Message.filter(id=message.id).using_db(conn).select_for_update().first()
        if locked is None:
            return
        for row in sorted(pending, key=lambda p: STATUS_RANK[p.status]):
            receipt = InboundStatus(
                external_id=row.external_id,
                status=row.status,
                at=row.at,
                error_code=row.error_code,
                error_title=row.error_title,
            )
            await _advance(locked, receipt, conn)
        await PendingStatus.filter(id__in=[p.id for p in pending]).using_db(conn).delete()
