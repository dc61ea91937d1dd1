"""A workspace's AI agents: their settings and guardrails.

An agent is typed (SDR, follow-up, qualification, analytics), has a prompt template, an
allow-list of tools, guardrails and optionally its own model. Its runs are in
``crm.services.ai.agent_runs``, the follow-ups it schedules in ``crm.services.ai.follow_ups``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from crm.errors import Conflict, ValidationFailed
from crm.models import Agent, AgentKind
from crm.services.access import Actor
from crm.services.events.catalog import AgentCreated, AgentUpdated
from crm.services.events.recording import record_event, snapshot
from crm.services.references import get_in_tenant

MAX_PROMPT = 8000
MAX_NAME = 100
# Events that may start an agent by themselves.
TRIGGERS = ("lead_message",)
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
