"""Reply drafts: ask the AI for one, read it, send it (as written or edited), reject, redo."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from crm.api.ai.memory import CitationOut
from crm.api.dependencies import ActorDep, AssistantDep
from crm.api.schemas import BigId, Id, StrictModel
from crm.models import Draft
from crm.services.ai import drafts

router = APIRouter(tags=["ai"])


class DraftOut(BaseModel):
    id: int
    conversation_id: int
    lead_message_id: int | None
    text: str
    lead: str | None = None  # the name of the lead the passage is about
    source: str
    rationale: str
    citations: list[CitationOut]
    model: str | None
    status: str
    final_text: str | None
    sent_message_id: int | None
    created_at: dt.datetime
    decided_at: dt.datetime | None


class SendDraftIn(StrictModel):
    text: str | None = Field(
        default=None, min_length=1, max_length=4096, description="the operator's corrected text"
    )


def draft_out(draft: Draft) -> DraftOut:
    """The API view of a draft."""
    return DraftOut(
        id=draft.id,
        conversation_id=draft.conversation_id,
        lead_message_id=draft.lead_message_id,
        text=draft.text,
        source=draft.source.value,
        rationale=draft.rationale,
        citations=[CitationOut(**c) for c in draft.citations or []],  # type: ignore[arg-type]
        model=draft.model,
        status=draft.status.value,
        final_text=draft.final_text,
        sent_message_id=draft.sent_message_id,
        created_at=draft.created_at,
        decided_at=draft.decided_at,
    )


@router.post(
    "/conversations/{conversation_id}/drafts",
    response_model=DraftOut,
    status_code=status.HTTP_201_CREATED,
)
async def post_draft(conversation_id: Id, actor: ActorDep, assistant: AssistantDep) -> DraftOut:
    """Draft a reply to the lead's latest message (pending until an operator decides)."""
    return draft_out(await assistant.draft_reply(actor, conversation_id))


@router.get("/drafts/{draft_id}", response_model=DraftOut)
async def get_draft(draft_id: BigId, actor: ActorDep) -> DraftOut:
    """One draft."""
    return draft_out(await drafts.access_draft(actor, draft_id))


@router.post("/drafts/{draft_id}/send", response_model=DraftOut)
async def send_draft(draft_id: BigId, body: SendDraftIn, actor: ActorDep) -> DraftOut:
    """Send a draft as written, or with ``text`` (recorded as an edit)."""
    return draft_out(await drafts.do_send_draft(actor, draft_id, body.text))


@router.post("/drafts/{draft_id}/reject", response_model=DraftOut)
async def reject_draft(draft_id: BigId, actor: ActorDep) -> DraftOut:
    """Throw a draft away."""
    return draft_out(await drafts.do_reject_draft(actor, draft_id))


@router.post(
    "/drafts/{draft_id}/regenerate",
    response_model=DraftOut,
    status_code=status.HTTP_201_CREATED,
)
async def regenerate_draft(draft_id: BigId, actor: ActorDep, assistant: AssistantDep) -> DraftOut:
    """A new draft instead of this one."""
    return draft_out(await assistant.regenerate(actor, draft_id))
