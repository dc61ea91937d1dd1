"""The unified inbox: connections, conversations, messages, operator notifications, team inbox."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from crm.messaging import ChannelKind, DeliveryStatus, MessageKind
from crm.models.accounts import Tenant, User
from crm.models.contacts import Contact


class ConversationStatus(StrEnum):
    """Whether a conversation needs attention."""

    OPEN = "open"
    SNOOZED = "snoozed"
    CLOSED = "closed"


class Direction(StrEnum):
    """Who wrote a message: the lead (in), the business (out), or a private team note."""

    IN = "in"
    OUT = "out"
    NOTE = "note"


class AuthorType(StrEnum):
    """Who wrote an outbound message or note."""

    CONTACT = "contact"
    USER = "user"
    AGENT = "agent"
    CAMPAIGN = "campaign"
    SYSTEM = "system"


class ChannelConnection(Model):
    """One WhatsApp number or Telegram bot of a tenant, with encrypted credentials."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(ChannelKind, max_length=16)
    display_name = fields.CharField(max_length=200)
    # The provider id of the account (WhatsApp phone number id, Telegram bot id): one tenant only.
    external_key = fields.CharField(max_length=64)
    sandbox = fields.BooleanField(default=False)
    settings: dict[str, object] = fields.JSONField(default=dict)
    credentials_encrypted = fields.TextField()
    rate_per_second = fields.IntField(default=80)
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    tenant_id: int

    class Meta:
        table = "channel_connection"
        unique_together = (("kind", "external_key"),)


class BusinessLink(Model):
    """Telegram Business: a rep connected the business bot to their own Telegram account."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    connection: fields.ForeignKeyRelation[ChannelConnection] = fields.ForeignKeyField(
        "models.ChannelConnection", related_name=False, on_delete=fields.CASCADE
    )
    business_connection_id = fields.CharField(max_length=128)
    rep_telegram_id = fields.BigIntField()
    rep_name = fields.CharField(max_length=200, default="")
    user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    enabled = fields.BooleanField(default=True)
    can_reply = fields.BooleanField(default=True)
    updated_at = fields.DatetimeField(auto_now=True)

    tenant_id: int
    connection_id: int
    user_id: int | None

    class Meta:
        table = "business_link"
        unique_together = (("connection", "business_connection_id"),)


class Conversation(Model):
    """A contact talking to the business over one connection."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name="conversations", on_delete=fields.CASCADE
    )
    connection: fields.ForeignKeyRelation[ChannelConnection] = fields.ForeignKeyField(
        "models.ChannelConnection", related_name=False, on_delete=fields.CASCADE
    )
    channel = fields.CharEnumField(ChannelKind, max_length=16)
    # The lead's address on the channel: WhatsApp wa_id, or the Telegram chat id.
    peer_id = fields.CharField(max_length=64)
    # Empty for the connection itself, else the Telegram Business chat of one rep.
    business_connection_id = fields.CharField(max_length=128, default="")
    assignee: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    status = fields.CharEnumField(
        ConversationStatus, max_length=16, default=ConversationStatus.OPEN
    )
    snoozed_until = fields.DatetimeField(null=True)
    unread_count = fields.IntField(default=0)
    last_inbound_at = fields.DatetimeField(null=True)
    last_message_at = fields.DatetimeField()
    last_message_preview = fields.CharField(max_length=200, default="")
    # off (humans only), draft (agents propose, operators approve) or autonomous.
    ai_mode = fields.CharField(max_length=16, default="off")
    # Set when a human took the conversation over (or the AI handed it off): agents stay silent
    # until someone hands it back (crm.services.ai.modes).
    ai_handoff_at = fields.DatetimeField(null=True)
    ai_handoff_reason = fields.CharField(max_length=200, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    tenant_id: int
    contact_id: int
    connection_id: int
    assignee_id: int | None

    class Meta:
        table = "conversation"
        unique_together = (("connection", "contact", "business_connection_id"),)
        indexes = (
            ("tenant_id", "last_message_at", "id"),
            ("tenant_id", "assignee_id", "last_message_at"),
        )


class Message(Model):
    """One message of a conversation, or a private note of the team."""

    id = fields.BigIntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="messages", on_delete=fields.CASCADE
    )
    # Copied from the conversation so the provider id is unique per connection.
    connection_id = fields.IntField()
    direction = fields.CharEnumField(Direction, max_length=8)
    kind = fields.CharEnumField(MessageKind, max_length=16, default=MessageKind.TEXT)
    text = fields.TextField(default="")
    media: dict[str, object] | None = fields.JSONField(null=True)
    payload: dict[str, object] = fields.JSONField(default=dict)
    external_id = fields.CharField(max_length=128, null=True)
    status = fields.CharEnumField(DeliveryStatus, max_length=16, default=DeliveryStatus.QUEUED)
    error_code = fields.IntField(null=True)
    error_title = fields.CharField(max_length=500, null=True)
    author_type = fields.CharEnumField(AuthorType, max_length=16)
    author_user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    reply_to: fields.ForeignKeyNullableRelation[Message] = fields.ForeignKeyField(
        "models.Message", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    marketing = fields.BooleanField(default=False)
    idempotency_key = fields.CharField(max_length=128, null=True)
    attempts = fields.IntField(default=0)
    # Set while a worker is handing the message to the provider: a second worker keeps off.
    sending_since = fields.DatetimeField(null=True)
    edited = fields.BooleanField(default=False)
    deleted = fields.BooleanField(default=False)
    provider_at = fields.DatetimeField(null=True, description="when the provider says it happened")
    status_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int
    conversation_id: int
    author_user_id: int | None
    reply_to_id: int | None

    class Meta:
        table = "message"
        unique_together = (("connection_id", "external_id"), ("tenant", "idempotency_key"))
        indexes = (("conversation_id", "id"), ("tenant_id", "id"))


class PendingStatus(Model):
    """A delivery receipt that arrived before the send call returned the provider id."""

    id = fields.BigIntField(primary_key=True)
    connection_id = fields.IntField()
    external_id = fields.CharField(max_length=128)
    status = fields.CharEnumField(DeliveryStatus, max_length=16)
    error_code = fields.IntField(null=True)
    error_title = fields.CharField(max_length=500, null=True)
    at = fields.DatetimeField()

    class Meta:
        table = "pending_status"
        unique_together = (("connection_id", "external_id", "status"),)


class ProcessedUpdate(Model):
    """A provider update already handled (Telegram update_id), for webhook dedupe."""

    id = fields.BigIntField(primary_key=True)
    connection_id = fields.IntField()
    update_key = fields.CharField(max_length=128)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "processed_update"
        unique_together = (("connection_id", "update_key"),)


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
