"""Reply drafts: what the AI proposed in a conversation and what the operator decided.

Every decision is recorded on the draft (sent as written, sent edited, rejected, regenerated),
so acceptance, edit and rejection rates are product metrics (``draft_metrics``). Sending goes
through ``do_send_message``: the same role, opt-out and 24-hour-window rules as any reply.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tortoise.transactions import in_transaction

from crm.errors import Conflict, NotFound, ValidationFailed
from crm.models import Conversation, Direction, Draft, DraftSource, DraftStatus, Message
from crm.services.access import Actor
from crm.services.events.catalog import DRAFT_DECISIONS, DraftCreated
from crm.services.events.recording import record_event
from crm.services.inbox.outbound import MAX_TEXT, Outgoing, check_may_work_on, do_send_message
from crm.services.references import lock_in_tenant

DECIDED = (DraftStatus.SENT, DraftStatus.EDITED, DraftStatus.REJECTED)
# The idempotency key of a sent draft's message: "draft-<id>".
DRAFT_KEY_PREFIX = "draft-"


@dataclass(frozen=True)
class ProposedDraft:
    """What a drafter proposes: text, who wrote it, why, and the passages it used."""

    text: str
    source: DraftSource
    rationale: str
    citations: tuple[dict[str, Any], ...] = ()
    model: str | None = None


async def access_conversation_to_draft(actor: Actor, conversation_id: int) -> Conversation:
    """A conversation the actor may answer (drafting is the first step of answering)."""
    conversation = await Conversation.get_or_none(id=conversation_id, tenant_id=actor.tenant_id)
    if conversation is None:
        raise NotFound("conversation", conversation_id)
    check_may_work_on(actor, conversation)
    return conversation


async def last_lead_message(conversation_id: int) -> Message | None:
    """The lead's latest message in a conversation: the one a draft answers."""
    return (
        await Message.filter(conversation_id=conversation_id, direction=Direction.IN)
        .order_by("-id")
        .first()
    )


async def do_create_draft(
    actor: Actor,
    conversation: Conversation,
    proposed: ProposedDraft,
    lead_message_id: int | None,
    agent_id: int | None = None,
) -> Draft:
    """Store a pending draft for the operator to decide on."""
    text = proposed.text.strip()
    if not text:
        raise ValidationFailed("text", "the drafter produced an empty draft")
    async with in_transaction() as conn:
        draft = await Draft.create(
            tenant_id=actor.tenant_id,
            conversation_id=conversation.id,
            lead_message_id=lead_message_id,
            text=text[:MAX_TEXT],
            source=proposed.source,
            rationale=proposed.rationale,
            citations=list(proposed.citations),
            model=proposed.model,
            agent_id=agent_id,
            requested_by_id=actor.user_id,
            using_db=conn,
        )
        await record_event(
            actor,
            DraftCreated,
            draft.id,
            after={
                "conversation_id": conversation.id,
                "source": proposed.source.value,
                "agent_id": agent_id,
            },
            using_db=conn,
        )
    return draft


class DraftDecided(Conflict):
    """A draft that was already sent, edited, rejected or regenerated (a double tap, say)."""

    code = "draft_decided"

    def __init__(self, status: DraftStatus) -> None:
        super().__init__("status", f"this draft was already decided: {status.value}")
        self.decided = status


async def access_draft(actor: Actor, draft_id: int) -> Draft:
    """A draft of the actor's workspace."""
    actor.require_read()
    draft = await Draft.get_or_none(id=draft_id, tenant_id=actor.tenant_id)
    if draft is None:
        raise NotFound("draft", draft_id)
    return draft


async def _decide(
    actor: Actor, draft_id: int, status: DraftStatus, final_text: str | None = None
) -> Draft:
    async with in_transaction() as conn:
        draft = await lock_in_tenant(actor, Draft, draft_id, "draft", conn)
        if draft.status is not DraftStatus.PENDING:
            raise DraftDecided(draft.status)
        conversation = await Conversation.filter(id=draft.conversation_id).using_db(conn).get()
        check_may_work_on(actor, conversation)
        draft.status = status
        draft.final_text = final_text  # type: ignore[assignment]  # a nullable column
        draft.decided_by_id = actor.user_id
        draft.decided_at = dt.datetime.now(dt.UTC)
        await draft.save(using_db=conn)
        await record_event(
            actor,
            DRAFT_DECISIONS[status],
            draft.id,
            after={"conversation_id": draft.conversation_id, "status": status.value},
            using_db=conn,
        )
    return draft


async def do_send_draft(actor: Actor, draft_id: int, text: str | None = None) -> Draft:
    """Send a pending draft, as written or with the operator's corrections (an edit).

    The message is queued first, with the draft's id as idempotency key, so a repeated call
    (a double tap) sends once; the draft is then marked sent or edited.
    """
    draft = await access_draft(actor, draft_id)
    if draft.status is not DraftStatus.PENDING:
        raise DraftDecided(draft.status)
    final = draft.text if text is None else text.strip()
    if not final:
        raise ValidationFailed("text", "must not be empty")
    edited = final != draft.text
    message = await do_send_message(
        actor,
        draft.conversation_id,
        Outgoing(text=final, idempotency_key=f"{DRAFT_KEY_PREFIX}{draft.id}"),
    )
    decided = await _decide(
        actor, draft.id, DraftStatus.EDITED if edited else DraftStatus.SENT, final
    )
    decided.sent_message_id = message.id
    await decided.save(update_fields=["sent_message_id"])
    return decided


async def do_reject_draft(actor: Actor, draft_id: int) -> Draft:
    """The operator throws a draft away."""
    return await _decide(actor, draft_id, DraftStatus.REJECTED)


async def do_supersede_draft(actor: Actor, draft_id: int) -> Draft:
    """The operator asked for another draft instead of this one."""
    return await _decide(actor, draft_id, DraftStatus.REGENERATED)


async def offered_before(draft: Draft) -> list[str]:
    """Texts proposed and regenerated away for the same lead message as ``draft``, oldest first.

    Regenerate asks the drafter for something other than these.
    """
    rows = (
        await Draft.filter(
            tenant_id=draft.tenant_id,
            conversation_id=draft.conversation_id,
            lead_message_id=draft.lead_message_id,
            status=DraftStatus.REGENERATED,
        )
        .order_by("id")
        .values_list("text", flat=True)
    )
    return [str(text) for text in rows]


@dataclass(frozen=True)
class DraftMetrics:
    """How operators treat drafts: counts by status and rates over the decided ones."""

    total: int
    pending: int
    sent: int
    edited: int
    rejected: int
    regenerated: int
    by_source: dict[str, dict[str, int]]

    @property
    def decided(self) -> int:
        """Drafts sent, edited or rejected (regenerated ones count through their successor)."""
        return self.sent + self.edited + self.rejected

    def rate(self, count: int) -> float | None:
        """``count`` over the decided drafts; None before any decision."""
        return round(count / self.decided, 4) if self.decided else None


async def draft_metrics(actor: Actor, since: dt.datetime | None = None) -> DraftMetrics:
    """Acceptance, edit and rejection counts of the workspace's drafts."""
    actor.require_read()
    query = Draft.filter(tenant_id=actor.tenant_id)
    if since is not None:
        query = query.filter(created_at__gte=since)
    rows = await query.values_list("status", "source")
    counts: Counter[str] = Counter()
    by_source: dict[str, Counter[str]] = {}
    for status, source in rows:
        status_value = getattr(status, "value", status)
        source_value = getattr(source, "value", source)
        counts[status_value] += 1
        by_source.setdefault(source_value, Counter())[status_value] += 1
    return DraftMetrics(
        total=len(rows),
        pending=counts[DraftStatus.PENDING.value],
        sent=counts[DraftStatus.SENT.value],
        edited=counts[DraftStatus.EDITED.value],
        rejected=counts[DraftStatus.REJECTED.value],
        regenerated=counts[DraftStatus.REGENERATED.value],
        by_source={k: dict(v) for k, v in by_source.items()},
    )
