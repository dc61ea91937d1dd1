from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from crm.models.contacts import Consent
from crm.models.pipelines import StageKind
from crm.models.tenancy import Role
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name="HandledEvent",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("event_id", fields.BigIntField()),
                ("handler", fields.CharField(max_length=128)),
                ("handled_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "handled_event",
                "app": "models",
                "unique_together": (("event_id", "handler"),),
                "pk_attr": "id",
                "table_description": "Marks that a handler finished an event, so redelivery does not repeat its effect.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Tenant",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                ("name", fields.CharField(max_length=200)),
                ("default_region", fields.CharField(default="US", max_length=2)),
                ("default_currency", fields.CharField(default="USD", max_length=3)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "tenant",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A workspace: every other row belongs to exactly one.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Event",
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
                ("type", fields.CharField(max_length=64)),
                ("entity_type", fields.CharField(max_length=32)),
                ("entity_id", fields.BigIntField(null=True)),
                (
                    "actor_type",
                    fields.CharField(description="user, api_key, system or agent", max_length=16),
                ),
                ("actor_user_id", fields.IntField(null=True)),
                ("actor_api_key_id", fields.IntField(null=True)),
                (
                    "before",
                    fields.JSONField(
                        null=True,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                (
                    "after",
                    fields.JSONField(
                        null=True,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "event",
                "app": "models",
                "indexes": [
                    Index(fields=["tenant_id", "entity_type", "entity_id"]),
                    Index(fields=["tenant_id", "type"]),
                ],
                "pk_attr": "id",
                "table_description": "Something that happened: who did what to which record, with before and after.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="OutboxEntry",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "event",
                    fields.ForeignKeyField(
                        "models.Event",
                        source_field="event_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "outbox",
                "app": "models",
                "pk_attr": "id",
                "table_description": "An event not yet handed to the task queue: the relay deletes it once enqueued.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Pipeline",
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
                ("is_default", fields.BooleanField(default=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "pipeline",
                "app": "models",
                "pk_attr": "id",
                "table_description": "An ordered set of stages deals move through.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Stage",
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
                (
                    "pipeline",
                    fields.ForeignKeyField(
                        "models.Pipeline",
                        source_field="pipeline_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="stages",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=100)),
                ("position", fields.IntField()),
                (
                    "kind",
                    fields.CharEnumField(
                        default=StageKind.OPEN,
                        description="OPEN: open\nWON: won\nLOST: lost",
                        enum_type=StageKind,
                        max_length=8,
                    ),
                ),
            ],
            options={
                "table": "stage",
                "app": "models",
                "pk_attr": "id",
                "table_description": "One step of a pipeline, ``position`` orders the stages from 0.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Tag",
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
                ("name", fields.CharField(max_length=64)),
                ("name_key", fields.CharField(max_length=64)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "tag",
                "app": "models",
                "unique_together": (("tenant", "name_key"),),
                "pk_attr": "id",
                "table_description": "A label on contacts, unique per tenant regardless of case.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="User",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                ("telegram_id", fields.BigIntField(null=True, unique=True)),
                ("email", fields.CharField(null=True, unique=True, max_length=254)),
                ("name", fields.CharField(default="", max_length=200)),
                ("language", fields.CharField(default="en", max_length=8)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "app_user",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A person who operates the CRM, identified by Telegram id and/or email.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ApiKey",
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
                        related_name="api_keys",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="api_keys",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(default="", max_length=100)),
                ("prefix", fields.CharField(unique=True, max_length=16)),
                ("secret_hash", fields.CharField(max_length=64)),
                (
                    "scopes",
                    fields.JSONField(
                        default=list,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "last_used_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
                ("revoked_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "api_key",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A bearer key acting for a member, limited by scopes, stored as a hash only.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Company",
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
                ("name", fields.CharField(max_length=200)),
                ("name_key", fields.CharField(max_length=200)),
                ("domain", fields.CharField(null=True, max_length=200)),
                (
                    "owner",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="owner_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "custom_fields",
                    fields.JSONField(
                        default=dict,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "company",
                "app": "models",
                "unique_together": (("tenant", "name_key"),),
                "pk_attr": "id",
                "table_description": "An organisation that contacts and deals belong to.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Contact",
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
                ("name", fields.CharField(default="", max_length=200)),
                ("title", fields.CharField(null=True, max_length=200)),
                (
                    "company",
                    fields.ForeignKeyField(
                        "models.Company",
                        source_field="company_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="contacts",
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("phone", fields.CharField(null=True, description="E.164", max_length=20)),
                ("email", fields.CharField(null=True, description="lower-cased", max_length=254)),
                (
                    "telegram_username",
                    fields.CharField(null=True, description="lower-cased, no @", max_length=64),
                ),
                ("telegram_id", fields.BigIntField(null=True)),
                ("whatsapp_id", fields.CharField(null=True, max_length=32)),
                (
                    "custom_fields",
                    fields.JSONField(
                        default=dict,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                (
                    "owner",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="owner_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("source", fields.CharField(null=True, max_length=64)),
                (
                    "consent",
                    fields.CharEnumField(
                        default=Consent.UNKNOWN,
                        description="UNKNOWN: unknown\nGRANTED: granted\nOPTED_OUT: opted_out",
                        enum_type=Consent,
                        max_length=16,
                    ),
                ),
                (
                    "opted_out_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
                ("timezone", fields.CharField(null=True, max_length=64)),
                ("score", fields.IntField(default=0)),
                ("search_text", fields.TextField(default="", unique=False)),
                (
                    "tags",
                    fields.ManyToManyField(
                        "models.Tag",
                        unique=True,
                        db_constraint=True,
                        through="contact_tag",
                        forward_key="tag_id",
                        backward_key="contact_id",
                        related_name="contacts",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "contact",
                "app": "models",
                "unique_together": (
                    ("tenant", "email"),
                    ("tenant", "phone"),
                    ("tenant", "telegram_username"),
                    ("tenant", "telegram_id"),
                    ("tenant", "whatsapp_id"),
                ),
                "indexes": [
                    Index(fields=["tenant_id", "owner_id", "created_at", "id"]),
                    Index(fields=["tenant_id", "company_id"]),
                    Index(fields=["tenant_id", "name", "id"]),
                    Index(fields=["tenant_id", "created_at", "id"]),
                    Index(fields=["tenant_id", "updated_at", "id"]),
                ],
                "pk_attr": "id",
                "table_description": "A person the business talks to.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Deal",
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
                (
                    "pipeline",
                    fields.ForeignKeyField(
                        "models.Pipeline",
                        source_field="pipeline_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="deals",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                (
                    "stage",
                    fields.ForeignKeyField(
                        "models.Stage",
                        source_field="stage_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="deals",
                        on_delete=OnDelete.RESTRICT,
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
                        related_name="deals",
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "company",
                    fields.ForeignKeyField(
                        "models.Company",
                        source_field="company_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="deals",
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "owner",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="owner_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("value", fields.DecimalField(default=0, max_digits=18, decimal_places=2)),
                ("currency", fields.CharField(default="USD", max_length=3)),
                (
                    "stage_changed_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
                ("closed_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "deal",
                "app": "models",
                "indexes": [
                    Index(fields=["tenant_id", "stage_id"]),
                    Index(fields=["tenant_id", "contact_id"]),
                    Index(fields=["tenant_id", "owner_id"]),
                ],
                "pk_attr": "id",
                "table_description": "An opportunity with a value, moving through the stages of a pipeline.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="DealStageChange",
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
                (
                    "deal",
                    fields.ForeignKeyField(
                        "models.Deal",
                        source_field="deal_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="stage_history",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "from_stage",
                    fields.ForeignKeyField(
                        "models.Stage",
                        source_field="from_stage_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "to_stage",
                    fields.ForeignKeyField(
                        "models.Stage",
                        source_field="to_stage_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "changed_by",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="changed_by_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("changed_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "deal_stage_change",
                "app": "models",
                "pk_attr": "id",
                "table_description": "One move of a deal from a stage to another: its stage history.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Membership",
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
                        related_name="memberships",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="memberships",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "role",
                    fields.CharEnumField(
                        description="OWNER: owner\nADMIN: admin\nBIDI: bidi\nVIEWER: viewer",
                        enum_type=Role,
                        max_length=16,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "membership",
                "app": "models",
                "unique_together": (("tenant", "user"),),
                "pk_attr": "id",
                "table_description": "The role of a user in one tenant.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Note",
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
                (
                    "contact",
                    fields.ForeignKeyField(
                        "models.Contact",
                        source_field="contact_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="notes",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "company",
                    fields.ForeignKeyField(
                        "models.Company",
                        source_field="company_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="notes",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "deal",
                    fields.ForeignKeyField(
                        "models.Deal",
                        source_field="deal_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="notes",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "author",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="author_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("body", fields.TextField(unique=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "note",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A free-text note on a contact, a company or a deal.",
            },
            bases=["Model"],
        ),
    ]
