"""The team inbox: a forum supergroup per workspace where each conversation has a topic.

An owner or admin links a group (``do_link_group``); from then on every lead message is queued
for the conversation's topic, which the operator bot creates on the first one. A stage change
renames the topic, closing the conversation closes it. A member writing in a topic answers the
lead (``do_send_from_topic``) as themselves, with their own role.

Nothing is posted directly: posts wait in the group's queue (``crm.services.inbox.team_posts``).
This module knows Telegram only by numeric ids; rendering and sending live in
``bot/senders/team_inbox.py``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from crm.errors import Conflict, NotFound, ServiceError
from crm.models import (
    Contact,
    Conversation,
    ConversationStatus,
    Deal,
    Membership,
    Message,
    Role,
    Stage,
    StageKind,
    TeamInbox,
    TeamTopic,
    Tenant,
    User,
)
from crm.services.access import Actor
from crm.services.events.catalog import TeamInboxLinked, TeamInboxUnlinked
from crm.services.events.recording import record_event
from crm.services.inbox.outbound import Outgoing, do_send_message
from crm.services.inbox.team_posts import cancel_pending

TOPIC_NAME_MAX = 128
MAX_WARNED = 500


class LinkedElsewhere(Conflict):
    """The group already serves another workspace."""

    code = "linked_elsewhere"

    def __init__(self) -> None:
        super().__init__("chat_id", "this group is the team inbox of another workspace")


# ---- linking --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkResult:
    """The linked group, and the group the workspace used before, if it moved."""

    inbox: TeamInbox
    previous_chat_id: int | None
    previous_title: str | None
    workspace: str


async def access_team_inbox(actor: Actor) -> TeamInbox | None:
    """The team inbox group of the actor's workspace, if one is linked."""
    actor.require_read()
    return await TeamInbox.get_or_none(tenant_id=actor.tenant_id)


async def inbox_of_chat(chat_id: int) -> TeamInbox | None:
    """The team inbox a Telegram group is, if any."""
    return await TeamInbox.get_or_none(chat_id=chat_id)


async def workspace_name(tenant_id: int) -> str:
    """The name of a workspace, for messages about it."""
    tenant = await Tenant.get_or_none(id=tenant_id)
    return tenant.name if tenant is not None else ""


async def do_link_group(actor: Actor, chat_id: int, title: str, language: str) -> LinkResult:
    """Make a forum group the team inbox of the actor's workspace (owners and admins).

    A workspace has one group: linking another one moves it there, and what was still queued
    for the old group is dropped. A group serves one workspace (``LinkedElsewhere``).
    """
    actor.require_admin()
    try:
        async with in_transaction() as conn:
            other = (
                await TeamInbox.filter(chat_id=chat_id).using_db(conn).select_for_update().first()
            )
            if other is not None and other.tenant_id != actor.tenant_id:
                raise LinkedElsewhere()
            inbox = (
                await TeamInbox.filter(tenant_id=actor.tenant_id)
                .using_db(conn)
                .select_for_update()
                .first()
            )
            previous_chat_id: int | None = None
            previous_title: str | None = None
            if inbox is None:
                inbox = await TeamInbox.create(
                    tenant_id=actor.tenant_id,
                    chat_id=chat_id,
                    title=title[:255],
                    language=language,
                    linked_by_id=actor.user_id,
                    linked_at=dt.datetime.now(dt.UTC),
                    using_db=conn,
                )
            else:
                if inbox.chat_id != chat_id:
                    previous_chat_id, previous_title = inbox.chat_id, inbox.title
                    await cancel_pending(inbox.chat_id, conn)
                    inbox.call_times = []
                    inbox.lagging = False
                    inbox.warned = []
                    inbox.lease_owner = None
                    inbox.lease_until = None
                    inbox.linked_at = dt.datetime.now(dt.UTC)
                inbox.chat_id = chat_id
                inbox.title = title[:255]
                inbox.language = language
                inbox.linked_by_id = actor.user_id
                await inbox.save(using_db=conn)
            await record_event(
                actor,
                TeamInboxLinked,
                inbox.id,
                after={"chat_id": chat_id, "title": title, "previous_chat_id": previous_chat_id},
                using_db=conn,
            )
    except IntegrityError:
        # Another workspace linked this group at the same moment.
        raise LinkedElsewhere() from None
    return LinkResult(
        inbox, previous_chat_id, previous_title, await workspace_name(inbox.tenant_id)
    )


async def do_unlink_group(actor: Actor, chat_id: int | None = None) -> LinkResult:
    """Stop using the workspace's group (or ``chat_id``, which must be it) as the team inbox."""
    actor.require_admin()
    async with in_transaction() as conn:
        query = TeamInbox.filter(tenant_id=actor.tenant_id)
        if chat_id is not None:
            query = query.filter(chat_id=chat_id)
        inbox = await query.using_db(conn).select_for_update().first()
        if inbox is None:
            raise NotFound("team_inbox", chat_id if chat_id is not None else "of this workspace")
        await cancel_pending(inbox.chat_id, conn)
        await inbox.delete(using_db=conn)
        await record_event(
            actor,
            TeamInboxUnlinked,
            inbox.id,
            before={"chat_id": inbox.chat_id, "title": inbox.title},
            using_db=conn,
        )
    return LinkResult(inbox, None, None, await workspace_name(inbox.tenant_id))


# ---- members writing in a topic -------------------------------------------------------------


class TopicOutcome(StrEnum):
    """What became of a message a person wrote in a team inbox group."""

    SENT = "sent"  # queued to the lead
    NOT_A_TOPIC = "not_a_topic"  # not in a linked group, or in a topic of no conversation
    STRANGER = "stranger"  # not a member of the workspace: tell them, once
    IGNORED = "ignored"  # a stranger who was told already
    REFUSED = "refused"  # a member whose role or the lead's channel rules refused it


@dataclass(frozen=True)
class TopicSend:
    """The outcome of ``do_send_from_topic``, with what a reply in the topic needs."""

    outcome: TopicOutcome
    inbox: TeamInbox | None = None
    topic: TeamTopic | None = None
    actor: Actor | None = None
    error: ServiceError | None = None
    message: Message | None = None


async def topic_of_thread(chat_id: int, thread_id: int) -> TeamTopic | None:
    """The conversation topic with this thread id in a group."""
    return await TeamTopic.get_or_none(chat_id=chat_id, message_thread_id=thread_id)


async def _member_actor(telegram_id: int, tenant_id: int) -> Actor | None:
    user = await User.get_or_none(telegram_id=telegram_id)
    if user is None:
        return None
    membership = await Membership.get_or_none(user_id=user.id, tenant_id=tenant_id)
    if membership is None:
        return None
    return Actor(tenant_id=tenant_id, user_id=user.id, role=Role(membership.role))


async def _first_warning(inbox: TeamInbox, telegram_id: int) -> bool:
    """True the first time a stranger writes in the group (remembered on the group row)."""
    async with in_transaction() as conn:
        locked = await TeamInbox.filter(id=inbox.id).using_db(conn).select_for_update().first()
        if locked is None or telegram_id in locked.warned:
            return False
        locked.warned = [*locked.warned, telegram_id][-MAX_WARNED:]
        await locked.save(using_db=conn, update_fields=["warned", "updated_at"])
    return True


async def do_send_from_topic(
    telegram_id: int, chat_id: int, thread_id: int | None, text: str, idempotency_key: str
) -> TopicSend:
    """A person wrote ``text`` in a topic of a team inbox group: send it to the topic's lead.

    The sender acts with their own role in the group's workspace (a viewer is refused, a bidi
    answers only conversations that are theirs or nobody's). Strangers are answered once.
    """
    inbox = await inbox_of_chat(chat_id)
    if inbox is None or thread_id is None:
        return TopicSend(TopicOutcome.NOT_A_TOPIC, inbox)
    topic = await topic_of_thread(chat_id, thread_id)
    if topic is None or topic.tenant_id != inbox.tenant_id:
        return TopicSend(TopicOutcome.NOT_A_TOPIC, inbox)
    actor = await _member_actor(telegram_id, inbox.tenant_id)
    if actor is None:
        first = await _first_warning(inbox, telegram_id)
        return TopicSend(TopicOutcome.STRANGER if first else TopicOutcome.IGNORED, inbox, topic)
    try:
        message = await do_send_message(
            actor, topic.conversation_id, Outgoing(text=text, idempotency_key=idempotency_key)
        )
    except ServiceError as exc:
        return TopicSend(TopicOutcome.REFUSED, inbox, topic, actor, error=exc)
    return TopicSend(TopicOutcome.SENT, inbox, topic, actor, message=message)


# ---- topics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicView:
    """What a conversation's topic shows: the lead, the deal stage, whether it is closed."""

    conversation: Conversation
    lead_name: str
    channel: str
    deal_title: str | None
    stage: str | None
    closed: bool


async def topic_view(conversation_id: int) -> TopicView | None:
    """The lead and deal of a conversation as its topic shows them."""
    conversation = await Conversation.get_or_none(id=conversation_id)
    if conversation is None:
        return None
    contact = await Contact.get_or_none(id=conversation.contact_id)
    lead_name = ((contact.name if contact is not None else "") or conversation.peer_id).strip()
    deal = await _deal_of(conversation.tenant_id, conversation.contact_id)
    stage = await Stage.get_or_none(id=deal.stage_id) if deal is not None else None
    return TopicView(
        conversation=conversation,
        lead_name=lead_name or conversation.peer_id,
        channel=conversation.channel.value,
        deal_title=deal.title if deal is not None else None,
        stage=stage.name if stage is not None else None,
        closed=conversation.status is ConversationStatus.CLOSED,
    )


async def _deal_of(tenant_id: int, contact_id: int) -> Deal | None:
    """The contact's latest open deal, else their latest deal (won or lost)."""
    deals = Deal.filter(tenant_id=tenant_id, contact_id=contact_id)
    open_deal = (
        await deals.filter(stage__kind=StageKind.OPEN, closed_at__isnull=True)
        .order_by("-id")
        .first()
    )
    if open_deal is not None:
        return open_deal
    return await deals.order_by("-id").first()


async def topic_for(conversation_id: int, chat_id: int) -> TeamTopic | None:
    """The topic of a conversation in a group."""
    return await TeamTopic.get_or_none(conversation_id=conversation_id, chat_id=chat_id)


async def record_topic(
    conversation: Conversation, chat_id: int, thread_id: int, name: str
) -> TeamTopic:
    """Remember the topic Telegram created for a conversation (the Bot API cannot list them)."""
    return await TeamTopic.create(
        tenant_id=conversation.tenant_id,
        conversation_id=conversation.id,
        chat_id=chat_id,
        message_thread_id=thread_id,
        name=name[:TOPIC_NAME_MAX],
    )


async def set_topic_name(topic: TeamTopic, name: str) -> None:
    """The topic was renamed."""
    topic.name = name[:TOPIC_NAME_MAX]
    await topic.save(update_fields=["name"])


async def set_topic_closed(topic: TeamTopic, closed: bool) -> None:
    """The topic was closed or reopened."""
    topic.closed = closed
    await topic.save(update_fields=["closed"])


async def forget_topic(topic: TeamTopic) -> None:
    """The topic is gone from the group (deleted by a person): the next post creates another."""
    await TeamTopic.filter(id=topic.id).delete()
