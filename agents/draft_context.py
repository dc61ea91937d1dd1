"""What a reply draft is written from: the conversation, its lead and deal, the message answered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crm.models import Contact, Conversation, Deal, Direction, MemorySource, Message, Stage
from crm.services.access import Actor
from crm.services.pipeline import deal_cards

THREAD_MESSAGES = 12


@dataclass
class DraftContext:
    """What a draft is written from: the conversation, its lead, and the message answered."""

    conversation: Conversation
    contact: Contact
    lead_message: Message | None
    thread: list[Message]
    deal: Deal | None = None  # the lead's latest open deal, with its stage
    # Texts already proposed for this lead message (Regenerate asks for another one).
    offered: tuple[str, ...] = ()

    @property
    def question(self) -> str:
        """The text being answered."""
        return (self.lead_message.text if self.lead_message else "") or ""

    @property
    def question_source(self) -> tuple[MemorySource, int] | None:
        """The record the question is (its vector may be stored already)."""
        return (MemorySource.MESSAGE, self.lead_message.id) if self.lead_message else None


async def load_context(conversation: Conversation, offered: Sequence[str] = ()) -> DraftContext:
    """The lead, their latest message and the recent thread of a conversation."""
    contact = await Contact.get(id=conversation.contact_id)
    thread = list(
        reversed(
            await Message.filter(conversation_id=conversation.id)
            .order_by("-id")
            .limit(THREAD_MESSAGES)
        )
    )
    lead_message = next((m for m in reversed(thread) if m.direction is Direction.IN), None)
    deal = await deal_cards.latest_open_deal(Actor.system(conversation.tenant_id), contact.id)
    return DraftContext(conversation, contact, lead_message, thread, deal, tuple(offered))


def lead_facts(contact: Contact | None, deal: Deal | None) -> dict[str, Any]:
    """What a prompt may know about the lead and their open deal."""
    facts: dict[str, Any] = {}
    if contact is not None:
        facts["contact"] = {
            "name": contact.name,
            "title": contact.title,
            "timezone": contact.timezone,
            "score": contact.score,
            "opted_out": contact.consent.value == "opted_out",
        }
    if deal is not None:
        # A Stage when the deal was fetched with select_related("stage"), else a query.
        stage = deal.stage
        facts["deal"] = {
            "title": deal.title,
            "stage": stage.name if isinstance(stage, Stage) else None,
            "value": str(deal.value),
            "currency": deal.currency,
        }
    return facts
