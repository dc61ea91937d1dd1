"""The tools an agent may call, each bound to the run's own conversation and contact.

The model never names a record: every tool works on the lead the run is about, so neither a
confused model nor a prompt injection reaches another lead or another workspace. Writing tools
go through the CRM services as the agent actor (audited as ``agent``). ``send_message`` is
where the guardrails bite: banned phrases, rate limits, opt-out and the 24-hour window, quiet
hours, and approval unless both the agent and the conversation are autonomous.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agents.draft_context import lead_facts
from agents.guardrails import banned_phrase_in, in_quiet_hours
from agents.llm import ToolSpec
from agents.memory import Memory
from crm.errors import Conflict, ServiceError, ValidationFailed
from crm.models import (
    Agent,
    AgentRun,
    AiSettings,
    Contact,
    Conversation,
    Deal,
    DraftSource,
    Message,
    Stage,
)
from crm.services.access import Actor
from crm.services.ai import agent_runs, drafts, follow_ups
from crm.services.ai import modes as ai_modes
from crm.services.ai.agents import Guardrails
from crm.services.ai.drafts import ProposedDraft
from crm.services.ai.intents import agent_actor
from crm.services.contacts import notes, tags
from crm.services.contacts.contacts import tag_names_of
from crm.services.inbox.outbound import MAX_TEXT, Outgoing, check_send_rules, do_send_message
from crm.services.pipeline import deal_cards, deals

THREAD_MESSAGES = 20
SEARCH_RESULTS = 5
MAX_FOLLOW_UP_HOURS = 24 * 30
HAND_OFF = "hand_off"  # always offered: giving the lead to a human is never forbidden


class ToolRefused(Exception):
    """A guardrail stopped a tool call; the model is told why and the run log records it."""


@dataclass
class ToolContext:
    """One run's world: its agent, guardrails, lead, and what it did so far."""

    run: AgentRun
    agent: Agent
    guardrails: Guardrails
    settings: AiSettings
    conversation: Conversation | None
    contact: Contact | None
    memory: Memory
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    messages_sent: int = 0
    drafts_created: int = 0
    handed_off: bool = False
    effects: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    @property
    def actor(self) -> Actor:
        """The agent acting in the run's workspace."""
        return agent_actor(self.run.tenant_id)

    def need_conversation(self) -> Conversation:
        """The run's conversation, or a refusal the model can read."""
        if self.conversation is None:
            raise ToolRefused("this run has no conversation")
        return self.conversation

    def need_contact(self) -> Contact:
        """The run's contact, or a refusal the model can read."""
        if self.contact is None:
            raise ToolRefused("this run has no contact")
        return self.contact


ToolFunction = Callable[[ToolContext, dict[str, Any]], Awaitable[dict[str, Any]]]


def _text_arg(args: dict[str, Any], name: str, limit: int) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(name, "must be a non-empty string")
    if len(value) > limit:
        raise ValidationFailed(name, f"must be at most {limit} characters")
    return value.strip()


async def open_deal_of(ctx: ToolContext) -> Deal | None:
    """The lead's latest open deal, with its stage."""
    if ctx.contact is None:
        return None
    return await deal_cards.latest_open_deal(ctx.actor, ctx.contact.id)


async def _read_contact(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    contact = ctx.need_contact()
    facts = lead_facts(contact, None)["contact"]
    facts["tags"] = (await tag_names_of([contact.id])).get(contact.id, [])
    return facts


async def _read_deal(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    deal = await open_deal_of(ctx)
    if deal is None:
        return {"deal": None}
    stages = await Stage.filter(pipeline_id=deal.pipeline_id).order_by("position")
    return {**lead_facts(None, deal), "stages": [s.name for s in stages]}


def thread_lines(thread: list[Message]) -> list[dict[str, Any]]:
    """A thread as the model reads it: who wrote what, when."""
    who = {"in": "lead", "out": "us", "note": "team_note"}
    return [
        {
            "from": who.get(m.direction.value, m.direction.value),
            "text": m.text,
            "at": m.created_at.isoformat() if m.created_at else None,
        }
        for m in thread
    ]


async def _read_thread(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    conversation = ctx.need_conversation()
    thread = list(
        reversed(
            await Message.filter(conversation_id=conversation.id)
            .order_by("-id")
            .limit(THREAD_MESSAGES)
        )
    )
    return {"channel": conversation.channel.value, "messages": thread_lines(thread)}


async def _search_memory(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    query = _text_arg(args, "query", 500)
    passages = await ctx.memory.search(ctx.run.tenant_id, query, SEARCH_RESULTS)
    return {
        "results": [
            {
                "text": p.text[:400],
                "conversation_id": p.chunk.conversation_id,
                "source": p.chunk.source.value,
            }
            for p in passages
        ]
    }


async def _add_note(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    contact = ctx.need_contact()
    body = _text_arg(args, "text", 4000)
    note = await notes.do_create_note(
        ctx.actor, f"[{ctx.agent.name}] {body}", contact_id=contact.id
    )
    ctx.effects.append("note")
    return {"note_id": note.id}


async def _add_tag(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    contact = ctx.need_contact()
    name = _text_arg(args, "name", 64)
    result = await tags.do_tag_contact(ctx.actor, contact.id, [name])
    ctx.effects.append(f"tag:{name}")
    return {"tags": [view.tag.name for view in result]}


async def _move_stage(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    wanted = _text_arg(args, "stage", 100)
    deal = await open_deal_of(ctx)
    if deal is None:
        raise ToolRefused("the lead has no open deal to move")
    stages = await Stage.filter(pipeline_id=deal.pipeline_id).order_by("position")
    stage = next((s for s in stages if s.name.casefold() == wanted.casefold()), None)
    if stage is None:
        names = ", ".join(s.name for s in stages)
        raise ValidationFailed(
            "stage", f"no stage {wanted!r} in the deal's pipeline; one of {names}"
        )
    moved = await deals.do_move_deal(ctx.actor, deal.id, stage.id)
    ctx.effects.append(f"stage:{stage.name}")
    return {"deal_id": moved.id, "stage": stage.name}


def _due_at(ctx: ToolContext, args: dict[str, Any]) -> dt.datetime:
    if "at" in args:
        try:
            due = dt.datetime.fromisoformat(str(args["at"]))
        except ValueError:
            raise ValidationFailed("at", "must be an ISO 8601 time with a zone") from None
        if due.tzinfo is None:
            raise ValidationFailed("at", "must carry a time zone, e.g. 2026-12-07T10:00:00+01:00")
    else:
        hours = args.get("in_hours")
        if isinstance(hours, bool) or not isinstance(hours, int | float):
            raise ValidationFailed("in_hours", "give in_hours (a number) or at (a time)")
        due = ctx.now + dt.timedelta(hours=float(hours))
    if due <= ctx.now:
        raise ValidationFailed("at", "must be in the future")
    if due > ctx.now + dt.timedelta(hours=MAX_FOLLOW_UP_HOURS):
        raise ValidationFailed("at", f"must be within {MAX_FOLLOW_UP_HOURS // 24} days")
    return due


async def _schedule_follow_up(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    ctx.need_conversation()
    due = _due_at(ctx, args)
    note = str(args.get("note") or "")[:500]
    follow_up = await follow_ups.do_schedule_follow_up(ctx.run, due, note)
    ctx.effects.append("follow_up")
    return {"follow_up_id": follow_up.id, "due_at": due.isoformat()}


async def _check_limits(ctx: ToolContext, contact: Contact) -> None:
    guard = ctx.guardrails
    per_contact = await agent_runs.ai_messages_to_contact_today(contact.id, ctx.now)
    if per_contact >= guard.max_messages_per_contact_per_day:
        raise ToolRefused(
            f"rate limit: {per_contact} AI message(s) to this lead in the last 24 hours "
            f"(at most {guard.max_messages_per_contact_per_day})"
        )
    per_agent = await agent_runs.agent_messages_in_last_hour(ctx.agent.id, ctx.now)
    per_agent += ctx.messages_sent + ctx.drafts_created  # this run's, not yet written back
    if per_agent >= guard.max_messages_per_hour:
        raise ToolRefused(
            f"rate limit: this agent wrote {per_agent} message(s) in the last hour "
            f"(at most {guard.max_messages_per_hour})"
        )


def _quiet_hours(ctx: ToolContext) -> tuple[int, int]:
    start = ctx.guardrails.quiet_start_hour
    end = ctx.guardrails.quiet_end_hour
    return (
        start if start is not None else ctx.settings.quiet_start_hour,
        end if end is not None else ctx.settings.quiet_end_hour,
    )


async def _send_message(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    conversation = ctx.need_conversation()
    contact = ctx.need_contact()
    text = _text_arg(args, "text", MAX_TEXT)
    if ctx.handed_off or conversation.ai_handoff_at is not None:
        raise ToolRefused("a human has this conversation; the AI stays silent")
    if ctx.messages_sent or ctx.drafts_created:
        # One message per run: a looping or manipulated model cannot flood the lead.
        raise ToolRefused("this run has already written to the lead")
    phrases = [*ctx.settings.banned_phrases, *ctx.guardrails.banned_phrases]
    if (phrase := banned_phrase_in(text, phrases)) is not None:
        raise ToolRefused(f"the message contains the banned phrase {phrase!r}")
    await _check_limits(ctx, contact)
    try:
        await check_send_rules(conversation, contact, Outgoing(text=text), ctx.now)
    except Conflict as exc:
        raise ToolRefused(str(exc)) from None
    autonomous = ctx.guardrails.autonomous and conversation.ai_mode == "autonomous"
    held = ""
    if autonomous:
        start, end = _quiet_hours(ctx)
        if in_quiet_hours(ctx.now, contact.timezone, start, end):
            zone = contact.timezone or "UTC"
            held = f"held for approval: quiet hours {start:02d}:00–{end:02d}:00 in {zone}. "
        else:
            message = await do_send_message(
                ctx.actor,
                conversation.id,
                Outgoing(text=text, idempotency_key=f"agent-run-{ctx.run.id}-{ctx.messages_sent}"),
            )
            ctx.messages_sent += 1
            ctx.effects.append("sent")
            return {"sent": True, "message_id": message.id}
    lead_message = await drafts.last_lead_message(conversation.id)
    draft = await drafts.do_create_draft(
        ctx.actor,
        conversation,
        ProposedDraft(
            text=text,
            source=DraftSource.MODEL,
            rationale=f"{held}Proposed by the agent {ctx.agent.name} (run {ctx.run.id}).",
            model=ctx.agent.model,
        ),
        lead_message.id if lead_message else None,
        agent_id=ctx.agent.id,
    )
    ctx.drafts_created += 1
    ctx.effects.append("draft")
    return {"sent": False, "draft_id": draft.id, "awaiting_approval": True}


async def _hand_off(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    conversation = ctx.need_conversation()
    reason = str(args.get("reason") or "the agent handed off")[:200]
    await ai_modes.do_hand_off(ctx.actor, conversation.id, f"{ctx.agent.name}: {reason}")
    ctx.handed_off = True
    ctx.effects.append("hand_off")
    return {"handed_off": True}


_NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


def _args(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


_STRING = {"type": "string"}
TOOL_SPECS: dict[str, ToolSpec] = {
    "read_contact": ToolSpec(
        "read_contact", "The lead: name, title, language, tags, score.", _NO_ARGS
    ),
    "read_deal": ToolSpec("read_deal", "The lead's open deal, its stage and the stages.", _NO_ARGS),
    "read_thread": ToolSpec("read_thread", "The latest messages of the conversation.", _NO_ARGS),
    "search_memory": ToolSpec(
        "search_memory",
        "Search the workspace's past chats, notes and knowledge base.",
        _args(["query"], query=_STRING),
    ),
    "add_note": ToolSpec(
        "add_note", "Write a private note on the lead.", _args(["text"], text=_STRING)
    ),
    "add_tag": ToolSpec("add_tag", "Tag the lead.", _args(["name"], name=_STRING)),
    "move_stage": ToolSpec(
        "move_stage",
        "Move the lead's open deal to a stage (by name).",
        _args(["stage"], stage=_STRING),
    ),
    "schedule_follow_up": ToolSpec(
        "schedule_follow_up",
        "Run this agent again on the conversation later.",
        _args([], in_hours={"type": "number"}, at=_STRING, note=_STRING),
    ),
    "send_message": ToolSpec(
        "send_message",
        "Write to the lead. Goes to an operator for approval unless autonomy is on.",
        _args(["text"], text=_STRING),
    ),
    HAND_OFF: ToolSpec(
        HAND_OFF,
        "Give the conversation to a human: the lead asks for one, or you are unsure.",
        _args([], reason=_STRING),
    ),
}
TOOL_FUNCTIONS: dict[str, ToolFunction] = {
    "read_contact": _read_contact,
    "read_deal": _read_deal,
    "read_thread": _read_thread,
    "search_memory": _search_memory,
    "add_note": _add_note,
    "add_tag": _add_tag,
    "move_stage": _move_stage,
    "schedule_follow_up": _schedule_follow_up,
    "send_message": _send_message,
    HAND_OFF: _hand_off,
}


def offered_tools(agent: Agent) -> list[ToolSpec]:
    """The tools the model is offered for an agent: its allow-list plus hand-off."""
    names = [n for n in agent.tools if n in TOOL_SPECS and n != HAND_OFF]
    return [TOOL_SPECS[n] for n in (*names, HAND_OFF)]


async def call_tool(ctx: ToolContext, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run one tool call; refusals and bad arguments come back as an ``error`` for the model."""
    if name != HAND_OFF and name not in ctx.agent.tools:
        ctx.refusals.append(f"{name}: not allowed")
        return {"error": f"the tool {name!r} is not allowed for this agent"}
    function = TOOL_FUNCTIONS.get(name)
    if function is None:
        ctx.refusals.append(f"{name}: unknown")
        return {"error": f"there is no tool {name!r}"}
    try:
        return await function(ctx, args)
    except ToolRefused as exc:
        ctx.refusals.append(f"{name}: {exc}")
        return {"error": str(exc), "refused": True}
    except ServiceError as exc:
        return {"error": str(exc)}
