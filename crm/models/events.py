"""The append-only event log (audit log) and the outbox that hands events to workers."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from crm.models.accounts import Tenant


class Event(Model):
    """Something that happened: who did what to which record, with before and after."""

    id = fields.BigIntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    type = fields.CharField(max_length=64)
    entity_type = fields.CharField(max_length=32)
    entity_id = fields.BigIntField(null=True)
    actor_type = fields.CharField(max_length=16, description="user, api_key, system or agent")
    actor_user_id = fields.IntField(null=True)
    actor_api_key_id = fields.IntField(null=True)
    before: dict[str, object] | None = fields.JSONField(null=True)
    after: dict[str, object] | None = fields.JSONField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int

    class Meta:
        table = "event"
        indexes = (("tenant_id", "entity_type", "entity_id"), ("tenant_id", "type"))


class OutboxEntry(Model):
    """An event not yet handed to the task queue: the relay deletes it once enqueued."""

    id = fields.BigIntField(primary_key=True)
    event: fields.ForeignKeyRelation[Event] = fields.ForeignKeyField(
        "models.Event", related_name=False, on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    event_id: int

    class Meta:
        table = "outbox"


class HandledEvent(Model):
    """Marks that a handler finished an event, so redelivery does not repeat its effect."""

    id = fields.BigIntField(primary_key=True)
    event_id = fields.BigIntField()
    handler = fields.CharField(max_length=128)
    handled_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "handled_event"
        unique_together = (("event_id", "handler"),)
