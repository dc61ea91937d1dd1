"""What lead messages mean: classify a text, read and correct a message's intent."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from crm.api.dependencies import ActorDep, AssistantDep
from crm.api.schemas import BigId, StrictModel
from crm.assistant import MAX_QUESTION
from crm.models import MessageIntent
from crm.services.ai import intents
from crm.services.ai.settings import INTENTS

router = APIRouter(tags=["ai"])


class ClassifyIn(StrictModel):
    text: str = Field(min_length=1, max_length=MAX_QUESTION)


class ClassifyOut(BaseModel):
    intent: str
    confidence: float
    language: str
    source: str


class IntentIn(StrictModel):
    intent: str = Field(description=f"one of {', '.join(INTENTS)}")


class IntentOut(BaseModel):
    message_id: int
    intent: str
    confidence: float
    source: str
    predicted_intent: str
    language: str


def _intent_out(row: MessageIntent) -> IntentOut:
    return IntentOut(
        message_id=row.message_id,
        intent=row.intent,
        confidence=row.confidence,
        source=row.source,
        predicted_intent=row.predicted_intent,
        language=row.language,
    )


@router.post("/ai/classify", response_model=ClassifyOut)
async def classify(body: ClassifyIn, actor: ActorDep, assistant: AssistantDep) -> ClassifyOut:
    """The intent of a lead's text: interested, meeting_request, question, not_now, ..."""
    verdict = await assistant.classify(actor, body.text)
    return ClassifyOut(
        intent=verdict.intent,
        confidence=verdict.confidence,
        language=verdict.language,
        source=verdict.source,
    )


@router.get("/messages/{message_id}/intent", response_model=IntentOut)
async def get_intent(message_id: BigId, actor: ActorDep) -> IntentOut:
    """The intent of a lead message."""
    return _intent_out(await intents.access_intent(actor, message_id))


@router.put("/messages/{message_id}/intent", response_model=IntentOut)
async def put_intent(message_id: BigId, body: IntentIn, actor: ActorDep) -> IntentOut:
    """Correct a lead message's intent: the workspace's classifier learns from it."""
    return _intent_out(await intents.do_correct_intent(actor, message_id, body.intent))
