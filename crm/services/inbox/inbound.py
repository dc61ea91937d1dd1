"""What leads send: messages, receipts, preferences and edits, stored once each.

Every function here is called by a worker with a channel's normalized update. Providers deliver
at least once and in any order, so each write is keyed on the provider's own id: a message on
(connection, external id), a receipt on the message's status rank, an update on its update id.
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

from crm.messaging import (
    STATUS_RANK,
    BusinessConnectionUpdate,
    ChannelKind,
    ConnectionInfo,
    DeliveryStatus,
    InboundEdit,
    InboundMessage,
    InboundPreference,
    InboundStatus,
)
from crm.models import (
    AiSettings,
    AuthorType,
    BusinessLink,
    Consent,
    Contact,
    Conversation,
    ConversationStatus,
    Direction,
    Message,
    PendingStatus,
    ProcessedUpdate,
    User,
)
from crm.services.access import Actor
from crm.services.contacts.identifiers import build_search_text
from crm.services.events.catalog import (
    BusinessConnected,
    BusinessDisconnected,
    ContactCreated,
    ContactOptedIn,
    ContactOptedOut,
    ContactUpdated,
    MessageDeleted,
    MessageEdited,
    MessageReceived,
    MessageStatusChanged,
)
from crm.services.events.recording import record_event, snapshot
from crm.services.references import lock_in_tenant
from crm.services.text import clean_json, clean_optional, clean_text

logger = logging.getLogger(__name__)

# Whole-message opt-out keywords (compared case-insensitively, surrounding punctuation ignored).
OPT_OUT_KEYWORDS = frozenset({"stop", "unsubscribe", "стоп", "отписаться"})
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


def is_opt_out(text: str) -> bool:
    """True when a whole message asks to stop messages (STOP, СТОП, ...)."""
    return text.strip().strip(".!?\"' ").casefold() in OPT_OUT_KEYWORDS


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


# Not identities: a parent user id is shared with nobody else but is a weaker key (looked up
# last, not unique); a username can change hands, so it is shown, never matched on.
_WEAK_FIELDS = ("whatsapp_parent_user_id", "whatsapp_username")


def _identity_filters(connection: ConnectionInfo, inbound: InboundMessage) -> list[dict[str, Any]]:
    """Contact lookups, strongest identifier first."""
    values = _identifiers_of(connection, inbound)
    lookups = [{f: v} for f, v in values.items() if f not in _WEAK_FIELDS]
    if "whatsapp_parent_user_id" in values:
        lookups.append({"whatsapp_parent_user_id": values["whatsapp_parent_user_id"]})
    return lookups


async def _identity_taken(
    tenant_id: int, field: str, value: Any, contact_id: int, conn: BaseDBAsyncClient
) -> bool:
    query = Contact.filter(tenant_id=tenant_id, **{field: value}).exclude(id=contact_id)
    return await query.using_db(conn).exists()


async def _find_or_create_contact(
    actor: Actor, connection: ConnectionInfo, inbound: InboundMessage, conn: BaseDBAsyncClient
) -> Contact:
    for lookup in _identity_filters(connection, inbound):
        contact = (
            await Contact.filter(tenant_id=connection.tenant_id, **lookup).using_db(conn).first()
        )
        if contact is not None:
            await _fill_identifiers(actor, connection, contact, inbound, conn)
            return contact
    values = _identifiers_of(connection, inbound)
    name = (
        inbound.sender_name
        or inbound.phone
        or values.get("telegram_username")
        or values.get("whatsapp_username")
        or ""
    )
    contact = Contact(
        tenant_id=connection.tenant_id,
        name=name[:200],
        source=connection.kind.value,
        **values,
    )
    contact.search_text = build_search_text(
        contact.name, contact.email, contact.phone, contact.telegram_username
    )
    await contact.save(using_db=conn)
    await record_event(
        actor,
        ContactCreated,
        contact.id,
        after=snapshot(contact, exclude=frozenset({"search_text"})),
        using_db=conn,
    )
    return contact


def _identifiers_of(connection: ConnectionInfo, inbound: InboundMessage) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if connection.kind is ChannelKind.WHATSAPP:
        # The sender is a wa_id (digits), or a user id when the lead shows only a username.
        if inbound.sender_id.isdigit():
            values["whatsapp_id"] = inbound.sender_id
        user_id = inbound.whatsapp_user_id or (
            None if inbound.sender_id.isdigit() else inbound.sender_id
        )
        if user_id:
            values["whatsapp_user_id"] = user_id[:64]
        if inbound.whatsapp_parent_user_id:
            values["whatsapp_parent_user_id"] = inbound.whatsapp_parent_user_id[:64]
        if inbound.whatsapp_username:
            values["whatsapp_username"] = inbound.whatsapp_username.lower()[:64]
    elif inbound.sender_id.isdigit():
        values["telegram_id"] = int(inbound.sender_id)
    if inbound.phone:
        values["phone"] = inbound.phone
    if inbound.telegram_username:
        values["telegram_username"] = inbound.telegram_username.lower()
    return values


async def _fill_identifiers(
    actor: Actor,
    connection: ConnectionInfo,
    contact: Contact,
    inbound: InboundMessage,
    conn: BaseDBAsyncClient,
) -> None:
    """Complete a known contact with what the channel revealed, never overwriting."""
    before = snapshot(contact, exclude=frozenset({"search_text"}))
    changed = False
    for field, value in _identifiers_of(connection, inbound).items():
        current = getattr(contact, field)
        if field == "whatsapp_username" and current != value:
            pass  # the lead's current username, whatever it was before
        elif current is not None:
            continue
        elif field not in _WEAK_FIELDS and await _identity_taken(
            contact.tenant_id, field, value, contact.id, conn
        ):
            continue  # another contact holds it; merging people is an operator's decision
        setattr(contact, field, value)
        changed = True
    if not contact.name and inbound.sender_name:
        contact.name = inbound.sender_name[:200]
        changed = True
    if not changed:
        return
    contact.search_text = build_search_text(
        contact.name, contact.email, contact.phone, contact.telegram_username
    )
    await contact.save(using_db=conn)
    await record_event(
        actor,
        ContactUpdated,
        contact.id,
        before=before,
        after=snapshot(contact, exclude=frozenset({"search_text"})),
        using_db=conn,
    )


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
        contact = await _find_or_create_contact(actor, connection, inbound, conn)
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
            await _set_opted_out(actor, contact, True, received_at, "keyword", conn)
    return Received(message, conversation.id, contact.id, created=True)


async def _set_opted_out(
    actor: Actor,
    contact: Contact,
    opted_out: bool,
    at: dt.datetime,
    reason: str,
    conn: BaseDBAsyncClient,
) -> bool:
    if opted_out == (contact.consent is Consent.OPTED_OUT):
        return False
    before = snapshot(contact, exclude=frozenset({"search_text"}))
    contact.consent = Consent.OPTED_OUT if opted_out else Consent.GRANTED
    contact.opted_out_at = at if opted_out else None
    await contact.save(using_db=conn, update_fields=["consent", "opted_out_at", "updated_at"])
    after = snapshot(contact, exclude=frozenset({"search_text"}))
    after["reason"] = reason
    event = ContactOptedOut if opted_out else ContactOptedIn
    await record_event(actor, event, contact.id, before=before, after=after, using_db=conn)
    return True


async def do_set_opted_out(actor: Actor, contact_id: int, opted_out: bool, reason: str) -> bool:
    """Opt a contact out of (or back into) marketing; False when it already was so."""
    async with in_transaction() as conn:
        contact = await lock_in_tenant(actor, Contact, contact_id, "contact", conn)
        return await _set_opted_out(
            actor, contact, opted_out, dt.datetime.now(dt.UTC), reason, conn
        )


async def apply_preference(connection: ConnectionInfo, preference: InboundPreference) -> bool:
    """A lead stopped or resumed marketing messages; True when the contact changed."""
    actor = Actor.system(connection.tenant_id)
    async with in_transaction() as conn:
        lookups: list[dict[str, Any]] = [{"whatsapp_id": preference.sender_id}]
        if connection.kind is ChannelKind.WHATSAPP:
            user_id = preference.user_id or preference.sender_id
            lookups += [{"whatsapp_user_id": user_id}, {"phone": f"+{preference.sender_id}"}]
        contact = None
        for lookup in lookups:
            contact = (
                await Contact.filter(tenant_id=connection.tenant_id, **lookup)
                .using_db(conn)
                .select_for_update()
                .first()
            )
            if contact is not None:
                break
        if contact is None:
            logger.info("marketing preference for an unknown lead on connection %s", connection.id)
            return False
        return await _set_opted_out(
            actor, contact, preference.opted_out, preference.at, "marketing_preference", conn
        )


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


async def _lock_message(
    connection_id: int, external_id: str, conn: BaseDBAsyncClient
) -> Message | None:
    query = Message.filter(connection_id=connection_id, external_id=external_id)
    return await query.using_db(conn).select_for_update().first()


async def _apply_status_to_stored(
    connection_id: int, receipt: InboundStatus, *, drop_pending: bool = False
) -> Message | None:
    async with in_transaction() as conn:
        message = await _lock_message(connection_id, receipt.external_id, conn)
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


async def apply_edit(connection: ConnectionInfo, edit: InboundEdit) -> Message | None:
    """A lead edited or deleted a message: keep the latest text, mark it, tell the team."""
    async with in_transaction() as conn:
        message = await _lock_message(connection.id, edit.external_id, conn)
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


async def apply_business_connection(
    connection: ConnectionInfo, update: BusinessConnectionUpdate
) -> BusinessLink:
    """Telegram Business: remember which rep's account the bot now serves.

    The rep is matched to a member of the tenant by Telegram id; chats of an unknown rep
    still land in the inbox, unassigned.
    """
    async with in_transaction() as conn:
        user = (
            await User.filter(
                telegram_id=update.rep_telegram_id,
                memberships__tenant_id=connection.tenant_id,
            )
            .using_db(conn)
            .first()
        )
        link = (
            await BusinessLink.filter(
                connection_id=connection.id,
                business_connection_id=update.business_connection_id,
            )
            .using_db(conn)
            .select_for_update()
            .first()
        )
        if link is None:
            link = BusinessLink(
                tenant_id=connection.tenant_id,
                connection_id=connection.id,
                business_connection_id=update.business_connection_id,
                rep_telegram_id=update.rep_telegram_id,
            )
        link.rep_name = clean_text(update.rep_name or "")[:200]
        link.user_id = user.id if user is not None else None
        link.enabled = update.enabled
        link.can_reply = update.can_reply
        await link.save(using_db=conn)
        await record_event(
            Actor.system(connection.tenant_id),
            BusinessConnected if update.enabled else BusinessDisconnected,
            link.id,
            after={
                "connection_id": connection.id,
                "rep_telegram_id": update.rep_telegram_id,
                "user_id": link.user_id,
                "can_reply": update.can_reply,
            },
            using_db=conn,
        )
    return link
