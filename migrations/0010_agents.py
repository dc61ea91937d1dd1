from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from crm.models.ai import AgentRunStatus, FollowUpStatus
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index
from tortoise.migrations.constraints import UniqueConstraint


class Migration(migrations.Migration):
    dependencies = [("models", "0009_memory_search")]

    initial = False

    operations = [
        ops.CreateModel(
            name="FollowUp",
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
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("due_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("note", fields.CharField(default="", max_length=500)),
                (
                    "status",
                    fields.CharEnumField(
                        default=FollowUpStatus.PENDING,
                        description="PENDING: pending\nDONE: done\nCANCELLED: cancelled",
                        enum_type=FollowUpStatus,
                        max_length=16,
                    ),
                ),
                ("scheduled_by_run_id", fields.BigIntField(null=True)),
                ("run_id", fields.BigIntField(null=True)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "follow_up",
                "app": "models",
                "indexes": [
                    Index(fields=["status", "due_at"]),
                    Index(fields=["tenant_id", "conversation_id"]),
                ],
                "pk_attr": "id",
                "table_description": "A follow-up an agent scheduled: at ``due_at`` the agent runs again on the conversation.",
            },
            bases=["Model"],
        ),
        ops.AddField(
            model_name="AiSettings",
            name="default_ai_mode",
            field=fields.CharField(default="off", max_length=16),
        ),
        ops.AddField(
            model_name="Agent",
            name="triggers",
            field=fields.JSONField(
                default=list, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
            ),
        ),
        ops.AlterField(
            model_name="AgentRun",
            name="status",
            field=fields.CharEnumField(
                default=AgentRunStatus.QUEUED,
                description="QUEUED: queued\nRUNNING: running\nSUCCEEDED: succeeded\nNEEDS_APPROVAL: needs_approval\nHANDED_OFF: handed_off\nREFUSED: refused\nFAILED: failed",
                enum_type=AgentRunStatus,
                max_length=16,
            ),
        ),
        ops.AddField(
            model_name="AgentRun",
            name="drafts_created",
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name="AgentRun",
            name="messages_sent",
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name="AgentRun",
            name="requested_by",
            field=fields.ForeignKeyField(
                "models.User",
                source_field="requested_by_id",
                null=True,
                db_constraint=True,
                to_field="id",
                related_name=False,
                on_delete=OnDelete.SET_NULL,
            ),
        ),
        ops.AddField(
            model_name="AgentRun",
            name="started_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="AgentRun",
            name="trigger_key",
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddIndex(
            model_name="AgentRun",
            index=Index(fields=["agent_id", "created_at"]),
        ),
        ops.AddConstraint(
            model_name="AgentRun",
            constraint=UniqueConstraint(fields=("agent", "trigger_key"), name=None),
        ),
    ]
