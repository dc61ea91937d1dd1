"""HTTP views of the AI (/api/v1/ai, drafts, knowledge base): parse, call the assistant, render."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, Field

from agents.assistant import MAX_QUESTION, Assistant
from crm.api.deps import ActorDep
from crm.api.schemas import BigId, Finite, Id, ListOut, PageLimit, StrictModel, not_null
from crm.models import AiCall, AiSettings, Draft, KnowledgeDoc, MessageIntent
from crm.services import ai_settings, drafts, intents, knowledge
from crm.services.access import Actor
from crm.services.ai_settings import INTENTS, MAX_COST, MAX_TIMEOUT, MIN_TIMEOUT
from crm.services.cipher import CredentialCipher


def _assistant(request: Request) -> Assistant:
    return request.app.state.assistant


def _cipher(request: Request) -> CredentialCipher:
    return request.app.state.cipher


AssistantDep = Annotated[Assistant, Depends(_assistant)]
CipherDep = Annotated[CredentialCipher, Depends(_cipher)]


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


class ClassifyIn(StrictModel):
    text: str = Field(min_length=1, max_length=MAX_QUESTION)


class ClassifyOut(BaseModel):
    intent: str
    confidence: float
    language: str
    source: str


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


class IntentIn(StrictModel):
    intent: str = Field(description=f"one of {', '.join(INTENTS)}")


class IntentOut(BaseModel):
    message_id: int
    intent: str
    confidence: float
    source: str
    predicted_intent: str
    language: str


class SettingsOut(BaseModel):
    model: str
    api_base: str | None
    api_key_set: bool
    fallbacks: list[str]
    timeout_seconds: float
    max_retries: int
    input_cost_per_million: float | None
    output_cost_per_million: float | None
    business_profile: str
    intent_rules: dict[str, str]
    handoff_confidence: float
    banned_phrases: list[str]
    quiet_start_hour: int
    quiet_end_hour: int
    default_ai_mode: str


class SettingsPatch(StrictModel):
    model: str | None = Field(default=None, max_length=200, description="empty: no model")
    api_base: str | None = Field(default=None, max_length=500)
    api_key: str | None = Field(default=None, max_length=500, description="empty clears it")
    fallbacks: list[Annotated[str, Field(max_length=200)]] | None = Field(
        default=None, max_length=5
    )
    timeout_seconds: Finite | None = Field(
        default=None, ge=MIN_TIMEOUT, le=MAX_TIMEOUT, description="seconds per model call"
    )
    max_retries: int | None = Field(default=None, ge=0, le=5)
    input_cost_per_million: Finite | None = Field(default=None, ge=0, le=MAX_COST)
    output_cost_per_million: Finite | None = Field(default=None, ge=0, le=MAX_COST)
    business_profile: str | None = Field(default=None, max_length=4000)
    intent_rules: dict[str, str] | None = None
    handoff_confidence: float | None = Field(default=None, ge=0, le=1)
    banned_phrases: list[Annotated[str, Field(max_length=200)]] | None = Field(
        default=None, max_length=200
    )
    quiet_start_hour: int | None = Field(default=None, ge=0, le=23)
    quiet_end_hour: int | None = Field(default=None, ge=0, le=23)
    default_ai_mode: Literal["off", "draft", "autonomous"] | None = Field(
        default=None, description="the AI mode new conversations start in"
    )

    # These columns always hold a value: null is a 422, leaving the field out keeps it.
    _not_null = not_null(*ai_settings.NOT_NULL)


class DocIn(StrictModel):
    title: str = Field(min_length=1, max_length=knowledge.MAX_TITLE)
    text: str = Field(min_length=1, max_length=knowledge.MAX_TEXT)


class DocPatch(StrictModel):
    title: str | None = Field(default=None, min_length=1, max_length=knowledge.MAX_TITLE)
    text: str | None = Field(default=None, min_length=1, max_length=knowledge.MAX_TEXT)


class DocOut(BaseModel):
    id: int
    title: str
    text: str
    lead: str | None = None  # the name of the lead the passage is about
    created_at: dt.datetime
    updated_at: dt.datetime


class RatesOut(BaseModel):
    acceptance: float | None = Field(description="sent as written / decided")
    edit: float | None = Field(description="sent after edits / decided")
    rejection: float | None = Field(description="rejected / decided")


class DraftCountsOut(BaseModel):
    total: int
    pending: int
    sent: int
    edited: int
    rejected: int
    regenerated: int
    by_source: dict[str, dict[str, int]]


class UsageOut(BaseModel):
    calls: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    by_purpose: dict[str, dict[str, float]]


class MetricsOut(BaseModel):
    drafts: DraftCountsOut
    rates: RatesOut
    intents: dict[str, int]
    corrections: int
    usage: UsageOut


def _settings_out(row: AiSettings) -> SettingsOut:
    return SettingsOut(
        model=row.model,
        api_base=row.api_base,
        api_key_set=bool(row.api_key_encrypted),
        fallbacks=list(row.fallbacks or []),
        timeout_seconds=row.timeout_seconds,
        max_retries=row.max_retries,
        input_cost_per_million=row.input_cost_per_million,
        output_cost_per_million=row.output_cost_per_million,
        business_profile=row.business_profile,
        intent_rules=ai_settings.intent_rules_of(row),
        handoff_confidence=row.handoff_confidence,
        banned_phrases=list(row.banned_phrases or []),
        quiet_start_hour=row.quiet_start_hour,
        quiet_end_hour=row.quiet_end_hour,
        default_ai_mode=row.default_ai_mode,
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


def _intent_out(row: MessageIntent) -> IntentOut:
    return IntentOut(
        message_id=row.message_id,
        intent=row.intent,
        confidence=row.confidence,
        source=row.source,
        predicted_intent=row.predicted_intent,
        language=row.language,
    )


def _doc_out(doc: KnowledgeDoc) -> DocOut:
    return DocOut(
        id=doc.id,
        title=doc.title,
        text=doc.text,
        created_at=doc.created_at,
        updated_at=doc.updated_at,
    )


async def _usage(actor: Actor) -> UsageOut:
    rows = await AiCall.filter(tenant_id=actor.tenant_id).values_list(
        "purpose", "ok", "prompt_tokens", "completion_tokens", "cost_usd"
    )
    by_purpose: dict[str, dict[str, float]] = {}
    for purpose, _ok, prompt, completion, cost in rows:
        entry = by_purpose.setdefault(str(purpose), {"calls": 0, "tokens": 0, "cost_usd": 0.0})
        entry["calls"] += 1
        entry["tokens"] += int(prompt) + int(completion)
        entry["cost_usd"] = round(entry["cost_usd"] + float(cost), 8)
    return UsageOut(
        calls=len(rows),
        failed=sum(1 for r in rows if not r[1]),
        prompt_tokens=sum(int(r[2]) for r in rows),
        completion_tokens=sum(int(r[3]) for r in rows),
        cost_usd=round(sum(float(r[4]) for r in rows), 8),
        by_purpose=by_purpose,
    )


def build_router() -> APIRouter:
    """The AI's routes (mounted under /api/v1 by the composition root)."""
    router = APIRouter(tags=["ai"])

    @router.get("/ai/settings", response_model=SettingsOut)
    async def get_settings(actor: ActorDep) -> SettingsOut:
        """The workspace's model, profile, rules and guardrails (never the API key)."""
        return _settings_out(await ai_settings.access_ai_settings(actor))

    @router.patch("/ai/settings", response_model=SettingsOut)
    async def patch_settings(
        body: SettingsPatch, actor: ActorDep, cipher: CipherDep
    ) -> SettingsOut:
        """Change the AI settings (admins); the API key is stored encrypted."""
        changes: dict[str, Any] = body.model_dump(exclude_unset=True)
        row = await ai_settings.do_update_ai_settings(actor, cipher, changes)
        return _settings_out(row)

    @router.post("/ai/ask", response_model=AskOut)
    async def ask(body: AskIn, actor: ActorDep, assistant: AssistantDep) -> AskOut:
        """Answer a question from the workspace's own messages, notes and knowledge base."""
        answer = await assistant.ask(actor, body.question)
        return AskOut(
            answer=answer.answer,
            citations=[CitationOut(**c) for c in answer.citations],
            source=answer.source,
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

    @router.get("/ai/metrics", response_model=MetricsOut)
    async def metrics(actor: ActorDep) -> MetricsOut:
        """Draft acceptance, edit and rejection rates; intents; model usage and cost."""
        counts = await drafts.draft_metrics(actor)
        intent_rows = await MessageIntent.filter(tenant_id=actor.tenant_id).values_list(
            "intent", "source"
        )
        by_intent: dict[str, int] = {}
        for intent, _source in intent_rows:
            by_intent[str(intent)] = by_intent.get(str(intent), 0) + 1
        return MetricsOut(
            drafts=DraftCountsOut(
                total=counts.total,
                pending=counts.pending,
                sent=counts.sent,
                edited=counts.edited,
                rejected=counts.rejected,
                regenerated=counts.regenerated,
                by_source=counts.by_source,
            ),
            rates=RatesOut(
                acceptance=counts.rate(counts.sent),
                edit=counts.rate(counts.edited),
                rejection=counts.rate(counts.rejected),
            ),
            intents=by_intent,
            corrections=sum(1 for r in intent_rows if r[1] == intents.CORRECTION),
            usage=await _usage(actor),
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
    async def regenerate_draft(
        draft_id: BigId, actor: ActorDep, assistant: AssistantDep
    ) -> DraftOut:
        """A new draft instead of this one."""
        return draft_out(await assistant.regenerate(actor, draft_id))

    @router.get("/messages/{message_id}/intent", response_model=IntentOut)
    async def get_intent(message_id: BigId, actor: ActorDep) -> IntentOut:
        """The intent of a lead message."""
        return _intent_out(await intents.access_intent(actor, message_id))

    @router.put("/messages/{message_id}/intent", response_model=IntentOut)
    async def put_intent(message_id: BigId, body: IntentIn, actor: ActorDep) -> IntentOut:
        """Correct a lead message's intent: the workspace's classifier learns from it."""
        return _intent_out(await intents.do_correct_intent(actor, message_id, body.intent))

    @router.get("/knowledge", response_model=ListOut[DocOut])
    async def list_docs(actor: ActorDep, cursor: str | None = None, limit: PageLimit = 50) -> Any:
        """The knowledge base, newest first."""
        page = await knowledge.list_docs(actor, cursor, limit)
        return ListOut(items=[_doc_out(d) for d in page.items], next_cursor=page.next_cursor)

    @router.post("/knowledge", response_model=DocOut, status_code=status.HTTP_201_CREATED)
    async def post_doc(body: DocIn, actor: ActorDep) -> DocOut:
        """Add a document; it is searchable once a worker embedded it."""
        return _doc_out(await knowledge.do_create_doc(actor, body.title, body.text))

    @router.get("/knowledge/{doc_id}", response_model=DocOut)
    async def get_doc(doc_id: Id, actor: ActorDep) -> DocOut:
        """One document."""
        return _doc_out(await knowledge.access_doc(actor, doc_id))

    @router.patch("/knowledge/{doc_id}", response_model=DocOut)
    async def patch_doc(doc_id: Id, body: DocPatch, actor: ActorDep) -> DocOut:
        """Change a document."""
        return _doc_out(await knowledge.do_update_doc(actor, doc_id, body.title, body.text))

    @router.delete("/knowledge/{doc_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def delete_doc(doc_id: Id, actor: ActorDep) -> None:
        """Delete a document and its passages."""
        await knowledge.do_delete_doc(actor, doc_id)

    return router
