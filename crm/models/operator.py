"""The operator bot: invites to a workspace and the notifications it sent."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from crm.models.inbox import Conversation, Message
from crm.models.tenancy import Role, Tenant, User


class Invite(Model):
    """A single-use invitation to join a workspace with a role, stored as a hash of its token."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    role = fields.CharEnumField(Role, max_length=16)
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    expires_at = fields.DatetimeField()
    used_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    used_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int
    created_by_id: int | None
    used_by_id: int | None

    class Meta:
        table = "invite"


class OperatorNotification(Model):
    """A message the operator bot sent about a lead message, found again by a Telegram reply."""

    id = fields.BigIntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.CASCADE
    )
    chat_id = fields.BigIntField()
    telegram_message_id = fields.BigIntField()
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name=False, on_delete=fields.CASCADE
    )
    lead_message: fields.ForeignKeyNullableRelation[Message] = fields.ForeignKeyField(
        "models.Message", related_name=False, null=True, on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int
    user_id: int
    conversation_id: int
    lead_message_id: int | None

    class Meta:
        table = "operator_notification"
        unique_together = (("chat_id", "telegram_message_id"), ("user", "lead_message"))
