"""Questions to the workspace's memory: answers from its own messages, notes and knowledge."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from crm.api.dependencies import ActorDep, AssistantDep
from crm.api.schemas import StrictModel
from crm.assistant import MAX_QUESTION

router = APIRouter(tags=["ai"])


class AskIn(StrictModel):
    question: str = Field(min_length=1, max_length=MAX_QUESTION)


class CitationOut(BaseModel):
    message_id: int | None
    conversation_id: int | None
    source: str
    source_id: int
    text: str
    lead: str | None = None  # the name of the lead the passage is about


class AskOut(BaseModel):
    answer: str
    citations: list[CitationOut]
    source: str


@router.post("/ai/ask", response_model=AskOut)
async def ask(body: AskIn, actor: ActorDep, assistant: AssistantDep) -> AskOut:
    """Answer a question from the workspace's own messages, notes and knowledge base."""
    answer = await assistant.ask(actor, body.question)
    return AskOut(
        answer=answer.answer,
        citations=[CitationOut(**c) for c in answer.citations],
        source=answer.source,
    )
