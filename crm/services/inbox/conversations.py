"""The unified inbox for operators: list, read, assign, snooze, close, notes, search.

Role rules: every member reads every conversation of the tenant. A bidi works (sends, marks
read, snoozes, closes) on conversations assigned to them or to nobody, takes an unassigned
one, and hands back their own; assigning to a colleague is for admins and owners. Private
notes follow the rule of notes: a bidi may add one to any conversation.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from crm.errors import NotFound, PermissionDenied, ValidationFailed
from crm.infrastructure.pagination import (
    Page,
    SortSpec,
    check_limit,
    paginate_by_id,
    paginate_sorted,
)
from crm.messaging import ChannelKind, DeliveryStatus, MessageKind
from crm.models import (
    AuthorType,
    Conversation,
    ConversationStatus,
    Direction,
    Membership,
    Message,
    Role,
)
from crm.services.access import Actor
from crm.services.events.catalog import (
    ConversationAssigned,
    ConversationClosed,
    ConversationNoteAdded,
    ConversationRead,
    ConversationReopened,
    ConversationSnoozed,
)
from crm.services.events.event_types import SnapshotUpdated
from crm.services.events.recording import record_event, snapshot
from crm.services.inbox.inbound_messages import EVENT_TEXT_CHARS
from crm.services.inbox.outbound import MAX_TEXT, check_may_work_on
from crm.services.references import lock_in_tenant

CONVERSATION_SORTS = {
    "last_message_at": SortSpec("last_message_at", "datetime"),
    "created_at": SortSpec("created_at", "datetime"),
}
MAX_SNOOZE = dt.timedelta(days=365)
MAX_QUERY = 200


async def access_conversation(actor: Actor, conversation_id: int) -> Conversation:
    """One conversation of the actor's tenant."""
    actor.require_read()
    conversation = await Conversation.get_or_none(id=conversation_id, tenant_id=actor.tenant_id)
    if conversation is None:
        raise NotFound("conversation", conversation_id)
    return conversation


async def list_conversations(
    actor: Actor,
    *,
    unread: bool | None = None,
    assignee_id: int | None = None,
    unassigned: bool = False,
    channel: ChannelKind | None = None,
    status: ConversationStatus | None = None,
    contact_id: int | None = None,
    sort: str = "-last_message_at",
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Conversation]:
    """The inbox, most recent activity first; snoozed ones whose time came count as open."""
    actor.require_read()
    query = Conversation.filter(tenant_id=actor.tenant_id)
    if unread is True:
        query = query.filter(unread_count__gt=0)
    elif unread is False:
        query = query.filter(unread_count=0)
    if unassigned:
        query = query.filter(assignee_id__isnull=True)
    elif assignee_id is not None:
        query = query.filter(assignee_id=assignee_id)
    if channel is not None:
        query = query.filter(channel=channel)
    if contact_id is not None:
        query = query.filter(contact_id=contact_id)
    if status is not None:
        now = dt.datetime.now(dt.UTC)
        if status is ConversationStatus.OPEN:
            # A snooze whose time has come counts as open again.
            query = query.filter(
                Q(status=ConversationStatus.OPEN)
                | Q(status=ConversationStatus.SNOOZED, snoozed_until__lte=now)
            )
        elif status is ConversationStatus.SNOOZED:
            query = query.filter(status=status, snoozed_until__gt=now)
        else:
            query = query.filter(status=status)
    return await paginate_sorted(query, sort, CONVERSATION_SORTS, cursor, limit)


def effective_status(conversation: Conversation, now: dt.datetime | None = None) -> str:
    """The status an operator sees: a snooze that ran out is open again."""
    now = now or dt.datetime.now(dt.UTC)
    if (
        conversation.status is ConversationStatus.SNOOZED
        and conversation.snoozed_until is not None
        and conversation.snoozed_until <= now
    ):
        return ConversationStatus.OPEN.value
    return conversation.status.value


async def list_messages(
    actor: Actor,
    conversation_id: int,
    *,
    cursor: str | None = None,
    limit: int = 50,
    newest_first: bool = True,
) -> Page[Message]:
    """Messages and private notes of a conversation, a page at a time."""
    await access_conversation(actor, conversation_id)
    query = Message.filter(conversation_id=conversation_id, tenant_id=actor.tenant_id)
    return await paginate_by_id(query, cursor, limit, descending=newest_first)


async def _lock(actor: Actor, conversation_id: int, conn: BaseDBAsyncClient) -> Conversation:
    return await lock_in_tenant(actor, Conversation, conversation_id, "conversation", conn)


async def _save_with_event(
    actor: Actor,
    conversation: Conversation,
    before: dict[str, Any],
    event_type: type[SnapshotUpdated],
    conn: BaseDBAsyncClient,
) -> Conversation:
    after = snapshot(conversation)
    if after == before:
        return conversation
    await conversation.save(using_db=conn)
    await record_event(
        actor,
        event_type,
        conversation.id,
        before=before,
        after=snapshot(conversation),
        using_db=conn,
    )
    return conversation


async def do_mark_read(actor: Actor, conversation_id: int) -> Conversation:
    """The lead's messages so far were read by the team."""
    async with in_transaction() as conn:
        conversation = await _lock(actor, conversation_id, conn)
        check_may_work_on(actor, conversation)
        if conversation.unread_count == 0:
            return conversation
        before = snapshot(conversation)
        conversation.unread_count = 0
        return await _save_with_event(actor, conversation, before, ConversationRead, conn)


async def do_assign(actor: Actor, conversation_id: int, assignee_id: int | None) -> Conversation:
    """Give a conversation to a member (or to nobody)."""
    actor.require_write()
    async with in_transaction() as conn:
        conversation = await _lock(actor, conversation_id, conn)
        if not actor.has_role(Role.ADMIN):
            current = conversation.assignee_id
            taking = assignee_id == actor.user_id and current in (None, actor.user_id)
            returning = assignee_id is None and current == actor.user_id
            if not (taking or returning):
                raise PermissionDenied(
                    "a bidi may take an unassigned conversation or hand back their own; "
                    "assigning to others is for admins"
                )
        if assignee_id is not None:
            member = (
                await Membership.filter(tenant_id=actor.tenant_id, user_id=assignee_id)
                .using_db(conn)
                .exists()
            )
            if not member:
                raise ValidationFailed(
                    "assignee_id", f"{assignee_id} is not a member of this organization"
                )
            role = (
                await Membership.filter(tenant_id=actor.tenant_id, user_id=assignee_id)
                .using_db(conn)
                .values_list("role", flat=True)
            )
            if role and role[0] == Role.VIEWER.value:
                raise ValidationFailed("assignee_id", "a viewer cannot answer conversations")
        before = snapshot(conversation)
        conversation.assignee_id = assignee_id
        return await _save_with_event(actor, conversation, before, ConversationAssigned, conn)


async def do_snooze(actor: Actor, conversation_id: int, until: dt.datetime) -> Conversation:
    """Hide a conversation until ``until``; a new message from the lead wakes it earlier."""
    if until.tzinfo is None:
        raise ValidationFailed("until", "needs a timezone (e.g. 2026-01-01T09:00:00Z)")
    now = dt.datetime.now(dt.UTC)
    if until <= now:
        raise ValidationFailed("until", "must be in the future")
    if until - now > MAX_SNOOZE:
        raise ValidationFailed("until", "must be within a year")
    async with in_transaction() as conn:
        conversation = await _lock(actor, conversation_id, conn)
        check_may_work_on(actor, conversation)
        before = snapshot(conversation)
        conversation.status = ConversationStatus.SNOOZED
        conversation.snoozed_until = until
        return await _save_with_event(actor, conversation, before, ConversationSnoozed, conn)


async def do_set_status(
    actor: Actor, conversation_id: int, status: ConversationStatus
) -> Conversation:
    """Close or reopen a conversation."""
    if status is ConversationStatus.SNOOZED:
        raise ValidationFailed("status", "use snooze with a time to snooze")
    async with in_transaction() as conn:
        conversation = await _lock(actor, conversation_id, conn)
        check_may_work_on(actor, conversation)
        before = snapshot(conversation)
        conversation.status = status
        conversation.snoozed_until = None
        closing = status is ConversationStatus.CLOSED
        event = ConversationClosed if closing else ConversationReopened
        return await _save_with_event(actor, conversation, before, event, conn)


async def do_add_private_note(actor: Actor, conversation_id: int, text: str) -> Message:
    """A note for the team inside the conversation; the lead never sees it."""
    cleaned = text.strip()
    if not cleaned:
        raise ValidationFailed("text", "must not be empty")
    if len(cleaned) > MAX_TEXT:
        raise ValidationFailed("text", f"must be at most {MAX_TEXT} characters")
    actor.require_write()
    async with in_transaction() as conn:
        conversation = await _lock(actor, conversation_id, conn)
        note = await Message.create(
            tenant_id=actor.tenant_id,
            conversation_id=conversation.id,
            connection_id=conversation.connection_id,
            direction=Direction.NOTE,
            kind=MessageKind.TEXT,
            text=cleaned,
            status=DeliveryStatus.DELIVERED,
            author_type=AuthorType.USER if actor.user_id else AuthorType.SYSTEM,
            author_user_id=actor.user_id,
            using_db=conn,
        )
        await record_event(
            actor,
            ConversationNoteAdded,
            note.id,
            after={"conversation_id": conversation.id, "text": cleaned[:EVENT_TEXT_CHARS]},
            using_db=conn,
        )
    return note


async def search_messages(
    actor: Actor,
    q: str,
    *,
    conversation_id: int | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Message]:
    """Messages and notes whose text contains ``q`` (case-insensitive), newest first."""
    actor.require_read()
    check_limit(limit)
    needle = q.strip()
    if not needle:
        raise ValidationFailed("q", "must not be empty")
    if len(needle) > MAX_QUERY:
        raise ValidationFailed("q", f"must be at most {MAX_QUERY} characters")
    query = Message.filter(tenant_id=actor.tenant_id, text__icontains=needle, deleted=False)
    if conversation_id is not None:
        await access_conversation(actor, conversation_id)
        query = query.filter(conversation_id=conversation_id)
    return await paginate_by_id(query, cursor, limit, descending=True)


@dataclass(frozen=True)
class InboxEntry:
    """A conversation of an inbox list with the name its lead goes by."""

    conversation: Conversation
    lead_name: str


@dataclass(frozen=True)
class InboxSlice:
    """Numbered-page view of the inbox: unread conversations, else (``unread`` False) open ones."""

    entries: list[InboxEntry]
    total: int
    unread: bool


def _open_now(now: dt.datetime) -> Q:
    return Q(status=ConversationStatus.OPEN) | Q(
        status=ConversationStatus.SNOOZED, snoozed_until__lte=now
    )


async def inbox_slice(actor: Actor, *, offset: int = 0, limit: int = 8) -> InboxSlice:
    """Conversations with unread messages, newest activity first; open ones when none is unread.

    A slice by offset with the total count, for lists paged by number (a chat's buttons carry
    a page number, not a cursor). Every member reads every conversation of the tenant.
    """
    actor.require_read()
    check_limit(limit)
    if offset < 0:
        raise ValidationFailed("offset", "must not be negative")
    tenant = Conversation.filter(tenant_id=actor.tenant_id)
    query = tenant.filter(unread_count__gt=0)
    total = await query.count()
    unread = total > 0
    if not unread:
        query = tenant.filter(_open_now(dt.datetime.now(dt.UTC)))
        total = await query.count()
    rows = (
        await query.select_related("contact")
        .order_by("-last_message_at", "-id")
        .offset(offset)
        .limit(limit)
    )
    entries = [InboxEntry(c, c.contact.name or c.peer_id) for c in rows]
    return InboxSlice(entries, total, unread)


@dataclass(frozen=True)
class ConversationView:
    """A conversation, its lead's name and its latest messages and notes, oldest first."""

    conversation: Conversation
    lead_name: str
    messages: list[Message]


async def access_conversation_view(
    actor: Actor, conversation_id: int, *, last: int = 10
) -> ConversationView:
    """One conversation of the actor's tenant with its ``last`` messages (notes included)."""
    check_limit(last)
    conversation = await access_conversation(actor, conversation_id)
    await conversation.fetch_related("contact")
    rows = (
        await Message.filter(conversation_id=conversation.id, tenant_id=actor.tenant_id)
        .order_by("-id")
        .limit(last)
    )
    lead_name = conversation.contact.name or conversation.peer_id
    return ConversationView(conversation, lead_name, list(reversed(rows)))
