"""Catalog: the workspace, its members, keys and channels; contacts, companies, deals."""

from __future__ import annotations

from crm.services.events.event_types import (
    EventType,
    MemberRole,
    Payload,
    SnapshotCreated,
    SnapshotDeleted,
    SnapshotUpdated,
    StageIds,
    Tags,
    TeamInboxChat,
)

# Bases shared by several types (no ``type`` of their own)


class BusinessLink(EventType):
    """A Telegram Business account link changed."""

    entity_type = "business_link"
    connection_id: int
    rep_telegram_id: int
    user_id: int | None
    can_reply: bool


class Score(Payload):
    """A contact's lead score."""

    score: float | None


# Workspace, members, keys and channels


class TenantCreated(SnapshotCreated):
    """A workspace was created."""

    type = "tenant.created"
    entity_type = "tenant"


class TenantUpdated(SnapshotUpdated):
    """A workspace's settings changed."""

    type = "tenant.updated"
    entity_type = "tenant"


class MemberAdded(MemberRole, EventType):
    """Someone joined the workspace (by the invite ``invite_id``, if any)."""

    type = "member.added"
    entity_type = "membership"
    invite_id: int | None = None


class MemberRoleChanged(MemberRole, EventType):
    """A member's role changed."""

    type = "member.role_changed"
    entity_type = "membership"
    before_shape = MemberRole


class MemberRemoved(EventType):
    """A member left or was removed."""

    type = "member.removed"
    entity_type = "membership"
    before_shape = MemberRole


class InviteCreated(EventType):
    """An invite was issued (``addressed``: to a user it does not name)."""

    type = "invite.created"
    entity_type = "invite"
    role: str
    expires_at: str
    addressed: bool | None = None


class InviteDeclined(EventType):
    """An invite was declined."""

    type = "invite.declined"
    entity_type = "invite"


class ApiKeyCreated(EventType):
    """An API key was issued."""

    type = "api_key.created"
    entity_type = "api_key"
    name: str
    prefix: str
    user_id: int | None
    scopes: list[str]


class ApiKeyRevoked(EventType):
    """An API key was revoked."""

    type = "api_key.revoked"
    entity_type = "api_key"
    prefix: str


class ChannelConnected(SnapshotCreated):
    """A messenger channel was connected (after: its public view)."""

    type = "channel.connected"
    entity_type = "channel_connection"


class ChannelUpdated(SnapshotUpdated):
    """A channel's settings changed (before and after: its public view)."""

    type = "channel.updated"
    entity_type = "channel_connection"


class BusinessConnected(BusinessLink):
    """A rep connected their Telegram Business account."""

    type = "channel.business_connected"


class BusinessDisconnected(BusinessLink):
    """A rep disconnected their Telegram Business account."""

    type = "channel.business_disconnected"


class TeamInboxLinked(TeamInboxChat, EventType):
    """A Telegram group became the team inbox."""

    type = "team_inbox.linked"
    entity_type = "team_inbox"
    previous_chat_id: int | None


class TeamInboxUnlinked(EventType):
    """The team inbox group was unlinked."""

    type = "team_inbox.unlinked"
    entity_type = "team_inbox"
    before_shape = TeamInboxChat


# Contacts, companies, tags and notes


class ContactCreated(SnapshotCreated):
    """A contact was created."""

    type = "contact.created"
    entity_type = "contact"


class ContactUpdated(SnapshotUpdated):
    """A contact changed (before and after: the changed fields or whole snapshots)."""

    type = "contact.updated"
    entity_type = "contact"


class ContactDeleted(SnapshotDeleted):
    """A contact was deleted."""

    type = "contact.deleted"
    entity_type = "contact"


class ContactOptedOut(SnapshotUpdated):
    """A contact opted out of marketing (after: with the ``reason``)."""

    type = "contact.opted_out"
    entity_type = "contact"


class ContactOptedIn(SnapshotUpdated):
    """A contact opted back into marketing (after: with the ``reason``)."""

    type = "contact.opted_in"
    entity_type = "contact"


class ContactScored(EventType):
    """A contact's lead score changed."""

    type = "contact.scored"
    entity_type = "contact"
    before_shape = Score
    score: float
    intent: str | None


class ContactTagsAdded(Tags, EventType):
    """Tags were put on a contact."""

    type = "contact.tags_added"
    entity_type = "contact"
    before_shape = Tags


class ContactTagRemoved(Tags, EventType):
    """A tag was taken off a contact."""

    type = "contact.tag_removed"
    entity_type = "contact"
    before_shape = Tags


class ContactsImported(EventType):
    """A file of contacts was imported (no entity id: many contacts)."""

    type = "contacts.imported"
    entity_type = "contact"
    created: int
    updated: int
    skipped: int
    rejected: int
    overwrite: bool


class CompanyCreated(SnapshotCreated):
    """A company was created."""

    type = "company.created"
    entity_type = "company"


class CompanyUpdated(SnapshotUpdated):
    """A company changed."""

    type = "company.updated"
    entity_type = "company"


class CompanyDeleted(SnapshotDeleted):
    """A company was deleted."""

    type = "company.deleted"
    entity_type = "company"


class TagCreated(SnapshotCreated):
    """A tag was created."""

    type = "tag.created"
    entity_type = "tag"


class TagUpdated(SnapshotUpdated):
    """A tag was renamed."""

    type = "tag.updated"
    entity_type = "tag"


class TagDeleted(SnapshotDeleted):
    """A tag was deleted (before: with the contacts it was on)."""

    type = "tag.deleted"
    entity_type = "tag"


class NoteCreated(SnapshotCreated):
    """A note was written."""

    type = "note.created"
    entity_type = "note"


class NoteUpdated(SnapshotUpdated):
    """A note was changed."""

    type = "note.updated"
    entity_type = "note"


class NoteDeleted(SnapshotDeleted):
    """A note was deleted."""

    type = "note.deleted"
    entity_type = "note"


# Deals and pipelines


class DealCreated(SnapshotCreated):
    """A deal was created."""

    type = "deal.created"
    entity_type = "deal"


class DealUpdated(SnapshotUpdated):
    """A deal changed."""

    type = "deal.updated"
    entity_type = "deal"


class DealStageChanged(SnapshotUpdated):
    """A deal moved to another stage (after: with the automation ``rule``, if one moved it)."""

    type = "deal.stage_changed"
    entity_type = "deal"


class DealDeleted(SnapshotDeleted):
    """A deal was deleted."""

    type = "deal.deleted"
    entity_type = "deal"


class PipelineCreated(SnapshotCreated):
    """A pipeline was created (after: with its stages)."""

    type = "pipeline.created"
    entity_type = "pipeline"


class PipelineUpdated(SnapshotUpdated):
    """A pipeline was renamed or made the default."""

    type = "pipeline.updated"
    entity_type = "pipeline"


class PipelineDeleted(SnapshotDeleted):
    """A pipeline was deleted (before: with its stages)."""

    type = "pipeline.deleted"
    entity_type = "pipeline"


class PipelineStagesReordered(StageIds, EventType):
    """A pipeline's stages were put in another order."""

    type = "pipeline.stages_reordered"
    entity_type = "pipeline"
    before_shape = StageIds


class StageCreated(SnapshotCreated):
    """A stage was added to a pipeline."""

    type = "stage.created"
    entity_type = "stage"


class StageUpdated(SnapshotUpdated):
    """A stage changed."""

    type = "stage.updated"
    entity_type = "stage"


class StageDeleted(SnapshotDeleted):
    """A stage was deleted."""

    type = "stage.deleted"
    entity_type = "stage"
