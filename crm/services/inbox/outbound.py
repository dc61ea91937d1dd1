"""What the business sends: queue a message under the channel's rules, then deliver it once.

``do_send_message`` checks the rules a lead would care about (opt-out, WhatsApp's 24-hour
window) and stores the message as queued with a ``message.queued`` event in one transaction. A
worker handling that event calls ``deliver_message``, which claims the message, respects the
connection's rate, retries what the provider asks to retry, and records the provider id.

Exactly once: a message is handed to the provider only by the worker that claimed it, and a
retry happens only after the provider refused it. A worker killed in the middle of a send
leaves the claim behind; such a message is never re-sent blindly (at most once), and
``fail_stale_sends`` marks it failed so the operator sees it. That failure is a guess: each
send carries a tracker naming the message, and a receipt the provider sends later with it
records the provider id and moves the message to the true state (see ``inbox.apply_status``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from crm.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from crm.messaging import (
    Button,
    ChannelAdapter,
    ChannelKind,
    ConnectionInfo,
    DeliveryStatus,
    MessageKind,
    OutboundKind,
    OutboundMessage,
    SendError,
)
from crm.models import (
    AuthorType,
    Consent,
    Contact,
    Conversation,
    Direction,
    Message,
    Role,
)
from crm.services.access import Actor, ActorType
from crm.services.events.catalog import MessageQueued, MessageSent, MessageStatusChanged
from crm.services.events.recording import record_event
from crm.services.inbox.delivery_receipts import (
    apply_pending_statuses,
    status_event,
    tracker_for,
)
from crm.services.inbox.inbound_messages import EVENT_TEXT_CHARS, preview_of
from crm.services.references import lock_in_tenant

logger = logging.getLogger(__name__)

CUSTOMER_SERVICE_WINDOW = dt.timedelta(hours=24)
MAX_TEXT = 4096
MAX_BUTTONS = 3
STALE_SEND = dt.timedelta(minutes=10)
DEFAULT_MAX_ATTEMPTS = 6


class WindowClosed(Conflict):
    """WhatsApp refuses free-form messages more than 24 hours after the lead last wrote."""

    code = "window_closed"

    def __init__(self, last_inbound_at: dt.datetime | None, now: dt.datetime) -> None:
        if last_inbound_at is None:
            ago = "the lead has never written on this channel"
        else:
            hours = (now - last_inbound_at).total_seconds() / 3600
            ago = f"the lead last wrote {hours:.1f} hours ago"
        super().__init__(
            "text",
            "outside WhatsApp's 24-hour customer service window: "
            f"{ago}; send an approved template instead",
        )


class OptedOut(Conflict):
    """The lead asked not to be messaged."""

    code = "opted_out"

    def __init__(self, marketing: bool) -> None:
        reason = (
            "the lead opted out of marketing messages"
            if marketing
            else "the lead opted out and has not written since"
        )
        super().__init__("contact", reason)


@dataclass(frozen=True)
class Outgoing:
    """An operator's (or agent's, or campaign's) message, as the API takes it."""

    text: str = ""
    kind: OutboundKind = OutboundKind.TEXT
    media: dict[str, Any] | None = None  # a stored attachment: key, mime_type, filename
    template_name: str | None = None
    template_language: str | None = None
    template_params: tuple[str, ...] = ()
    buttons: tuple[Button, ...] = ()
    reply_to_message_id: int | None = None
    marketing: bool = False
    idempotency_key: str | None = None


def _author_type(actor: Actor) -> AuthorType:
    if actor.actor_type is ActorType.AGENT:
        return AuthorType.AGENT
    if actor.actor_type is ActorType.SYSTEM:
        return AuthorType.SYSTEM
    return AuthorType.USER


def check_may_work_on(actor: Actor, conversation: Conversation) -> None:
    """A bidi works on conversations assigned to them or to nobody; admins on any."""
    actor.require_write()
    if actor.has_role(Role.ADMIN) or actor.user_id is None:
        return
    if conversation.assignee_id is not None and conversation.assignee_id != actor.user_id:
        raise PermissionDenied("this conversation is assigned to another member")


def _validate(outgoing: Outgoing) -> None:
    if len(outgoing.text) > MAX_TEXT:
        raise ValidationFailed("text", f"must be at most {MAX_TEXT} characters")
    if outgoing.kind is OutboundKind.TEXT and not outgoing.text.strip():
        raise ValidationFailed("text", "must not be empty")
    if outgoing.kind is OutboundKind.TEMPLATE and not outgoing.template_name:
        raise ValidationFailed("template.name", "is required for a template message")
    if outgoing.kind is OutboundKind.BUTTONS:
        if not outgoing.text.strip():
            raise ValidationFailed("text", "a message with buttons needs a text")
        if not 1 <= len(outgoing.buttons) <= MAX_BUTTONS:
            raise ValidationFailed("buttons", f"give 1 to {MAX_BUTTONS} buttons")
        for index, button in enumerate(outgoing.buttons):
            if not button.id or not button.title or len(button.title) > 20:
                raise ValidationFailed(
                    f"buttons[{index}]", "needs an id and a title of at most 20 characters"
                )
    media_kinds = {
        OutboundKind.IMAGE,
        OutboundKind.DOCUMENT,
        OutboundKind.AUDIO,
        OutboundKind.VOICE,
        OutboundKind.VIDEO,
    }
    if outgoing.kind in media_kinds and not (outgoing.media and outgoing.media.get("key")):
        raise ValidationFailed("media_key", f"a {outgoing.kind.value} message needs an attachment")


def _message_kind(kind: OutboundKind) -> MessageKind:
    if kind is OutboundKind.BUTTONS:
        return MessageKind.INTERACTIVE
    return MessageKind(kind.value)


async def check_send_rules(
    conversation: Conversation, contact: Contact, outgoing: Outgoing, now: dt.datetime
) -> None:
    """Refuse (409) a message to a lead who opted out, or outside WhatsApp's 24-hour window."""
    if contact.consent is Consent.OPTED_OUT:
        # A lead who opted out still gets answers when they write again, never marketing.
        wrote_since = (
            contact.opted_out_at is not None
            and conversation.last_inbound_at is not None
            and conversation.last_inbound_at > contact.opted_out_at
        )
        if outgoing.marketing or not wrote_since:
            raise OptedOut(outgoing.marketing)
    if conversation.channel is ChannelKind.WHATSAPP and outgoing.kind is not OutboundKind.TEMPLATE:
        last = conversation.last_inbound_at
        if last is None or now - last > CUSTOMER_SERVICE_WINDOW:
            raise WindowClosed(last, now)


async def _already_queued(actor: Actor, outgoing: Outgoing) -> Message | None:
    """The message an earlier call with the same idempotency key queued."""
    if not outgoing.idempotency_key:
        return None
    return await Message.filter(
        tenant_id=actor.tenant_id, idempotency_key=outgoing.idempotency_key
    ).first()


async def do_send_message(actor: Actor, conversation_id: int, outgoing: Outgoing) -> Message:
    """Queue a message to the lead of a conversation; a worker delivers it.

    Refused with 409 when the lead opted out or WhatsApp's 24-hour window is closed. With an
    ``idempotency_key`` a repeated call returns the message the first call queued.
    """
    actor.require_write()
    _validate(outgoing)
    existing = await _already_queued(actor, outgoing)
    if existing is not None:
        return existing
    now = dt.datetime.now(dt.UTC)
    try:
        async with in_transaction() as conn:
            conversation = await lock_in_tenant(
                actor, Conversation, conversation_id, "conversation", conn
            )
            check_may_work_on(actor, conversation)
            contact = await Contact.filter(id=conversation.contact_id).using_db(conn).first()
            if contact is None:
                raise NotFound("conversation", conversation_id)
            await check_send_rules(conversation, contact, outgoing, now)
            reply_to_id = None
            if outgoing.reply_to_message_id is not None:
                exists = (
                    await Message.filter(
                        id=outgoing.reply_to_message_id, conversation_id=conversation.id
                    )
                    .using_db(conn)
                    .exists()
                )
                if not exists:
                    raise ValidationFailed(
                        "reply_to_message_id", "is not a message of this conversation"
                    )
                reply_to_id = outgoing.reply_to_message_id
            payload: dict[str, Any] = {}
            if outgoing.kind is OutboundKind.TEMPLATE:
                payload["template"] = {
                    "name": outgoing.template_name,
                    "language": outgoing.template_language or "en_US",
                    "params": list(outgoing.template_params),
                }
            if outgoing.buttons:
                payload["buttons"] = [{"id": b.id, "title": b.title} for b in outgoing.buttons]
            message = await Message.create(
                tenant_id=actor.tenant_id,
                conversation_id=conversation.id,
                connection_id=conversation.connection_id,
                direction=Direction.OUT,
                kind=_message_kind(outgoing.kind),
                text=outgoing.text,
                media=outgoing.media,
                payload=payload,
                status=DeliveryStatus.QUEUED,
                author_type=_author_type(actor),
                author_user_id=actor.user_id,
                reply_to_id=reply_to_id,
                marketing=outgoing.marketing,
                idempotency_key=outgoing.idempotency_key,
                using_db=conn,
            )
            conversation.last_message_at = max(conversation.last_message_at, now)
            conversation.last_message_preview = preview_of(outgoing.text, message.kind.value)
            conversation.unread_count = 0  # answering a lead means their messages were read
            await conversation.save(
                using_db=conn,
                update_fields=["last_message_at", "last_message_preview", "unread_count"],
            )
            await record_event(
                actor,
                MessageQueued,
                message.id,
                after={
                    "conversation_id": conversation.id,
                    "channel": conversation.channel.value,
                    "kind": message.kind.value,
                    "text": outgoing.text[:EVENT_TEXT_CHARS],
                    "marketing": outgoing.marketing,
                },
                using_db=conn,
            )
    except IntegrityError:
        # Two calls with one idempotency key raced; the other one's message stands.
        existing = await _already_queued(actor, outgoing)
        if existing is not None:
            return existing
        raise
    return message


class RateLimiter(Protocol):
    """Paces sends per connection (``rate`` per second) across the process or the cluster."""

    async def acquire(self, key: str, rate: int) -> None:
        """Wait until one more send under ``key`` fits the rate."""
        ...


@dataclass
class LocalRateLimiter:
    """A token bucket per key, in this process (the embedded mode's limiter)."""

    _next_free: dict[str, float] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    clock: Callable[[], float] = time.monotonic

    async def acquire(self, key: str, rate: int) -> None:
        """Reserve the next slot of ``key`` and sleep until it comes."""
        interval = 1.0 / rate
        async with self._lock:
            now = self.clock()
            slot = max(now, self._next_free.get(key, now))
            self._next_free[key] = slot + interval
        delay = slot - now
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass(frozen=True)
class DeliveryDeps:
    """What delivery needs from the edges, wired by the composition root."""

    adapter_for: Callable[[ChannelKind], ChannelAdapter]
    load_connection: Callable[[int], Awaitable[ConnectionInfo | None]]
    limiter: RateLimiter
    media_path: Callable[[str], str]
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


def backoff_delay(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (1-based) when the provider gave no hint."""
    return float(min(0.5 * 2 ** (attempt - 1), 30.0))


async def _claim(message_id: int, now: dt.datetime) -> bool:
    claimed = await Message.filter(
        id=message_id,
        direction=Direction.OUT,
        status=DeliveryStatus.QUEUED,
        external_id=None,
        sending_since=None,
    ).update(sending_since=now)
    return claimed == 1


def _outbound(message: Message, conversation: Conversation, deps: DeliveryDeps) -> OutboundMessage:
    media: dict[str, Any] = dict(message.media or {})
    payload: dict[str, Any] = dict(message.payload)
    template: dict[str, Any] = payload.get("template") or {}
    buttons = tuple(
        Button(id=str(b["id"]), title=str(b["title"])) for b in payload.get("buttons", [])
    )
    kind = OutboundKind.BUTTONS if message.kind is MessageKind.INTERACTIVE else None
    return OutboundMessage(
        to=conversation.peer_id,
        kind=kind or OutboundKind(message.kind.value),
        text=message.text,
        media_path=deps.media_path(str(media["key"])) if media.get("key") else None,
        filename=str(media["filename"]) if media.get("filename") else None,
        mime_type=str(media["mime_type"]) if media.get("mime_type") else None,
        template_name=template.get("name"),
        template_language=template.get("language"),
        template_params=tuple(str(p) for p in template.get("params", [])),
        buttons=buttons,
        reply_to_external_id=None,
        business_connection_id=conversation.business_connection_id or None,
        tracker=tracker_for(message.id),
    )


async def deliver_message(message_id: int, deps: DeliveryDeps) -> DeliveryStatus | None:
    """Hand one queued message to its provider; returns its status, None if not ours to send."""
    now = dt.datetime.now(dt.UTC)
    if not await _claim(message_id, now):
        return None
    message = await Message.get(id=message_id)
    conversation = await Conversation.get(id=message.conversation_id)
    connection = await deps.load_connection(message.connection_id)
    if connection is None:
        await _record_failure(message, None, "the channel connection is paused or removed")
        return DeliveryStatus.FAILED
    outbound = _outbound(message, conversation, deps)
    if message.reply_to_id is not None:
        reply_to = await Message.get_or_none(id=message.reply_to_id)
        if reply_to is not None and reply_to.external_id:
            outbound = _with_reply(outbound, reply_to.external_id)
    adapter = deps.adapter_for(connection.kind)
    for attempt in range(1, deps.max_attempts + 1):
        await deps.limiter.acquire(f"connection:{connection.id}", connection.rate_per_second)
        try:
            result = await adapter.send(connection, outbound)
        except SendError as exc:
            if exc.retryable and attempt < deps.max_attempts:
                delay = exc.retry_after if exc.retry_after is not None else backoff_delay(attempt)
                logger.info(
                    "send of message %s refused (%s), retry %s in %.1fs",
                    message_id,
                    exc.code,
                    attempt,
                    delay,
                )
                await Message.filter(id=message_id).update(attempts=attempt)
                await deps.sleep(delay)
                continue
            await _record_failure(message, exc.code, exc.title, attempts=attempt)
            return DeliveryStatus.FAILED
        except Exception:
            # Not a refusal we understand: release the claim so the handler's retry may send.
            await Message.filter(id=message_id).update(sending_since=None, attempts=attempt)
            raise
        return await _record_sent(message, result.external_id, attempt)
    raise AssertionError("unreachable")


def _with_reply(outbound: OutboundMessage, external_id: str) -> OutboundMessage:
    return dataclasses.replace(outbound, reply_to_external_id=external_id)


async def _record_sent(message: Message, external_id: str, attempts: int) -> DeliveryStatus:
    async with in_transaction() as conn:
        locked = await Message.filter(id=message.id).using_db(conn).select_for_update().first()
        if locked is None:
            return DeliveryStatus.FAILED
        locked.external_id = external_id
        locked.attempts = attempts
        locked.sending_since = None
        if locked.status is DeliveryStatus.QUEUED:
            locked.status = DeliveryStatus.SENT
            locked.status_at = dt.datetime.now(dt.UTC)
        await locked.save(
            using_db=conn,
            update_fields=["external_id", "attempts", "sending_since", "status", "status_at"],
        )
        await record_event(
            Actor.system(locked.tenant_id),
            MessageSent,
            locked.id,
            after={
                "conversation_id": locked.conversation_id,
                "external_id": external_id,
                "author_user_id": locked.author_user_id,
            },
            using_db=conn,
        )
    await apply_pending_statuses(locked)
    refreshed = await Message.get(id=message.id)
    return refreshed.status


async def _record_failure(
    message: Message, code: int | None, title: str, *, attempts: int = 0
) -> None:
    async with in_transaction() as conn:
        locked = await Message.filter(id=message.id).using_db(conn).select_for_update().first()
        if locked is None:
            return
        locked.status = DeliveryStatus.FAILED
        locked.error_code = code
        locked.error_title = title[:500]
        locked.sending_since = None
        locked.attempts = max(attempts, locked.attempts)
        locked.status_at = dt.datetime.now(dt.UTC)
        await locked.save(using_db=conn)
        await record_event(
            Actor.system(locked.tenant_id),
            MessageStatusChanged,
            locked.id,
            after=status_event(locked),
            using_db=conn,
        )


async def fail_stale_sends(now: dt.datetime | None = None) -> int:
    """Mark failed the sends a killed worker left claimed; the operator decides to resend."""
    now = now or dt.datetime.now(dt.UTC)
    stale = await Message.filter(
        direction=Direction.OUT,
        status=DeliveryStatus.QUEUED,
        external_id=None,
        sending_since__lt=now - STALE_SEND,
    )
    for message in stale:
        await _record_failure(
            message, None, "delivery state unknown: the worker stopped while sending"
        )
    return len(stale)
