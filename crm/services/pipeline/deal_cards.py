"""Deals as the operator bot and the agents look them up: a stage's page, a card, a lead's deal.

A stage's deals come a page at a time (``list_stage_deals``), a deal card with its pipeline,
people, latest messages and latest note (``deal_card``), and the open deal of a contact or of a
conversation's contact (``latest_open_deal``, ``deal_of_conversation``), opened when there is
none (``do_open_deal_for_conversation``).
"""

from __future__ import annotations

from dataclasses import dataclass

from crm.errors import NotFound, ValidationFailed
from crm.models import (
    Company,
    Contact,
    Conversation,
    Deal,
    Direction,
    Message,
    Note,
    Pipeline,
    Stage,
    StageKind,
    User,
)
from crm.services.access import Actor
from crm.services.pipeline.deals import access_deal, do_create_deal

STAGE_PAGE_SIZE = 8
RECENT_MESSAGES = 3


@dataclass(frozen=True)
class StageDeals:
    """One page of the deals in a stage, newest first."""

    stage: Stage
    pipeline: Pipeline
    deals: list[Deal]
    total: int
    page: int  # from 0, clamped to the last page
    pages: int  # at least 1


async def list_stage_deals(
    actor: Actor, stage_id: int, *, page: int = 0, per_page: int = STAGE_PAGE_SIZE
) -> StageDeals:
    """The deals of one stage a page at a time (offset pages: short ids fit a button)."""
    actor.require_read()
    if per_page < 1:
        raise ValidationFailed("per_page", "must be at least 1")
    stage = await Stage.filter(id=stage_id, tenant_id=actor.tenant_id).first()
    if stage is None:
        raise NotFound("stage", stage_id)
    pipeline = await Pipeline.filter(id=stage.pipeline_id).get()
    query = Deal.filter(tenant_id=actor.tenant_id, stage_id=stage.id)
    total = await query.count()
    pages = max(1, -(-total // per_page))
    page = min(max(page, 0), pages - 1)
    deals = await query.order_by("-id").offset(page * per_page).limit(per_page)
    return StageDeals(stage, pipeline, list(deals), total, page, pages)


@dataclass(frozen=True)
class DealCard:
    """Everything a deal card shows."""

    deal: Deal
    pipeline: Pipeline
    stages: list[Stage]
    contact: Contact | None
    company: Company | None  # the deal's, else its contact's
    owner: User | None
    # The last messages (not private notes) of the contact's latest conversation, oldest first.
    recent_messages: list[Message]
    last_note: Note | None
    note_count: int


async def deal_card(actor: Actor, deal_id: int) -> DealCard:
    """A deal with its pipeline's stages, people, latest messages and latest note."""
    deal = await access_deal(actor, deal_id)
    tenant = actor.tenant_id
    pipeline = await Pipeline.filter(id=deal.pipeline_id, tenant_id=tenant).get()
    contact = (
        await Contact.filter(id=deal.contact_id, tenant_id=tenant).first()
        if deal.contact_id is not None
        else None
    )
    company_id = deal.company_id or (contact.company_id if contact is not None else None)
    company = (
        await Company.filter(id=company_id, tenant_id=tenant).first()
        if company_id is not None
        else None
    )
    owner = await User.filter(id=deal.owner_id).first() if deal.owner_id is not None else None
    recent: list[Message] = []
    if contact is not None:
        conversation = (
            await Conversation.filter(tenant_id=tenant, contact_id=contact.id)
            .order_by("-last_message_at", "-id")
            .first()
        )
        if conversation is not None:
            latest = (
                await Message.filter(
                    tenant_id=tenant,
                    conversation_id=conversation.id,
                    direction__in=[Direction.IN, Direction.OUT],
                    deleted=False,
                )
                .order_by("-id")
                .limit(RECENT_MESSAGES)
            )
            recent = list(reversed(latest))
    notes = Note.filter(tenant_id=tenant, deal_id=deal.id)
    return DealCard(
        deal=deal,
        pipeline=pipeline,
        stages=list(await Stage.filter(pipeline_id=pipeline.id).order_by("position", "id")),
        contact=contact,
        company=company,
        owner=owner,
        recent_messages=recent,
        last_note=await notes.order_by("-id").first(),
        note_count=await notes.count(),
    )


async def latest_open_deal(actor: Actor, contact_id: int) -> Deal | None:
    """The contact's most recent deal that sits in an open stage, if any."""
    actor.require_read()
    deal = (
        await Deal.filter(
            tenant_id=actor.tenant_id, contact_id=contact_id, stage__kind=StageKind.OPEN
        )
        .select_related("stage")
        .order_by("-id")
        .first()
    )
    return deal


@dataclass(frozen=True)
class ConversationDeal:
    """A conversation, its contact and the contact's latest open deal (None when none)."""

    conversation: Conversation
    contact: Contact
    deal: Deal | None


async def deal_of_conversation(actor: Actor, conversation_id: int) -> ConversationDeal:
    """The latest open deal of a conversation's contact."""
    actor.require_read()
    conversation = await Conversation.filter(id=conversation_id, tenant_id=actor.tenant_id).first()
    if conversation is None:
        raise NotFound("conversation", conversation_id)
    contact = await Contact.filter(id=conversation.contact_id, tenant_id=actor.tenant_id).get()
    return ConversationDeal(conversation, contact, await latest_open_deal(actor, contact.id))


def title_for_contact(contact: Contact) -> str:
    """A deal title named after a contact: their name, else how they are reached."""
    if contact.name.strip():
        return contact.name.strip()[:200]
    if contact.phone:
        return contact.phone
    if contact.telegram_username:
        return f"@{contact.telegram_username}"
    if contact.whatsapp_id:
        return f"+{contact.whatsapp_id}"
    if contact.email:
        return contact.email[:200]
    return f"Contact {contact.id}"


async def do_open_deal_for_conversation(actor: Actor, conversation_id: int) -> tuple[Deal, bool]:
    """The contact's open deal, created when there is none; True when it was created.

    A new deal is titled after the contact, linked to the contact and their company, owned by
    the actor, and starts in the default pipeline's first open stage.
    """
    actor.require_write()
    found = await deal_of_conversation(actor, conversation_id)
    if found.deal is not None:
        return found.deal, False
    contact = found.contact
    deal = await do_create_deal(
        actor,
        title_for_contact(contact),
        contact_id=contact.id,
        company_id=contact.company_id,
    )
    return deal, True
