"""Catalog: conversations and messages, and the AI (drafts, agents, knowledge)."""

from __future__ import annotations

from crm.models.ai import DraftStatus
from crm.services.events.event_types import (
    AiControlBefore,
    DocSummary,
    EventType,
    MessageTextBefore,
    SnapshotCreated,
    SnapshotDeleted,
    SnapshotUpdated,
)

# Bases shared by several types (no ``type`` of their own)


class AiControlChanged(EventType):
    """The AI's standing in a conversation changed."""

    before_shape = AiControlBefore
    mode: str
    handed_off: bool
    reason: str | None


class MessageChange(EventType):
    """A lead changed a message they sent."""

    before_shape = MessageTextBefore
    conversation_id: int
    text: str
    deleted: bool


class DraftDecision(EventType):
    """An operator decided on a draft."""

    conversation_id: int
    status: str


# Conversations and messages


class ConversationRead(SnapshotUpdated):
    """A conversation was marked read."""

    type = "conversation.read"
    entity_type = "conversation"


class ConversationAssigned(SnapshotUpdated):
    """A conversation was assigned or unassigned."""

    type = "conversation.assigned"
    entity_type = "conversation"


class ConversationSnoozed(SnapshotUpdated):
    """A conversation was snoozed or woken."""

    type = "conversation.snoozed"
    entity_type = "conversation"


class ConversationClosed(SnapshotUpdated):
    """A conversation was closed."""

    type = "conversation.closed"
    entity_type = "conversation"


class ConversationReopened(SnapshotUpdated):
    """A conversation was reopened."""

    type = "conversation.reopened"
    entity_type = "conversation"


class ConversationNoteAdded(EventType):
    """An operator left an internal note in a conversation."""

    type = "conversation.note_added"
    entity_type = "message"
    conversation_id: int
    text: str


class AiModeSet(AiControlChanged):
    """The AI's mode in a conversation changed."""

    type = "conversation.ai_mode_set"
    entity_type = "conversation"


class AiHandedOff(AiControlChanged):
    """The AI handed a conversation to the operators."""

    type = "conversation.ai_handed_off"
    entity_type = "conversation"


class AiHandedBack(AiControlChanged):
    """The operators handed a conversation back to the AI."""

    type = "conversation.ai_handed_back"
    entity_type = "conversation"


class MessageReceived(EventType):
    """A lead's message arrived."""

    type = "message.received"
    entity_type = "message"
    conversation_id: int
    contact_id: int
    connection_id: int
    channel: str
    kind: str
    text: str
    reopened: bool
    assignee_id: int | None


class MessageQueued(EventType):
    """An outgoing message was queued for delivery."""

    type = "message.queued"
    entity_type = "message"
    conversation_id: int
    channel: str
    kind: str
    text: str
    marketing: bool


class MessageSent(EventType):
    """The messenger accepted an outgoing message."""

    type = "message.sent"
    entity_type = "message"
    conversation_id: int
    external_id: str | None
    author_user_id: int | None


class MessageStatusChanged(EventType):
    """An outgoing message was delivered, read or failed."""

    type = "message.status_changed"
    entity_type = "message"
    conversation_id: int
    status: str
    error_code: int | None
    error_title: str | None
    author_user_id: int | None


class MessageEdited(MessageChange):
    """A lead edited a message."""

    type = "message.edited"
    entity_type = "message"


class MessageDeleted(MessageChange):
    """A lead deleted a message."""

    type = "message.deleted"
    entity_type = "message"


class MessageClassified(EventType):
    """A lead's message got an intent."""

    type = "message.classified"
    entity_type = "message"
    intent: str
    confidence: float
    source: str


class MessageIntentCorrected(EventType):
    """An operator corrected a message's intent."""

    type = "message.intent_corrected"
    entity_type = "message"
    intent: str
    predicted: str | None


# AI: drafts, agents, knowledge


class AiSettingsUpdated(SnapshotUpdated):
    """The workspace's AI settings changed (secrets left out)."""

    type = "ai.settings_updated"
    entity_type = "ai_settings"


class DraftCreated(EventType):
    """A reply was drafted for an operator to decide on."""

    type = "draft.created"
    entity_type = "draft"
    conversation_id: int
    source: str
    agent_id: int | None


class DraftSent(DraftDecision):
    """A draft was approved as written."""

    type = "draft.sent"
    entity_type = "draft"


class DraftEdited(DraftDecision):
    """A draft was sent with the operator's corrections."""

    type = "draft.edited"
    entity_type = "draft"


class DraftRejected(DraftDecision):
    """A draft was rejected."""

    type = "draft.rejected"
    entity_type = "draft"


class DraftRegenerated(DraftDecision):
    """A draft was replaced by a new one."""

    type = "draft.regenerated"
    entity_type = "draft"


class AgentCreated(SnapshotCreated):
    """An AI agent was created."""

    type = "agent.created"
    entity_type = "agent"


class AgentUpdated(SnapshotUpdated):
    """An AI agent's settings changed."""

    type = "agent.updated"
    entity_type = "agent"


class AgentRunQueued(EventType):
    """An agent run was queued."""

    type = "agent.run_queued"
    entity_type = "agent_run"
    agent_id: int
    trigger: str


class AgentRunFinished(EventType):
    """An agent run ended."""

    type = "agent.run_finished"
    entity_type = "agent_run"
    agent_id: int
    status: str
    conversation_id: int | None
    messages_sent: int
    drafts_created: int


class FollowUpScheduled(EventType):
    """An agent scheduled a follow-up."""

    type = "follow_up.scheduled"
    entity_type = "follow_up"
    conversation_id: int | None
    due_at: str


class KnowledgeCreated(DocSummary, EventType):
    """A knowledge document was added."""

    type = "knowledge.created"
    entity_type = "knowledge_doc"


class KnowledgeUpdated(DocSummary, EventType):
    """A knowledge document changed."""

    type = "knowledge.updated"
    entity_type = "knowledge_doc"
    before_shape = DocSummary


class KnowledgeDeleted(SnapshotDeleted):
    """A knowledge document was deleted."""

    type = "knowledge.deleted"
    entity_type = "knowledge_doc"


# The decisions on a draft by its new status (pending is no decision).
DRAFT_DECISIONS: dict[DraftStatus, type[DraftDecision]] = {
    DraftStatus.SENT: DraftSent,
    DraftStatus.EDITED: DraftEdited,
    DraftStatus.REJECTED: DraftRejected,
    DraftStatus.REGENERATED: DraftRegenerated,
}
