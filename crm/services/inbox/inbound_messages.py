"""What leads write: each message stored once, with its contact and conversation; its edits.

Called by a worker with a channel's normalized update. Providers deliver at least once and in
any order, so each write is keyed on the provider's own id: a message on (connection, external
id), an update on its update id (``claim_update``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from crm.messaging import ConnectionInfo, DeliveryStatus, InboundEdit, InboundMessage
from crm.models import (
    AiSettings,
    AuthorType,
    BusinessLink,
    Contact,
    Conversation,
    ConversationStatus,
    Direction,
    Message,
    ProcessedUpdate,
)
from crm.services.access import Actor
from crm.services.events.catalog import MessageDeleted, MessageEdited, MessageReceived
from crm.services.events.recording import record_event
from crm.services.inbox.delivery_receipts import lock_message
from crm.services.inbox.lead_contacts import find_or_create_contact
from crm.services.inbox.lead_preferences import is_opt_out, set_opted_out
from crm.services.text import clean_json, clean_optional, clean_text

logger = logging.getLogger(__name__)

PREVIEW_CHARS = 200
EVENT_TEXT_CHARS = 1000
# Concurrent deliveries of one lead's first messages race to create the contact/conversation.
CREATE_ATTEMPTS = 3


@dataclass(frozen=True)
class Received:
    """The stored message, and whether this delivery stored it (False: a duplicate)."""

    message: Message
    conversation_id: int
    contact_id: int
    created: bool


def preview_of(text: str, kind: str) -> str:
    """A one-line preview for conversation lists."""
    line = " ".join(text.split())
    if not line:
        line = f"[{kind}]"
    return line[:PREVIEW_CHARS]


async def claim_update(connection_id: int, update_key: str) -> bool:
    """Record a provider update id; False when it was already processed."""
    try:
        await ProcessedUpdate.create(connection_id=connection_id, update_key=update_key)
    except IntegrityError:
        return False
    return True


async def release_update(connection_id: int, update_key: str) -> None:
    """Forget an update id whose processing failed, so a redelivery runs it again."""
    await ProcessedUpdate.filter(connection_id=connection_id, update_key=update_key).delete()


async def find_message(connection_id: int, external_id: str) -> Message | None:
    """The message a provider id names on a connection."""
    return await Message.filter(connection_id=connection_id, external_id=external_id).first()


async def _default_assignee(
    connection: ConnectionInfo, contact: Contact, business_id: str, conn: BaseDBAsyncClient
) -> int | None:
    """A rep's own Telegram Business chat is theirs; otherwise the contact's owner."""
    if business_id:
        link = (
            await BusinessLink.filter(
                connection_id=connection.id, business_connection_id=business_id
            )
            .using_db(conn)
            .first()
        )
        if link is not None and link.user_id is not None:
            return link.user_id
    return contact.owner_id


async def _conversation_for(
    connection: ConnectionInfo,
    contact: Contact,
    peer_id: str,
    business_id: str,
    at: dt.datetime,
    conn: BaseDBAsyncClient,
) -> Conversation:
    query = Conversation.filter(
        connection_id=connection.id, contact_id=contact.id, business_connection_id=business_id
    )
    conversation = await query.using_db(conn).select_for_update().first()
    if conversation is not None:
        return conversation
    modes = (
        await AiSettings.filter(tenant_id=connection.tenant_id)
        .using_db(conn)
        .values_list("default_ai_mode", flat=True)
    )
    return await Conversation.create(
        tenant_id=connection.tenant_id,
        ai_mode=modes[0] if modes else "off",
        contact_id=contact.id,
        connection_id=connection.id,
        channel=connection.kind,
        peer_id=peer_id,
        business_connection_id=business_id,
        assignee_id=await _default_assignee(connection, contact, business_id, conn),
        last_message_at=at,
        using_db=conn,
    )


def clean_inbound(inbound: InboundMessage) -> InboundMessage:
    """The message with control and bidi characters removed from every text it carries.

    The one place both channels pass through: a NUL would make PostgreSQL refuse the message
    (and the lead cannot be asked to resend), a bidi override would reverse what follows the
    lead's name or text in every notification and page that shows it.
    """
    texts: dict[str, Any] = {
        f.name: clean_text(value)
        for f in dataclasses.fields(inbound)
        if type(value := getattr(inbound, f.name)) is str  # the kind is an enum: kept
    }
    media = inbound.media
    if media is not None:
        media = dataclasses.replace(media, filename=clean_optional(media.filename))
    return dataclasses.replace(inbound, **texts, media=media, payload=clean_json(inbound.payload))


async def receive_message(
    connection: ConnectionInfo, inbound: InboundMessage, media: dict[str, Any] | None = None
) -> Received:
    """Store a lead's message once: contact and conversation found or created, event emitted.

    ``media`` is the stored attachment (key, mime type, ...) when the worker downloaded one.
    Text is stored cleaned (``clean_inbound``): the same on SQLite and PostgreSQL.
    """
    inbound = clean_inbound(inbound)
    media = clean_json(media) if media is not None else None
    for attempt in range(CREATE_ATTEMPTS):
        try:
            return await _store_inbound(connection, inbound, media)
        except IntegrityError:
            # A concurrent delivery created the same message, contact or conversation first.
            if attempt == CREATE_ATTEMPTS - 1:
                raise
            logger.debug("retrying inbound %s after a concurrent insert", inbound.external_id)
    raise AssertionError("unreachable")


async def _store_inbound(
    connection: ConnectionInfo, inbound: InboundMessage, media: dict[str, Any] | None
) -> Received:
    actor = Actor.system(connection.tenant_id)
    received_at = inbound.sent_at
    business_id = inbound.business_connection_id or ""
    async with in_transaction() as conn:
        existing = (
            await Message.filter(connection_id=connection.id, external_id=inbound.external_id)
            .using_db(conn)
            .first()
        )
        if existing is not None:
            owner = (
                await Conversation.filter(id=existing.conversation_id)
                .using_db(conn)
                .only("id", "contact_id")
                .first()
            )
            contact_id = owner.contact_id if owner is not None else 0
            return Received(existing, existing.conversation_id, contact_id, created=False)
        contact = await find_or_create_contact(actor, connection, inbound, conn)
        conversation = await _conversation_for(
            connection, contact, inbound.sender_id, business_id, received_at, conn
        )
        reply_to_id = None
        if inbound.reply_to_external_id:
            reply_to = (
                await Message.filter(
                    connection_id=connection.id, external_id=inbound.reply_to_external_id
                )
                .using_db(conn)
                .first()
            )
            reply_to_id = reply_to.id if reply_to is not None else None
        payload = dict(inbound.payload)
        if inbound.reply_to_external_id and reply_to_id is None:
            payload["reply_to_external_id"] = inbound.reply_to_external_id
        message = await Message.create(
            tenant_id=connection.tenant_id,
            conversation_id=conversation.id,
            connection_id=connection.id,
            direction=Direction.IN,
            kind=inbound.kind,
            text=inbound.text,
            media=media,
            payload=payload,
            external_id=inbound.external_id,
            status=DeliveryStatus.DELIVERED,
            author_type=AuthorType.CONTACT,
            reply_to_id=reply_to_id,
            provider_at=received_at,
            using_db=conn,
        )
        conversation.unread_count += 1
        if conversation.last_inbound_at is None or received_at > conversation.last_inbound_at:
            conversation.last_inbound_at = received_at
        if received_at >= conversation.last_message_at:
            conversation.last_message_at = received_at
            conversation.last_message_preview = preview_of(inbound.text, inbound.kind.value)
        reopened = conversation.status is not ConversationStatus.OPEN
        conversation.status = ConversationStatus.OPEN  # a lead writing needs an answer again
        conversation.snoozed_until = None
        await conversation.save(using_db=conn)
        await record_event(
            actor,
            MessageReceived,
            message.id,
            after={
                "conversation_id": conversation.id,
                "contact_id": contact.id,
                "connection_id": connection.id,
                "channel": connection.kind.value,
                "kind": inbound.kind.value,
                "text": inbound.text[:EVENT_TEXT_CHARS],
                "reopened": reopened,
                "assignee_id": conversation.assignee_id,
            },
            using_db=conn,
        )
        if inbound.kind.value == "text" and is_opt_out(inbound.text):
            await set_opted_out(actor, contact, True, received_at, "keyword", conn)
    return Received(message, conversation.id, contact.id, created=True)


async def apply_edit(connection: ConnectionInfo, edit: InboundEdit) -> Message | None:
    """A lead edited or deleted a message: keep the latest text, mark it, tell the team."""
    async with in_transaction() as conn:
        message = await lock_message(connection.id, edit.external_id, conn)
        if message is None or message.direction is not Direction.IN:
            return None
        before = {"text": message.text, "deleted": message.deleted}
        if edit.deleted:
            if message.deleted:
                return message
            message.deleted = True
        else:
            text = clean_optional(edit.text)
            if text is None or text == message.text:
                return message
            message.text = text
            message.edited = True
        await message.save(using_db=conn, update_fields=["text", "edited", "deleted"])
        await record_event(
            Actor.system(connection.tenant_id),
            MessageDeleted if edit.deleted else MessageEdited,
            message.id,
            before=before,
            after={
                "conversation_id": message.conversation_id,
                "text": message.text[:EVENT_TEXT_CHARS],
                "deleted": message.deleted,
            },
            using_db=conn,
        )
    return message
