"""The team inbox's post queue: queued posts, the worker's lease and each group's send budget.

Telegram lets a bot post about 20 messages a minute into one group, so nothing is posted
directly: posts are rows of a durable per-group queue (``TeamPost``) that a worker of the
operator bot sends in order, within the group's budget. Exactly one worker sends a group's
posts at a time (a lease on its ``TeamInbox`` row), the budget is counted from the times of the
group's Bot API calls stored on that row, and a post is claimed before it is sent: a restart
loses no queued post, and a post whose send was cut off halfway is never sent again (it is
marked failed, as ``crm.services.inbox.outbound`` does for lead messages).

Linking groups and their topics live in ``crm.services.inbox.team_inbox``; rendering and sending
in ``bot/senders/team_inbox.py``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from crm.models import (
    Conversation,
    Deal,
    Event,
    Message,
    TeamInbox,
    TeamPost,
    TeamPostKind,
    TeamPostStatus,
    TeamTopic,
)

# Call times older than this are dropped from a group's row: no budget window is longer.
CALL_MEMORY = 3600.0
MAX_CALL_TIMES = 200
# Posts that are done are kept this long for inspection, then pruned.
KEEP_DONE = dt.timedelta(days=2)
MAX_ATTEMPTS = 5


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


async def cancel_pending(chat_id: int, conn: BaseDBAsyncClient) -> int:
    """Cancel the posts still waiting for a group (it was unlinked or replaced)."""
    return await (
        TeamPost.filter(chat_id=chat_id, status=TeamPostStatus.PENDING)
        .using_db(conn)
        .update(status=TeamPostStatus.CANCELLED, done_at=dt.datetime.now(dt.UTC))
    )


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


async def lead_message_of(post: TeamPost) -> Message | None:
    """The lead message a post copies into its topic."""
    if post.lead_message_id is None:
        return None
    return await Message.get_or_none(id=post.lead_message_id, tenant_id=post.tenant_id)
