"""The runs of AI agents: queueing one, a worker's claim and log of it, and the rate limits.

Running an agent is asynchronous: ``do_queue_run`` stores a queued run and records
``agent.run_queued``; a worker's handler runs it (agents.runner) and writes the run log back
here (``do_start_run``, ``do_finish_run``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.functions import Sum
from tortoise.transactions import in_transaction

from crm.errors import Conflict, NotFound, ValidationFailed
from crm.infrastructure.pagination import Page, paginate_by_id
from crm.models import (
    AgentRun,
    AgentRunStatus,
    AiCall,
    AuthorType,
    Contact,
    Conversation,
    Draft,
    Message,
)
from crm.services.access import Actor
from crm.services.ai.agents import access_agent
from crm.services.events.catalog import AgentRunFinished, AgentRunQueued
from crm.services.events.recording import record_event
from crm.services.references import get_in_tenant

MAX_INPUT = 4000
# The statuses a run ends in.
FINISHED = frozenset(
    {
        AgentRunStatus.SUCCEEDED,
        AgentRunStatus.NEEDS_APPROVAL,
        AgentRunStatus.HANDED_OFF,
        AgentRunStatus.REFUSED,
        AgentRunStatus.FAILED,
    }
)


# --- runs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRequest:
    """What to run an agent on: a conversation (or just a contact), and extra instructions."""

    conversation_id: int | None = None
    contact_id: int | None = None
    instructions: str = ""
    trigger: str = "manual"
    trigger_key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


async def _target(actor: Actor, request: RunRequest) -> tuple[int | None, int | None]:
    conversation_id, contact_id = request.conversation_id, request.contact_id
    if conversation_id is not None:
        conversation = await Conversation.get_or_none(id=conversation_id, tenant_id=actor.tenant_id)
        if conversation is None:
            raise NotFound("conversation", conversation_id)
        if contact_id is not None and contact_id != conversation.contact_id:
            raise ValidationFailed("contact_id", "is not the lead of that conversation")
        contact_id = conversation.contact_id
    elif contact_id is not None:
        if not await Contact.filter(id=contact_id, tenant_id=actor.tenant_id).exists():
            raise NotFound("contact", contact_id)
        latest = (
            await Conversation.filter(tenant_id=actor.tenant_id, contact_id=contact_id)
            .order_by("-last_message_at")
            .first()
        )
        conversation_id = latest.id if latest else None
    return conversation_id, contact_id


async def do_queue_run(actor: Actor, agent_id: int, request: RunRequest) -> AgentRun:
    """Queue a run of an agent for a worker; the same ``trigger_key`` queues it only once."""
    if request.trigger == "manual":
        actor.require_write()
    agent = await access_agent(actor, agent_id)
    if not agent.active:
        raise Conflict("agent", "the agent is switched off (active: false)")
    if len(request.instructions) > MAX_INPUT:
        raise ValidationFailed("instructions", f"must be at most {MAX_INPUT} characters")
    conversation_id, contact_id = await _target(actor, request)
    if request.trigger_key is not None:
        existing = await AgentRun.get_or_none(agent_id=agent.id, trigger_key=request.trigger_key)
        if existing is not None:
            return existing
    run_input = {"instructions": request.instructions.strip(), **request.extra}
    try:
        async with in_transaction() as conn:
            run = await AgentRun.create(
                tenant_id=actor.tenant_id,
                agent_id=agent.id,
                conversation_id=conversation_id,
                contact_id=contact_id,
                trigger=request.trigger,
                trigger_key=request.trigger_key,
                input=run_input,
                requested_by_id=actor.user_id,
                using_db=conn,
            )
            await record_event(
                actor,
                AgentRunQueued,
                run.id,
                after={"agent_id": agent.id, "trigger": request.trigger},
                using_db=conn,
            )
    except IntegrityError:
        existing = await AgentRun.get_or_none(agent_id=agent.id, trigger_key=request.trigger_key)
        if existing is None:
            raise
        return existing
    return run


async def access_run(actor: Actor, run_id: int) -> AgentRun:
    """A run of the actor's workspace."""
    return await get_in_tenant(actor, AgentRun, run_id, "agent run")


async def list_runs(
    actor: Actor, agent_id: int, *, cursor: str | None = None, limit: int = 50
) -> Page[AgentRun]:
    """An agent's runs, newest first."""
    agent = await access_agent(actor, agent_id)
    return await paginate_by_id(AgentRun.filter(agent_id=agent.id), cursor, limit, descending=True)


async def do_start_run(run_id: int) -> AgentRun | None:
    """Claim a queued run for this worker; None when another delivery already took it."""
    now = dt.datetime.now(dt.UTC)
    claimed = await AgentRun.filter(id=run_id, status=AgentRunStatus.QUEUED).update(
        status=AgentRunStatus.RUNNING, started_at=now
    )
    if not claimed:
        return None
    return await AgentRun.get(id=run_id)


@dataclass(frozen=True)
class RunResult:
    """How a run ended: its status, log and counts."""

    status: AgentRunStatus
    outcome: str
    output: str = ""
    tool_calls: tuple[dict[str, Any], ...] = ()
    messages_sent: int = 0
    drafts_created: int = 0
    latency_ms: float = 0.0


async def do_finish_run(run: AgentRun, result: RunResult) -> AgentRun:
    """Write a run's log and totals (tokens and cost summed from its accounted model calls)."""
    totals = (
        await AiCall.filter(agent_run_id=run.id)
        .annotate(
            prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"), cost=Sum("cost_usd")
        )
        .values("prompt", "completion", "cost")
    )
    calls = await AiCall.filter(agent_run_id=run.id).count()
    total = totals[0] if totals else {}
    run.status = result.status
    run.outcome = result.outcome[:500]
    run.output = result.output
    run.tool_calls = list(result.tool_calls)
    run.messages_sent = result.messages_sent
    run.drafts_created = result.drafts_created
    run.latency_ms = result.latency_ms
    run.prompt_tokens = int(total.get("prompt") or 0)
    run.completion_tokens = int(total.get("completion") or 0)
    run.cost_usd = float(total.get("cost") or 0.0)
    run.model_calls = calls
    run.finished_at = dt.datetime.now(dt.UTC)
    async with in_transaction() as conn:
        await run.save(using_db=conn)
        await record_event(
            Actor.system(run.tenant_id),
            AgentRunFinished,
            run.id,
            after={
                "agent_id": run.agent_id,
                "status": run.status.value,
                "conversation_id": run.conversation_id,
                "messages_sent": run.messages_sent,
                "drafts_created": run.drafts_created,
            },
            using_db=conn,
        )
    return run


# --- rate limits --------------------------------------------------------------------------


async def runs_in_last_hour(agent_id: int, now: dt.datetime, excluding: int) -> int:
    """How many runs of an agent started in the hour before ``now`` (one run excluded)."""
    since = now - dt.timedelta(hours=1)
    return (
        await AgentRun.filter(agent_id=agent_id, started_at__gte=since)
        .exclude(id=excluding)
        .count()
    )


async def agent_messages_in_last_hour(agent_id: int, now: dt.datetime) -> int:
    """Messages an agent sent or proposed (drafts) in the hour before ``now``."""
    since = now - dt.timedelta(hours=1)
    counts = await AgentRun.filter(agent_id=agent_id, created_at__gte=since).values_list(
        "messages_sent", "drafts_created"
    )
    return sum(int(sent) + int(drafted) for sent, drafted in counts)


async def ai_messages_to_contact_today(contact_id: int, now: dt.datetime) -> int:
    """Messages any agent sent to a contact, plus agent drafts for it, in the last 24 hours."""
    since = now - dt.timedelta(days=1)
    conversation_ids = list(
        await Conversation.filter(contact_id=contact_id).values_list("id", flat=True)
    )
    sent = await Message.filter(
        conversation_id__in=conversation_ids, author_type=AuthorType.AGENT, created_at__gte=since
    ).count()
    drafted = await Draft.filter(
        conversation_id__in=conversation_ids, agent_id__isnull=False, created_at__gte=since
    ).count()
    return sent + drafted
