"""A workspace's AI agents: their settings and guardrails, their runs, and their follow-ups.

An agent is typed (SDR, follow-up, qualification, analytics), has a prompt template, an
allow-list of tools, guardrails and optionally its own model. Running one is asynchronous:
``do_queue_run`` stores a queued run and records ``agent.run_queued``; a worker's handler runs
it (agents.runner) and writes the run log back here (``do_start_run``, ``do_finish_run``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.functions import Sum
from tortoise.transactions import in_transaction

from crm.errors import Conflict, NotFound, ValidationFailed
from crm.infrastructure.pagination import Page, paginate_by_id
from crm.models import (
    Agent,
    AgentKind,
    AgentRun,
    AgentRunStatus,
    AiCall,
    AuthorType,
    Contact,
    Conversation,
    Draft,
    FollowUp,
    FollowUpStatus,
    Message,
)
from crm.services.access import Actor
from crm.services.events.catalog import (
    AgentCreated,
    AgentRunFinished,
    AgentRunQueued,
    AgentUpdated,
    FollowUpScheduled,
)
from crm.services.events.recording import record_event, snapshot
from crm.services.references import get_in_tenant

MAX_PROMPT = 8000
MAX_INPUT = 4000
MAX_NAME = 100
# Events that may start an agent by themselves.
TRIGGERS = ("lead_message",)
FINISHED = frozenset(
    {
        AgentRunStatus.SUCCEEDED,
        AgentRunStatus.NEEDS_APPROVAL,
        AgentRunStatus.HANDED_OFF,
        AgentRunStatus.REFUSED,
        AgentRunStatus.FAILED,
    }
)
# The tools an agent may be allowed; their behaviour lives in agents.tools.
TOOLS = (
    "read_contact",
    "read_deal",
    "read_thread",
    "search_memory",
    "add_note",
    "add_tag",
    "move_stage",
    "schedule_follow_up",
    "send_message",
)
READ_TOOLS = ("read_contact", "read_deal", "read_thread", "search_memory")

DEFAULT_TOOLS: dict[AgentKind, tuple[str, ...]] = {
    AgentKind.SDR: (*READ_TOOLS, "add_note", "add_tag", "move_stage", "send_message"),
    AgentKind.FOLLOW_UP: (*READ_TOOLS, "add_note", "schedule_follow_up", "send_message"),
    AgentKind.QUALIFICATION: (*READ_TOOLS, "add_note", "add_tag", "move_stage"),
    AgentKind.ANALYTICS: ("read_contact", "read_deal", "read_thread", "search_memory"),
}
# {business_profile}, {agent_name}, {contact_name}, {instructions} are filled in at run time.
DEFAULT_PROMPTS: dict[AgentKind, str] = {
    AgentKind.SDR: (
        "You are {agent_name}, a sales development rep for this business: {business_profile}\n"
        "Read the thread, answer the lead's latest message helpfully and briefly, and move the "
        "deal forward: propose a call when the lead is interested. {instructions}"
    ),
    AgentKind.FOLLOW_UP: (
        "You are {agent_name}. The lead {contact_name} has gone quiet. Read the thread and write "
        "one short, friendly follow-up that adds something new; if it is too early, schedule a "
        "follow-up instead. {instructions}"
    ),
    AgentKind.QUALIFICATION: (
        "You are {agent_name}. Qualify the lead {contact_name}: budget, authority, need, "
        "timing. Record what you learn as a note, tag the contact, and move the deal to the "
        "stage that fits. Do not write to the lead. {instructions}"
    ),
    AgentKind.ANALYTICS: (
        "You are {agent_name}, an analyst for this business: {business_profile}\n"
        "Answer the operator's question from the records you can read. {instructions}"
    ),
}


@dataclass(frozen=True)
class Guardrails:
    """What an agent may do on its own, and how often (defaults: approval, modest limits)."""

    # Sends without approval, but only in conversations whose AI mode is "autonomous" too.
    autonomous: bool = False
    max_runs_per_hour: int = 30
    max_messages_per_hour: int = 20
    max_messages_per_contact_per_day: int = 2
    # Phrases this agent must never write (on top of the workspace's list).
    banned_phrases: tuple[str, ...] = ()
    # Overrides of the workspace's quiet hours (in the contact's time zone); None: the workspace's.
    quiet_start_hour: int | None = None
    quiet_end_hour: int | None = None
    # Hand the conversation to a human when the lead's intent is less certain than this.
    handoff_confidence: float | None = None
    max_steps: int = 6

    def to_json(self) -> dict[str, Any]:
        """The guardrails as stored on the agent."""
        data = asdict(self)
        data["banned_phrases"] = list(self.banned_phrases)
        return data


_LIMITS = {
    "max_runs_per_hour": (1, 10_000),
    "max_messages_per_hour": (0, 10_000),
    "max_messages_per_contact_per_day": (0, 100),
    "max_steps": (1, 12),
}


def clean_guardrails(values: dict[str, Any], base: Guardrails | None = None) -> Guardrails:
    """Guardrails from user input over ``base``; a bad value names its field."""
    known = {f.name for f in fields(Guardrails)}
    current = (base or Guardrails()).to_json()
    for key, value in values.items():
        name = f"guardrails.{key}"
        if key not in known:
            raise ValidationFailed(name, f"unknown guardrail; one of {', '.join(sorted(known))}")
        if key == "autonomous":
            if not isinstance(value, bool):
                raise ValidationFailed(name, "must be true or false")
        elif key in _LIMITS:
            low, high = _LIMITS[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValidationFailed(name, f"must be a whole number from {low} to {high}")
        elif key in ("quiet_start_hour", "quiet_end_hour"):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 23
            ):
                raise ValidationFailed(name, "must be an hour from 0 to 23, or null")
        elif key == "handoff_confidence":
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0.0 <= float(value) <= 1.0
            ):
                raise ValidationFailed(name, "must be between 0 and 1, or null")
        elif key == "banned_phrases":
            if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                raise ValidationFailed(name, "must be a list of phrases")
            value = [p.strip() for p in value if p.strip()]
        current[key] = value
    current["banned_phrases"] = tuple(current.get("banned_phrases") or ())
    return Guardrails(**current)


def guardrails_of(agent: Agent) -> Guardrails:
    """The agent's stored guardrails (unknown keys from older versions are ignored)."""
    known = {f.name for f in fields(Guardrails)}
    stored: dict[str, Any] = {k: v for k, v in (agent.guardrails or {}).items() if k in known}
    stored["banned_phrases"] = tuple(stored.get("banned_phrases") or ())
    return Guardrails(**stored)


def _clean_tools(tools: Any) -> list[str]:
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        raise ValidationFailed("tools", "must be a list of tool names")
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        raise ValidationFailed("tools", f"unknown tool {unknown[0]!r}; one of {', '.join(TOOLS)}")
    return list(dict.fromkeys(tools))


def _clean_triggers(triggers: Any) -> list[str]:
    if not isinstance(triggers, list) or not all(isinstance(t, str) for t in triggers):
        raise ValidationFailed("triggers", "must be a list of trigger names")
    unknown = [t for t in triggers if t not in TRIGGERS]
    if unknown:
        raise ValidationFailed(
            "triggers", f"unknown trigger {unknown[0]!r}; one of {', '.join(TRIGGERS)}"
        )
    return list(dict.fromkeys(triggers))


def _clean_text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(name, "must not be empty")
    if len(value) > limit:
        raise ValidationFailed(name, f"must be at most {limit} characters")
    return value.strip()


def _clean_agent_values(values: dict[str, Any], agent: Agent | None) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if key == "name":
            clean[key] = _clean_text(value, "name", MAX_NAME)
        elif key == "kind":
            try:
                clean[key] = AgentKind(value)
            except ValueError:
                kinds = ", ".join(k.value for k in AgentKind)
                raise ValidationFailed("kind", f"must be one of {kinds}") from None
        elif key == "prompt_template":
            clean[key] = _clean_text(value, "prompt_template", MAX_PROMPT)
        elif key == "tools":
            clean[key] = _clean_tools(value)
        elif key == "triggers":
            clean[key] = _clean_triggers(value)
        elif key == "guardrails":
            if not isinstance(value, dict):
                raise ValidationFailed("guardrails", "must be an object")
            base = guardrails_of(agent) if agent is not None else None
            clean[key] = clean_guardrails(value, base).to_json()
        elif key == "model":
            if value is not None and (not isinstance(value, str) or len(value) > 200):
                raise ValidationFailed("model", "must be a model name of at most 200 characters")
            clean[key] = value.strip() or None if isinstance(value, str) else None
        elif key == "active":
            if not isinstance(value, bool):
                raise ValidationFailed("active", "must be true or false")
            clean[key] = value
        else:
            raise ValidationFailed(key, "is not a field of an agent")
    return clean


async def _name_taken(tenant_id: int, name: str, agent_id: int | None = None) -> bool:
    query = Agent.filter(tenant_id=tenant_id, name=name)
    if agent_id is not None:
        query = query.exclude(id=agent_id)
    return await query.exists()


async def access_agent(actor: Actor, agent_id: int) -> Agent:
    """An agent of the actor's workspace."""
    return await get_in_tenant(actor, Agent, agent_id, "agent")


async def list_agents(actor: Actor) -> list[Agent]:
    """The workspace's agents, oldest first."""
    actor.require_read()
    return await Agent.filter(tenant_id=actor.tenant_id).order_by("id")


async def do_create_agent(actor: Actor, values: dict[str, Any]) -> Agent:
    """Create an agent (admins); the kind's prompt and tools are the defaults."""
    actor.require_admin()
    if "name" not in values:
        raise ValidationFailed("name", "is required")
    if "kind" not in values:
        raise ValidationFailed("kind", "is required")
    clean = _clean_agent_values(values, None)
    kind: AgentKind = clean["kind"]
    clean.setdefault("prompt_template", DEFAULT_PROMPTS[kind])
    clean.setdefault("tools", list(DEFAULT_TOOLS[kind]))
    clean.setdefault("guardrails", Guardrails().to_json())
    if await _name_taken(actor.tenant_id, clean["name"]):
        raise Conflict("name", f"an agent named {clean['name']!r} exists already")
    try:
        async with in_transaction() as conn:
            agent = await Agent.create(tenant_id=actor.tenant_id, using_db=conn, **clean)
            await record_event(actor, AgentCreated, agent.id, after=snapshot(agent), using_db=conn)
    except IntegrityError:
        raise Conflict("name", f"an agent named {clean['name']!r} exists already") from None
    return agent


async def do_update_agent(actor: Actor, agent_id: int, values: dict[str, Any]) -> Agent:
    """Change an agent's settings (admins); guardrails merge over the stored ones."""
    actor.require_admin()
    agent = await access_agent(actor, agent_id)
    clean = _clean_agent_values(values, agent)
    if "name" in clean and await _name_taken(actor.tenant_id, clean["name"], agent.id):
        raise Conflict("name", f"an agent named {clean['name']!r} exists already")
    async with in_transaction() as conn:
        agent = await Agent.select_for_update().using_db(conn).get(id=agent.id)
        before = snapshot(agent)
        for key, value in clean.items():
            setattr(agent, key, value)
        await agent.save(using_db=conn)
        await record_event(
            actor,
            AgentUpdated,
            agent.id,
            before=before,
            after=snapshot(agent),
            using_db=conn,
        )
    return agent


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


# --- follow-ups ---------------------------------------------------------------------------


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
