"""Agents, their runs and the follow-ups they schedule: parse and render.

Runs are asynchronous: ``POST /agents/{id}/execute`` answers 202 with the queued run, a worker
runs it, and ``GET /agent-runs/{id}`` shows how it went.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from crm.api.dependencies import ActorDep
from crm.api.schemas import BigId, Id, ListOut, PageLimit, StrictModel
from crm.models import Agent, AgentRun
from crm.services.ai import agent_runs, agents, follow_ups
from crm.services.ai.agent_runs import MAX_INPUT, RunRequest
from crm.services.ai.agents import MAX_NAME, MAX_PROMPT, guardrails_of

router = APIRouter(tags=["agents"])

Kind = Literal["sdr", "follow_up", "qualification", "analytics"]


class AgentIn(StrictModel):
    name: str = Field(max_length=MAX_NAME)
    kind: Kind
    prompt_template: str | None = Field(default=None, max_length=MAX_PROMPT)
    tools: list[str] | None = None
    triggers: list[str] | None = None
    guardrails: dict[str, Any] | None = None
    model: str | None = Field(default=None, max_length=200)
    active: bool = True


class AgentPatch(StrictModel):
    name: str | None = Field(default=None, max_length=MAX_NAME)
    kind: Kind | None = None
    prompt_template: str | None = Field(default=None, max_length=MAX_PROMPT)
    tools: list[str] | None = None
    triggers: list[str] | None = None
    guardrails: dict[str, Any] | None = None
    model: str | None = Field(default=None, max_length=200)
    active: bool | None = None


class AgentOut(BaseModel):
    id: int
    name: str
    kind: str
    prompt_template: str
    tools: list[str]
    triggers: list[str]
    guardrails: dict[str, Any]
    model: str | None
    active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class ExecuteIn(StrictModel):
    conversation_id: Id | None = None
    contact_id: Id | None = None
    instructions: str = Field(default="", max_length=MAX_INPUT)


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    agent_id: int
    conversation_id: int | None
    contact_id: int | None
    trigger: str
    status: str
    input: dict[str, Any]
    tool_calls: list[dict[str, Any]]
    output: str
    outcome: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    model_calls: int
    messages_sent: int
    drafts_created: int
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class FollowUpOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    agent_id: int
    conversation_id: int
    due_at: dt.datetime
    note: str
    status: str
    run_id: int | None


def agent_out(agent: Agent) -> AgentOut:
    """The API view of an agent (guardrails with every default filled in)."""
    return AgentOut(
        id=agent.id,
        name=agent.name,
        kind=agent.kind.value,
        prompt_template=agent.prompt_template,
        tools=list(agent.tools or []),
        triggers=list(agent.triggers or []),
        guardrails=guardrails_of(agent).to_json(),
        model=agent.model,
        active=agent.active,
        created_at=agent.created_at,
        updated_at=agent.updated_at,
    )


def run_out(run: AgentRun) -> RunOut:
    """The API view of a run and its log."""
    return RunOut.model_validate(run)


@router.get("/agents", response_model=ListOut[AgentOut])
async def list_agents(actor: ActorDep) -> Any:
    """The workspace's agents."""
    return ListOut(items=[agent_out(a) for a in await agents.list_agents(actor)])


@router.post("/agents", response_model=AgentOut, status_code=status.HTTP_201_CREATED)
async def post_agent(body: AgentIn, actor: ActorDep) -> AgentOut:
    """Create an agent (admins); unset prompt and tools take the kind's defaults."""
    values = body.model_dump(exclude_none=True)
    return agent_out(await agents.do_create_agent(actor, values))


@router.get("/agents/{agent_id}", response_model=AgentOut)
async def get_agent(agent_id: Id, actor: ActorDep) -> AgentOut:
    """One agent."""
    return agent_out(await agents.access_agent(actor, agent_id))


@router.patch("/agents/{agent_id}", response_model=AgentOut)
async def patch_agent(agent_id: Id, body: AgentPatch, actor: ActorDep) -> AgentOut:
    """Change an agent (admins); guardrails merge over the stored ones."""
    values = body.model_dump(exclude_unset=True)
    return agent_out(await agents.do_update_agent(actor, agent_id, values))


@router.post(
    "/agents/{agent_id}/execute",
    response_model=RunOut,
    status_code=status.HTTP_202_ACCEPTED,
)
async def execute_agent(agent_id: Id, body: ExecuteIn, actor: ActorDep) -> RunOut:
    """Queue a run on a conversation or contact; a worker runs it."""
    request = RunRequest(
        conversation_id=body.conversation_id,
        contact_id=body.contact_id,
        instructions=body.instructions,
    )
    return run_out(await agent_runs.do_queue_run(actor, agent_id, request))


@router.get("/agents/{agent_id}/runs", response_model=ListOut[RunOut])
async def list_runs(
    agent_id: Id, actor: ActorDep, cursor: str | None = None, limit: PageLimit = 50
) -> Any:
    """An agent's runs, newest first, with their logs."""
    page = await agent_runs.list_runs(actor, agent_id, cursor=cursor, limit=limit)
    return ListOut(items=[run_out(r) for r in page.items], next_cursor=page.next_cursor)


@router.get("/agent-runs/{run_id}", response_model=RunOut)
async def get_run(run_id: BigId, actor: ActorDep) -> RunOut:
    """One run and its log."""
    return run_out(await agent_runs.access_run(actor, run_id))


@router.get("/conversations/{conversation_id}/follow-ups", response_model=ListOut[FollowUpOut])
async def list_follow_ups(conversation_id: Id, actor: ActorDep) -> Any:
    """The follow-ups agents scheduled in a conversation, soonest first."""
    rows = await follow_ups.list_follow_ups(actor, conversation_id)
    return ListOut(items=[FollowUpOut.model_validate(r) for r in rows])
