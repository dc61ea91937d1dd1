"""The operator bot: invites to a workspace, the notifications it sent, the team inbox."""

from __future__ import annotations

from enum import StrEnum

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
    # Set when an admin added someone who already has an account: only they may accept it, in
    # the bot. Such an invite has no link (its token is never shown).
    invitee: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int
    created_by_id: int | None
    used_by_id: int | None
    invitee_id: int | None

    class Meta:
        table = "invite"


class NotificationState(StrEnum):
    """Where a notification to an operator stands."""

    # Recorded before the Telegram call, so a redelivered event never sends it again. Still
    # pending later: the worker stopped between this record and the next one, and whether
    # Telegram took the message is unknown.
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # Telegram refused it (``error`` says why); not retried


class OperatorNotification(Model):
    """A message the operator bot sent about a lead message, found again by a Telegram reply."""

    id = fields.BigIntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.CASCADE
    )
    # The Telegram id of the bot that sent it: message ids count per bot and chat, and start
    # again for a new bot (or an emulator that forgot its chats). Null on rows from before.
    bot_id = fields.BigIntField(null=True)
    chat_id = fields.BigIntField()
    # Null until Telegram took the message, and on a row a newer message with the same id
    # replaced (the newest record wins).
    telegram_message_id = fields.BigIntField(null=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name=False, on_delete=fields.CASCADE
    )
    lead_message: fields.ForeignKeyNullableRelation[Message] = fields.ForeignKeyField(
        "models.Message", related_name=False, null=True, on_delete=fields.CASCADE
    )
    state = fields.CharEnumField(NotificationState, max_length=16, default=NotificationState.SENT)
    error = fields.CharField(max_length=500, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int
    user_id: int
    conversation_id: int
    lead_message_id: int | None

    class Meta:
        table = "operator_notification"
        unique_together = (("bot_id", "chat_id", "telegram_message_id"), ("user", "lead_message"))
        indexes = (("chat_id", "telegram_message_id"),)


class TeamPostKind(StrEnum):
    """What a queued team inbox post does in its group."""

    MESSAGE = "message"  # copy a lead message into the conversation topic (created if missing)
    NAME = "name"  # bring the topic name in line with the deal stage
    STATE = "state"  # close or reopen the topic as the conversation is
    REPLY = "reply"  # a short answer of the bot in a topic


class TeamPostStatus(StrEnum):
    """Where a queued team inbox post stands."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    SKIPPED = "skipped"  # nothing to do by the time its turn came
    FAILED = "failed"
    CANCELLED = "cancelled"  # the group was unlinked or moved before its turn


class TeamInbox(Model):
    """A forum supergroup linked to a workspace as its team inbox, one group per workspace."""

    id = fields.IntField(primary_key=True)
    tenant: fields.OneToOneRelation[Tenant] = fields.OneToOneField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    chat_id = fields.BigIntField(unique=True)
    title = fields.CharField(max_length=255, default="")
    # The language the bot writes in the group (that of the member who linked it).
    language = fields.CharField(max_length=8, default="en")
    linked_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    # When the group became the inbox: lead messages from before are not posted there.
    linked_at = fields.DatetimeField()
    # A lag episode is on: the group was told once that it is behind.
    lagging = fields.BooleanField(default=False)
    # Unix times of the latest Bot API calls into the group, for its posting budget.
    call_times: list[float] = fields.JSONField(default=list)
    # Telegram ids of non-members already told that their messages do not reach leads.
    warned: list[int] = fields.JSONField(default=list)
    # The queue worker that sends the posts of this group, and until when it may.
    lease_owner = fields.CharField(max_length=64, null=True)
    lease_until = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    tenant_id: int
    linked_by_id: int | None

    class Meta:
        table = "team_inbox"


class TeamTopic(Model):
    """The forum topic of one conversation in a team inbox group, found again by its thread id."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name=False, on_delete=fields.CASCADE
    )
    chat_id = fields.BigIntField()
    message_thread_id = fields.BigIntField()
    name = fields.CharField(max_length=128)
    closed = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int
    conversation_id: int

    class Meta:
        table = "team_topic"
        unique_together = (("conversation", "chat_id"), ("chat_id", "message_thread_id"))


class TeamPost(Model):
    """A post waiting for its turn in a team inbox group: the durable per-group queue."""

    id = fields.BigIntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    chat_id = fields.BigIntField()
    kind = fields.CharEnumField(TeamPostKind, max_length=16)
    conversation: fields.ForeignKeyNullableRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name=False, null=True, on_delete=fields.CASCADE
    )
    lead_message: fields.ForeignKeyNullableRelation[Message] = fields.ForeignKeyField(
        "models.Message", related_name=False, null=True, on_delete=fields.CASCADE
    )
    # Set by whoever queued the post, so a repeated event handler queues it once.
    dedupe_key = fields.CharField(max_length=64, null=True)
    payload: dict[str, object] = fields.JSONField(default=dict)
    status = fields.CharEnumField(TeamPostStatus, max_length=16, default=TeamPostStatus.PENDING)
    attempts = fields.IntField(default=0)
    error = fields.CharField(max_length=500, null=True)
    telegram_message_id = fields.BigIntField(null=True)
    claimed_at = fields.DatetimeField(null=True)
    done_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int
    conversation_id: int | None
    lead_message_id: int | None

    class Meta:
        table = "team_post"
        unique_together = (("chat_id", "lead_message"), ("chat_id", "dedupe_key"))
        indexes = (("status", "chat_id", "id"),)
