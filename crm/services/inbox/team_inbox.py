"""The team inbox: a forum supergroup per workspace where each conversation has a topic.

An owner or admin links a group (``do_link_group``); from then on every lead message is queued
for the conversation's topic, which the operator bot creates on the first one. A stage change
renames the topic, closing the conversation closes it. A member writing in a topic answers the
lead (``do_send_from_topic``) as themselves, with their own role.

Telegram lets a bot post about 20 messages a minute into one group, so nothing is posted
directly: posts are rows of a durable per-group queue (``TeamPost``) that a worker of the
operator bot sends in order, within the group's budget. Exactly one worker sends a group's
posts at a time (a lease on its ``TeamInbox`` row), the budget is counted from the times of the
group's Bot API calls stored on that row, and a post is claimed before it is sent: a restart
loses no queued post, and a post whose send was cut off halfway is never sent again (it is
marked failed, as ``crm.services.inbox.outbound`` does for lead messages).

This module knows Telegram only by numeric ids; rendering and sending live in
``bot/senders/team_inbox.py``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from crm.errors import Conflict, NotFound, ServiceError
from crm.models import (
    Contact,
    Conversation,
    ConversationStatus,
    Deal,
    Event,
    Membership,
    Message,
    Role,
    Stage,
    StageKind,
    TeamInbox,
    TeamPost,
    TeamPostKind,
    TeamPostStatus,
    TeamTopic,
    Tenant,
    User,
)
from crm.services.access import Actor
from crm.services.events.catalog import TeamInboxLinked, TeamInboxUnlinked
from crm.services.events.recording import record_event
from crm.services.inbox.outbound import Outgoing, do_send_message

TOPIC_NAME_MAX = 128
MAX_WARNED = 500
# Call times older than this are dropped from a group's row: no budget window is longer.
CALL_MEMORY = 3600.0
MAX_CALL_TIMES = 200
# Posts that are done are kept this long for inspection, then pruned.
KEEP_DONE = dt.timedelta(days=2)
MAX_ATTEMPTS = 5


class LinkedElsewhere(Conflict):
    """The group already serves another workspace."""

    code = "linked_elsewhere"

    def __init__(self) -> None:
        super().__init__("chat_id", "this group is the team inbox of another workspace")


@dataclass(frozen=True)
class GroupBudget:
    """How many Bot API calls fit into one group per window (Telegram: about 20 a minute)."""

    posts: int = 20
    window: float = 60.0


def budget_wait(times: list[float], budget: GroupBudget, calls: int, now: float) -> float:
    """Seconds to wait until ``calls`` more calls fit the budget, given the recent call times."""
    calls = max(1, min(calls, budget.posts))
    recent = sorted(t for t in times if t > now - budget.window)
    excess = len(recent) + calls - budget.posts
    if excess <= 0:
        return 0.0
    return max(0.0, recent[excess - 1] + budget.window - now)


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
                    await _cancel_pending(inbox.chat_id, conn)
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
        await _cancel_pending(inbox.chat_id, conn)
        await inbox.delete(using_db=conn)
        await record_event(
            actor,
            TeamInboxUnlinked,
            inbox.id,
            before={"chat_id": inbox.chat_id, "title": inbox.title},
            using_db=conn,
        )
    return LinkResult(inbox, None, None, await workspace_name(inbox.tenant_id))


async def _cancel_pending(chat_id: int, conn: BaseDBAsyncClient) -> int:
    return await (
        TeamPost.filter(chat_id=chat_id, status=TeamPostStatus.PENDING)
        .using_db(conn)
        .update(status=TeamPostStatus.CANCELLED, done_at=dt.datetime.now(dt.UTC))
    )


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


# ---- queueing posts -------------------------------------------------------------------------


async def _create_post(**fields: Any) -> TeamPost | None:
    """Queue a post; None when the same post (same dedupe key or lead message) is queued."""
    try:
        return await TeamPost.create(**fields)
    except IntegrityError:
        return None


async def enqueue_lead_message(event: Event) -> TeamPost | None:
    """A ``message.received`` event: queue the lead message for its conversation's topic."""
    if event.entity_id is None:
        return None
    inbox = await TeamInbox.get_or_none(tenant_id=event.tenant_id)
    if inbox is None or event.created_at < inbox.linked_at:
        return None  # not linked, or the lead wrote before the group was
    message = await Message.get_or_none(id=event.entity_id, tenant_id=event.tenant_id)
    if message is None:
        return None
    return await _create_post(
        tenant_id=event.tenant_id,
        chat_id=inbox.chat_id,
        kind=TeamPostKind.MESSAGE,
        conversation_id=message.conversation_id,
        lead_message_id=message.id,
        dedupe_key=f"e:{event.id}",
    )


async def _has_topic_or_pending(chat_id: int, conversation_id: int) -> bool:
    if await TeamTopic.exists(chat_id=chat_id, conversation_id=conversation_id):
        return True
    return await TeamPost.exists(
        chat_id=chat_id,
        conversation_id=conversation_id,
        kind=TeamPostKind.MESSAGE,
        status__in=[TeamPostStatus.PENDING, TeamPostStatus.SENDING],
    )


async def enqueue_deal_change(event: Event) -> list[TeamPost]:
    """A deal created or moved: queue a rename of the topics of its contact's conversations."""
    inbox = await TeamInbox.get_or_none(tenant_id=event.tenant_id)
    if inbox is None:
        return []
    after: dict[str, Any] = dict(event.after or {})
    contact_id = after.get("contact_id")
    if contact_id is None and event.entity_id is not None:
        deal = await Deal.get_or_none(id=event.entity_id, tenant_id=event.tenant_id)
        contact_id = deal.contact_id if deal is not None else None
    if contact_id is None:
        return []
    conversations = await Conversation.filter(
        tenant_id=event.tenant_id, contact_id=int(contact_id)
    ).only("id")
    posts = []
    for conversation in conversations:
        conversation_id = conversation.id
        if not await _has_topic_or_pending(inbox.chat_id, conversation_id):
            continue
        post = await _create_post(
            tenant_id=event.tenant_id,
            chat_id=inbox.chat_id,
            kind=TeamPostKind.NAME,
            conversation_id=conversation_id,
            dedupe_key=f"e:{event.id}:{conversation_id}",
        )
        if post is not None:
            posts.append(post)
    return posts


async def enqueue_conversation_status(event: Event) -> TeamPost | None:
    """A conversation closed or reopened: queue closing or reopening its topic."""
    if event.entity_id is None:
        return None
    inbox = await TeamInbox.get_or_none(tenant_id=event.tenant_id)
    if inbox is None or not await _has_topic_or_pending(inbox.chat_id, event.entity_id):
        return None
    return await _create_post(
        tenant_id=event.tenant_id,
        chat_id=inbox.chat_id,
        kind=TeamPostKind.STATE,
        conversation_id=event.entity_id,
        dedupe_key=f"e:{event.id}",
    )


async def enqueue_reply(
    topic: TeamTopic, text: str, reply_to_message_id: int | None = None
) -> TeamPost:
    """Queue a short answer of the bot in a topic (already rendered, in the reader's language)."""
    post = await TeamPost.create(
        tenant_id=topic.tenant_id,
        chat_id=topic.chat_id,
        kind=TeamPostKind.REPLY,
        conversation_id=topic.conversation_id,
        payload={
            "text": text,
            "thread_id": topic.message_thread_id,
            "reply_to_message_id": reply_to_message_id,
        },
    )
    return post


# ---- the queue worker -----------------------------------------------------------------------


async def groups_with_pending() -> list[int]:
    """The chat ids of groups with posts waiting."""
    rows = await TeamPost.filter(status=TeamPostStatus.PENDING).distinct().values("chat_id")
    return sorted({int(row["chat_id"]) for row in rows})


async def take_lease(chat_id: int, owner: str, now: dt.datetime, seconds: float) -> bool:
    """Become (or stay) the one worker sending this group's posts for ``seconds``.

    A group that is no longer linked gets its leftover posts cancelled instead.
    """
    taken = (
        await TeamInbox.filter(chat_id=chat_id)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner))
        .update(lease_owner=owner, lease_until=now + dt.timedelta(seconds=seconds))
    )
    if taken:
        return True
    if not await TeamInbox.exists(chat_id=chat_id):
        await TeamPost.filter(chat_id=chat_id, status=TeamPostStatus.PENDING).update(
            status=TeamPostStatus.CANCELLED, done_at=now
        )
    return False


async def release_lease(chat_id: int, owner: str) -> None:
    """Let another worker take the group."""
    await TeamInbox.filter(chat_id=chat_id, lease_owner=owner).update(
        lease_owner=None, lease_until=None
    )


async def fail_abandoned(chat_id: int) -> int:
    """Mark failed the posts a stopped worker left half-sent; the lease holder calls this.

    Whether Telegram got such a post is unknown, and sending it again could post it twice.
    """
    return await TeamPost.filter(chat_id=chat_id, status=TeamPostStatus.SENDING).update(
        status=TeamPostStatus.FAILED,
        error="delivery state unknown: the worker stopped while sending",
        done_at=dt.datetime.now(dt.UTC),
    )


async def next_post(chat_id: int) -> TeamPost | None:
    """The oldest waiting post of a group; of waiting lead messages, the one the lead wrote first.

    Event handlers run concurrently, so two lead messages may be queued in either order;
    the lead's own order wins.
    """
    waiting = TeamPost.filter(chat_id=chat_id, status=TeamPostStatus.PENDING)
    post = await waiting.order_by("id").first()
    if post is None or post.kind is not TeamPostKind.MESSAGE:
        return post
    earlier = (
        await waiting.filter(kind=TeamPostKind.MESSAGE, lead_message_id__lt=post.lead_message_id)
        .order_by("lead_message_id")
        .first()
    )
    return earlier or post


async def backlog(chat_id: int) -> int:
    """How many posts of a group are waiting."""
    return await TeamPost.filter(chat_id=chat_id, status=TeamPostStatus.PENDING).count()


async def start_lag(chat_id: int) -> bool:
    """Mark the start of a lag episode; True only for the caller that started it."""
    return bool(await TeamInbox.filter(chat_id=chat_id, lagging=False).update(lagging=True))


async def end_lag(chat_id: int) -> None:
    """The queue of the group ran empty: the next lag is a new episode."""
    await TeamInbox.filter(chat_id=chat_id, lagging=True).update(lagging=False)


async def call_times(chat_id: int) -> list[float]:
    """Unix times of the recent Bot API calls into the group."""
    inbox = await TeamInbox.get_or_none(chat_id=chat_id)
    return [float(t) for t in inbox.call_times] if inbox is not None else []


async def record_call(chat_id: int, at: float) -> None:
    """Count one Bot API call into the group against its budget."""
    async with in_transaction() as conn:
        inbox = await TeamInbox.filter(chat_id=chat_id).using_db(conn).select_for_update().first()
        if inbox is None:
            return
        recent = [float(t) for t in inbox.call_times if float(t) > at - CALL_MEMORY]
        inbox.call_times = [*recent, at][-MAX_CALL_TIMES:]
        await inbox.save(using_db=conn, update_fields=["call_times", "updated_at"])


async def claim_post(post_id: int) -> bool:
    """Take a waiting post for sending; False when it is no longer waiting."""
    claimed = await TeamPost.filter(id=post_id, status=TeamPostStatus.PENDING).update(
        status=TeamPostStatus.SENDING, claimed_at=dt.datetime.now(dt.UTC)
    )
    return claimed == 1


async def finish_post(
    post_id: int,
    status: TeamPostStatus,
    *,
    telegram_message_id: int | None = None,
    error: str | None = None,
) -> None:
    """Record how a claimed post ended: sent, skipped (nothing to do) or failed."""
    await TeamPost.filter(id=post_id).update(
        status=status,
        telegram_message_id=telegram_message_id,
        error=error[:500] if error else None,
        done_at=dt.datetime.now(dt.UTC),
    )


async def release_post(post_id: int, error: str | None = None) -> bool:
    """Put a claimed post back in the queue (Telegram did not take it); False once it gave up.

    A post that came back ``MAX_ATTEMPTS`` times is marked failed instead.
    """
    post = await TeamPost.get_or_none(id=post_id)
    if post is None:
        return False
    attempts = post.attempts + 1
    if error is not None and attempts >= MAX_ATTEMPTS:
        await TeamPost.filter(id=post_id).update(
            status=TeamPostStatus.FAILED,
            attempts=attempts,
            error=error[:500],
            done_at=dt.datetime.now(dt.UTC),
        )
        return False
    await TeamPost.filter(id=post_id, status=TeamPostStatus.SENDING).update(
        status=TeamPostStatus.PENDING,
        attempts=attempts if error is not None else post.attempts,
        error=error[:500] if error else None,
        claimed_at=None,
    )
    return True


async def prune_posts(now: dt.datetime | None = None) -> int:
    """Delete posts done more than ``KEEP_DONE`` ago."""
    before = (now or dt.datetime.now(dt.UTC)) - KEEP_DONE
    return await TeamPost.filter(
        status__in=[
            TeamPostStatus.SENT,
            TeamPostStatus.SKIPPED,
            TeamPostStatus.FAILED,
            TeamPostStatus.CANCELLED,
        ],
        done_at__lt=before,
    ).delete()


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


async def lead_message_of(post: TeamPost) -> Message | None:
    """The lead message a post copies into its topic."""
    if post.lead_message_id is None:
        return None
    return await Message.get_or_none(id=post.lead_message_id, tenant_id=post.tenant_id)


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
