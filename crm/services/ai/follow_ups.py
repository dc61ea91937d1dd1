"""Follow-ups: an agent asks to run again on its conversation later; due ones are queued."""

from __future__ import annotations

import datetime as dt

from tortoise.transactions import in_transaction

from crm.errors import Conflict, NotFound, ValidationFailed
from crm.models import AgentRun, Conversation, FollowUp, FollowUpStatus
from crm.services.access import Actor
from crm.services.ai.agent_runs import RunRequest, do_queue_run
from crm.services.events.catalog import FollowUpScheduled
from crm.services.events.recording import record_event


async def do_schedule_follow_up(run: AgentRun, due_at: dt.datetime, note: str) -> FollowUp:
    """An agent asks to run again on its conversation at ``due_at``."""
    if run.conversation_id is None:
        raise ValidationFailed("conversation", "a follow-up needs a conversation")
    if due_at.tzinfo is None:
        raise ValidationFailed("at", "must carry a time zone")
    async with in_transaction() as conn:
        follow_up = await FollowUp.create(
            tenant_id=run.tenant_id,
            agent_id=run.agent_id,
            conversation_id=run.conversation_id,
            due_at=due_at,
            note=note.strip()[:500],
            scheduled_by_run_id=run.id,
            using_db=conn,
        )
        await record_event(
            Actor.system(run.tenant_id),
            FollowUpScheduled,
            follow_up.id,
            after={"conversation_id": run.conversation_id, "due_at": due_at.isoformat()},
            using_db=conn,
        )
    return follow_up


async def list_follow_ups(actor: Actor, conversation_id: int) -> list[FollowUp]:
    """The follow-ups scheduled in a conversation, soonest first."""
    actor.require_read()
    if not await Conversation.filter(id=conversation_id, tenant_id=actor.tenant_id).exists():
        raise NotFound("conversation", conversation_id)
    return await FollowUp.filter(
        tenant_id=actor.tenant_id, conversation_id=conversation_id
    ).order_by("due_at")


async def do_run_due_follow_ups(now: dt.datetime | None = None, limit: int = 100) -> list[AgentRun]:
    """Queue the agent run of every follow-up that fell due; each one runs once."""
    now = now or dt.datetime.now(dt.UTC)
    queued: list[AgentRun] = []
    due = (
        await FollowUp.filter(status=FollowUpStatus.PENDING, due_at__lte=now)
        .order_by("due_at")
        .limit(limit)
    )
    for follow_up in due:
        # The status flip is the claim: two processes sweeping at once queue it once.
        claimed = await FollowUp.filter(id=follow_up.id, status=FollowUpStatus.PENDING).update(
            status=FollowUpStatus.DONE
        )
        if not claimed:
            continue
        actor = Actor.system(follow_up.tenant_id)
        try:
            run = await do_queue_run(
                actor,
                follow_up.agent_id,
                RunRequest(
                    conversation_id=follow_up.conversation_id,
                    instructions=follow_up.note,
                    trigger="follow_up",
                    trigger_key=f"follow_up:{follow_up.id}",
                    extra={"follow_up_id": follow_up.id},
                ),
            )
        except (Conflict, NotFound):
            # The agent was switched off or the conversation is gone: nothing to follow up.
            await FollowUp.filter(id=follow_up.id).update(status=FollowUpStatus.CANCELLED)
            continue
        await FollowUp.filter(id=follow_up.id).update(run_id=run.id)
        queued.append(run)
    return queued
