from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from crm.models.ai import AgentKind, AgentRunStatus, DraftSource, DraftStatus, MemorySource
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index


class Migration(migrations.Migration):
    dependencies = [("models", "0007_team_inbox")]

    initial = False

    operations = [
        ops.CreateModel(
            name="Agent",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=100)),
                (
                    "kind",
                    fields.CharEnumField(
                        description="SDR: sdr\nFOLLOW_UP: follow_up\nQUALIFICATION: qualification\nANALYTICS: analytics",
                        enum_type=AgentKind,
                        max_length=16,
                    ),
                ),
                ("prompt_template", fields.TextField(unique=False)),
                (
                    "tools",
                    fields.JSONField(
                        default=list,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                (
                    "guardrails",
                    fields.JSONField(
                        default=dict,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                ("model", fields.CharField(null=True, max_length=200)),
                ("active", fields.BooleanField(default=True)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "agent",
                "app": "models",
                "unique_together": (("tenant", "name"),),
                "pk_attr": "id",
                "table_description": "An AI agent of a workspace: prompt, allowed tools, guardrails, model.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="AgentRun",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "agent",
                    fields.ForeignKeyField(
                        "models.Agent",
                        source_field="agent_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "conversation",
                    fields.ForeignKeyField(
                        "models.Conversation",
                        source_field="conversation_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "contact",
                    fields.ForeignKeyField(
                        "models.Contact",
                        source_field="contact_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("trigger", fields.CharField(default="manual", max_length=32)),
                (
                    "status",
                    fields.CharEnumField(
                        default=AgentRunStatus.RUNNING,
                        description="RUNNING: running\nSUCCEEDED: succeeded\nNEEDS_APPROVAL: needs_approval\nHANDED_OFF: handed_off\nREFUSED: refused\nFAILED: failed",
                        enum_type=AgentRunStatus,
                        max_length=16,
                    ),
                ),
                (
                    "input",
                    fields.JSONField(
                        default=dict,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                (
                    "tool_calls",
                    fields.JSONField(
                        default=list,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                ("output", fields.TextField(default="", unique=False)),
                ("outcome", fields.CharField(default="", max_length=500)),
                ("prompt_tokens", fields.IntField(default=0)),
                ("completion_tokens", fields.IntField(default=0)),
                ("cost_usd", fields.FloatField(default=0.0)),
                ("latency_ms", fields.FloatField(default=0.0)),
                ("model_calls", fields.IntField(default=0)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "finished_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
            ],
            options={
                "table": "agent_run",
                "app": "models",
                "indexes": [
                    Index(fields=["agent_id", "id"]),
                    Index(fields=["tenant_id", "created_at"]),
                ],
                "pk_attr": "id",
                "table_description": "One run of an agent: input, tool calls, output, tokens, cost, latency, outcome.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="AiCall",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("purpose", fields.CharField(max_length=32)),
                ("model", fields.CharField(max_length=200)),
                ("prompt_tokens", fields.IntField(default=0)),
                ("completion_tokens", fields.IntField(default=0)),
                ("cost_usd", fields.FloatField(default=0.0)),
                ("latency_ms", fields.FloatField(default=0.0)),
                ("attempts", fields.IntField(default=1)),
                ("ok", fields.BooleanField(default=True)),
                ("error", fields.CharField(null=True, max_length=500)),
                ("agent_run_id", fields.BigIntField(null=True)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "ai_call",
                "app": "models",
                "indexes": [Index(fields=["tenant_id", "created_at"])],
                "pk_attr": "id",
                "table_description": "One call to a language model: who asked, which model, tokens, cost, latency, outcome.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="AiSettings",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "tenant",
                    fields.OneToOneField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("model", fields.CharField(default="", max_length=200)),
                ("api_base", fields.CharField(null=True, max_length=500)),
                ("api_key_encrypted", fields.TextField(null=True, unique=False)),
                (
                    "fallbacks",
                    fields.JSONField(
                        default=list,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                ("timeout_seconds", fields.FloatField(default=30.0)),
                ("max_retries", fields.IntField(default=1)),
                ("input_cost_per_million", fields.FloatField(null=True)),
                ("output_cost_per_million", fields.FloatField(null=True)),
                ("business_profile", fields.TextField(default="", unique=False)),
                (
                    "intent_rules",
                    fields.JSONField(
                        default=dict,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                ("handoff_confidence", fields.FloatField(default=0.5)),
                (
                    "banned_phrases",
                    fields.JSONField(
                        default=list,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                ("quiet_start_hour", fields.IntField(default=21)),
                ("quiet_end_hour", fields.IntField(default=8)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "ai_settings",
                "app": "models",
                "pk_attr": "id",
                "table_description": "The model a workspace uses (none: the offline helpers), its business profile and rules.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Draft",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "conversation",
                    fields.ForeignKeyField(
                        "models.Conversation",
                        source_field="conversation_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "lead_message",
                    fields.ForeignKeyField(
                        "models.Message",
                        source_field="lead_message_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("text", fields.TextField(unique=False)),
                (
                    "source",
                    fields.CharEnumField(
                        description="MODEL: model\nOFFLINE: offline",
                        enum_type=DraftSource,
                        max_length=16,
                    ),
                ),
                ("rationale", fields.TextField(default="", unique=False)),
                (
                    "citations",
                    fields.JSONField(
                        default=list,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                ("model", fields.CharField(null=True, max_length=200)),
                ("agent_id", fields.IntField(null=True)),
                (
                    "status",
                    fields.CharEnumField(
                        default=DraftStatus.PENDING,
                        description="PENDING: pending\nSENT: sent\nEDITED: edited\nREJECTED: rejected\nREGENERATED: regenerated",
                        enum_type=DraftStatus,
                        max_length=16,
                    ),
                ),
                ("final_text", fields.TextField(null=True, unique=False)),
                (
                    "requested_by",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="requested_by_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "decided_by",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="decided_by_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("decided_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                (
                    "sent_message",
                    fields.ForeignKeyField(
                        "models.Message",
                        source_field="sent_message_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "draft",
                "app": "models",
                "indexes": [
                    Index(fields=["tenant_id", "created_at"]),
                    Index(fields=["conversation_id", "id"]),
                ],
                "pk_attr": "id",
                "table_description": "A reply the AI proposes in a conversation, and what the operator did with it.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="KnowledgeDoc",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("title", fields.CharField(max_length=200)),
                ("text", fields.TextField(unique=False)),
                (
                    "created_by",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="created_by_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "knowledge_doc",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A knowledge-base document of a workspace: prices, FAQ, product facts.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="MemoryChunk",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "source",
                    fields.CharEnumField(
                        description="MESSAGE: message\nNOTE: note\nKNOWLEDGE: knowledge",
                        enum_type=MemorySource,
                        max_length=16,
                    ),
                ),
                ("source_id", fields.BigIntField()),
                ("part", fields.IntField(default=0)),
                ("conversation_id", fields.IntField(null=True)),
                ("contact_id", fields.IntField(null=True)),
                ("direction", fields.CharField(default="", max_length=8)),
                ("text", fields.TextField(unique=False)),
                ("vector", fields.BinaryField(null=True)),
                ("model", fields.CharField(default="", max_length=64)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "memory_chunk",
                "app": "models",
                "unique_together": (("tenant", "source", "source_id", "part"),),
                "indexes": [
                    Index(fields=["tenant_id", "id"]),
                    Index(fields=["tenant_id", "conversation_id", "id"]),
                ],
                "pk_attr": "id",
                "table_description": "A passage the AI may retrieve, with its embedding: the FAISS index is rebuilt from these.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="MessageIntent",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "message",
                    fields.OneToOneField(
                        "models.Message",
                        source_field="message_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("intent", fields.CharField(max_length=32)),
                ("confidence", fields.FloatField()),
                ("source", fields.CharField(max_length=16)),
                ("predicted_intent", fields.CharField(max_length=32)),
                (
                    "corrected_by",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="corrected_by_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("language", fields.CharField(default="en", max_length=8)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "message_intent",
                "app": "models",
                "indexes": [Index(fields=["tenant_id", "source"])],
                "pk_attr": "id",
                "table_description": "What a lead message means (interested, meeting request, ...), predicted or corrected.",
            },
            bases=["Model"],
        ),
        ops.AddField(
            model_name="Conversation",
            name="ai_handoff_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="Conversation",
            name="ai_handoff_reason",
            field=fields.CharField(default="", max_length=200),
        ),
    ]
