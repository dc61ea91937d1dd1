"""Tortoise models of the CRM, one module per aggregate."""

from crm.models.contacts import Company, Consent, Contact, Note, Tag
from crm.models.events import Event, HandledEvent, OutboxEntry
from crm.models.inbox import (
    AuthorType,
    BusinessLink,
    ChannelConnection,
    Conversation,
    ConversationStatus,
    Direction,
    Message,
    PendingStatus,
    ProcessedUpdate,
)
from crm.models.operator import (
    Invite,
    OperatorNotification,
    TeamInbox,
    TeamPost,
    TeamPostKind,
    TeamPostStatus,
    TeamTopic,
)
from crm.models.pipelines import Deal, DealStageChange, Pipeline, Stage, StageKind
from crm.models.tenancy import ROLE_RANK, ApiKey, Membership, Role, Tenant, User

__all__ = [
    "ROLE_RANK",
    "ApiKey",
    "AuthorType",
    "BusinessLink",
    "ChannelConnection",
    "Company",
    "Consent",
    "Contact",
    "Conversation",
    "ConversationStatus",
    "Deal",
    "DealStageChange",
    "Direction",
    "Event",
    "HandledEvent",
    "Invite",
    "Membership",
    "Message",
    "Note",
    "OperatorNotification",
    "OutboxEntry",
    "PendingStatus",
    "Pipeline",
    "ProcessedUpdate",
    "Role",
    "Stage",
    "StageKind",
    "Tag",
    "TeamInbox",
    "TeamPost",
    "TeamPostKind",
    "TeamPostStatus",
    "TeamTopic",
    "Tenant",
    "User",
]
