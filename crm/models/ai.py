"""AI of a workspace: model settings, calls, memory, knowledge, drafts, intents, agents, runs."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from crm.models.accounts import Tenant, User
from crm.models.contacts import Contact
from crm.models.inbox import Conversation, Message


class AiSettings(Model):
    """The model a workspace uses (none: the offline helpers), its business profile and rules."""

    id = fields.IntField(primary_key=True)
    tenant: fields.OneToOneRelation[Tenant] = fields.OneToOneField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    # A litellm model name, e.g. openai/gpt-4o-mini; empty: no model, offline helpers only.
    model = fields.CharField(max_length=200, default="")
    api_base = fields.CharField(max_length=500, null=True)
    api_key_encrypted = fields.TextField(null=True)
    fallbacks: list[str] = fields.JSONField(default=list)
    timeout_seconds = fields.FloatField(default=30.0)
    max_retries = fields.IntField(default=1)
    input_cost_per_million = fields.FloatField(null=True)
    output_cost_per_million = fields.FloatField(null=True)
    # What the business sells and how it talks: the first thing every prompt says.
    business_profile = fields.TextField(default="")
    # Intent to pipeline action, e.g. {"meeting_request": "Meeting"}; see crm.services.ai.intents.
    intent_rules: dict[str, str] = fields.JSONField(default=dict)
    # Below this confidence an agent hands the conversation to a human.
    handoff_confidence = fields.FloatField(default=0.5)
    banned_phrases: list[str] = fields.JSONField(default=list)
    # Quiet hours in the contact's time zone (start hour inclusive, end hour exclusive).
    quiet_start_hour = fields.IntField(default=21)
    quiet_end_hour = fields.IntField(default=8)
    # The AI mode new conversations start in: off, draft or autonomous (crm.services.ai.modes).
    default_ai_mode = fields.CharField(max_length=16, default="off")
    updated_at = fields.DatetimeField(auto_now=True)

    tenant_id: int

    class Meta:
        table = "ai_settings"


class AiCall(Model):
    """One call to a language model: who asked, which model, tokens, cost, latency, outcome."""

    id = fields.BigIntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    purpose = fields.CharField(max_length=32)
    model = fields.CharField(max_length=200)
    prompt_tokens = fields.IntField(default=0)
    completion_tokens = fields.IntField(default=0)
    cost_usd = fields.FloatField(default=0.0)
    latency_ms = fields.FloatField(default=0.0)
    attempts = fields.IntField(default=1)
    ok = fields.BooleanField(default=True)
    error = fields.CharField(max_length=500, null=True)
    agent_run_id = fields.BigIntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int

    class Meta:
        table = "ai_call"
        indexes = (("tenant_id", "created_at"),)


class KnowledgeDoc(Model):
    """A knowledge-base document of a workspace: prices, FAQ, product facts."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    title = fields.CharField(max_length=200)
    text = fields.TextField()
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    tenant_id: int
    created_by_id: int | None

    class Meta:
        table = "knowledge_doc"


class MemorySource(StrEnum):
    """What a memory chunk was cut from."""

    MESSAGE = "message"
    NOTE = "note"
    KNOWLEDGE = "knowledge"


class MemoryChunk(Model):
    """A passage the AI may retrieve, with its embedding: the FAISS index is rebuilt from these."""

    id = fields.BigIntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    source = fields.CharEnumField(MemorySource, max_length=16)
    source_id = fields.BigIntField()
    part = fields.IntField(default=0)
    conversation_id = fields.IntField(null=True)
    contact_id = fields.IntField(null=True)
    # in / out / note for messages, so the offline drafter can pair a lead line with the reply.
    direction = fields.CharField(max_length=8, default="")
    text = fields.TextField()
    vector = fields.BinaryField(null=True)
    model = fields.CharField(max_length=64, default="")
    # multilingual-e5 vector of a Russian message, for the offline drafter (MiniLM's `vector`
    # misses Russian paraphrases); written by the worker that embeds the message.
    multilingual_vector = fields.BinaryField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int

    class Meta:
        table = "memory_chunk"
        unique_together = (("tenant", "source", "source_id", "part"),)
        indexes = (("tenant_id", "id"), ("tenant_id", "conversation_id", "id"))


class DraftSource(StrEnum):
    """Who wrote a draft: the configured model, or the offline drafter."""

    MODEL = "model"
    OFFLINE = "offline"


class DraftStatus(StrEnum):
    """Where a draft stands; every status but pending is an operator's decision."""

    PENDING = "pending"
    SENT = "sent"  # approved as written
    EDITED = "edited"  # sent with the operator's corrections
    REJECTED = "rejected"
    REGENERATED = "regenerated"  # replaced by a new draft at the operator's request


class Draft(Model):
    """A reply the AI proposes in a conversation, and what the operator did with it."""

    id = fields.BigIntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name=False, on_delete=fields.CASCADE
    )
    # The lead message being answered.
    lead_message: fields.ForeignKeyNullableRelation[Message] = fields.ForeignKeyField(
        "models.Message", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    text = fields.TextField()
    source = fields.CharEnumField(DraftSource, max_length=16)
    rationale = fields.TextField(default="")
    citations: list[dict[str, object]] = fields.JSONField(default=list)
    model = fields.CharField(max_length=200, null=True)
    agent_id = fields.IntField(null=True)
    status = fields.CharEnumField(DraftStatus, max_length=16, default=DraftStatus.PENDING)
    final_text = fields.TextField(null=True)
    requested_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    decided_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    decided_at = fields.DatetimeField(null=True)
    sent_message: fields.ForeignKeyNullableRelation[Message] = fields.ForeignKeyField(
        "models.Message", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int
    conversation_id: int
    lead_message_id: int | None
    requested_by_id: int | None
    decided_by_id: int | None
    sent_message_id: int | None

    class Meta:
        table = "draft"
        indexes = (("tenant_id", "created_at"), ("conversation_id", "id"))


class MessageIntent(Model):
    """What a lead message means (interested, meeting request, ...), predicted or corrected."""

    id = fields.BigIntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    message: fields.OneToOneRelation[Message] = fields.OneToOneField(
        "models.Message", related_name=False, on_delete=fields.CASCADE
    )
    intent = fields.CharField(max_length=32)
    confidence = fields.FloatField()
    # offline, model, or correction (an operator fixed it: training data for the tenant)
    source = fields.CharField(max_length=16)
    predicted_intent = fields.CharField(max_length=32)
    corrected_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    language = fields.CharField(max_length=8, default="en")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    tenant_id: int
    message_id: int

    class Meta:
        table = "message_intent"
        indexes = (("tenant_id", "source"),)


class AgentKind(StrEnum):
    """The typed agents a workspace can run."""

    SDR = "sdr"
    FOLLOW_UP = "follow_up"
    QUALIFICATION = "qualification"
    ANALYTICS = "analytics"


class Agent(Model):
    """An AI agent of a workspace: prompt, allowed tools, guardrails, model."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=100)
    kind = fields.CharEnumField(AgentKind, max_length=16)
    prompt_template = fields.TextField()
    tools: list[str] = fields.JSONField(default=list)
    # rate limits, quiet hours, banned phrases, autonomy: crm.services.ai.agents.Guardrails
    guardrails: dict[str, object] = fields.JSONField(default=dict)
    model = fields.CharField(max_length=200, null=True)
    # Events that start a run by themselves (crm.services.ai.agents.TRIGGERS); manual runs and
    # scheduled follow-ups need none.
    triggers: list[str] = fields.JSONField(default=list)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    tenant_id: int

    class Meta:
        table = "agent"
        unique_together = (("tenant", "name"),)


class AgentRunStatus(StrEnum):
    """Where an agent run stands, and how it ended."""

    QUEUED = "queued"  # waiting for a worker
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    NEEDS_APPROVAL = "needs_approval"  # it proposed a message: a draft waits for an operator
    HANDED_OFF = "handed_off"  # it gave the conversation to a human
    REFUSED = "refused"  # a guardrail stopped it before it acted
    FAILED = "failed"


class AgentRun(Model):
    """One run of an agent: input, tool calls, output, tokens, cost, latency, outcome."""

    id = fields.BigIntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    agent: fields.ForeignKeyRelation[Agent] = fields.ForeignKeyField(
        "models.Agent", related_name=False, on_delete=fields.CASCADE
    )
    conversation: fields.ForeignKeyNullableRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    contact: fields.ForeignKeyNullableRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    trigger = fields.CharField(max_length=32, default="manual")
    # What started it, e.g. "message:42": one run per agent and cause, however often the
    # event is delivered.
    trigger_key = fields.CharField(max_length=64, null=True)
    status = fields.CharEnumField(AgentRunStatus, max_length=16, default=AgentRunStatus.QUEUED)
    input: dict[str, object] = fields.JSONField(default=dict)
    tool_calls: list[dict[str, object]] = fields.JSONField(default=list)
    output = fields.TextField(default="")
    outcome = fields.CharField(max_length=500, default="")
    prompt_tokens = fields.IntField(default=0)
    completion_tokens = fields.IntField(default=0)
    cost_usd = fields.FloatField(default=0.0)
    latency_ms = fields.FloatField(default=0.0)
    model_calls = fields.IntField(default=0)
    messages_sent = fields.IntField(default=0)
    drafts_created = fields.IntField(default=0)
    requested_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)

    tenant_id: int
    agent_id: int
    conversation_id: int | None
    contact_id: int | None
    requested_by_id: int | None

    class Meta:
        table = "agent_run"
        unique_together = (("agent", "trigger_key"),)
        indexes = (("agent_id", "id"), ("tenant_id", "created_at"), ("agent_id", "created_at"))


class FollowUpStatus(StrEnum):
    """Where a scheduled follow-up stands."""

    PENDING = "pending"
    DONE = "done"  # its agent run was queued
    CANCELLED = "cancelled"


class FollowUp(Model):
    """A follow-up an agent scheduled: at ``due_at`` the agent runs again on the conversation."""

    id = fields.BigIntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    agent: fields.ForeignKeyRelation[Agent] = fields.ForeignKeyField(
        "models.Agent", related_name=False, on_delete=fields.CASCADE
    )
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name=False, on_delete=fields.CASCADE
    )
    due_at = fields.DatetimeField()
    note = fields.CharField(max_length=500, default="")
    status = fields.CharEnumField(FollowUpStatus, max_length=16, default=FollowUpStatus.PENDING)
    scheduled_by_run_id = fields.BigIntField(null=True)
    run_id = fields.BigIntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int
    agent_id: int
    conversation_id: int

    class Meta:
        table = "follow_up"
        indexes = (("status", "due_at"), ("tenant_id", "conversation_id"))
