"""The workspace's AI settings and metrics: model, profile, rules, guardrails; rates and usage."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from crm.api.dependencies import ActorDep, CipherDep
from crm.api.schemas import Finite, StrictModel, not_null
from crm.models import AiSettings
from crm.services.ai import drafts, intents
from crm.services.ai import settings as ai_settings
from crm.services.ai.settings import MAX_COST, MAX_TIMEOUT, MIN_TIMEOUT

router = APIRouter(tags=["ai"])


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


@router.get("/ai/settings", response_model=SettingsOut)
async def get_settings(actor: ActorDep) -> SettingsOut:
    """The workspace's model, profile, rules and guardrails (never the API key)."""
    return _settings_out(await ai_settings.access_ai_settings(actor))


@router.patch("/ai/settings", response_model=SettingsOut)
async def patch_settings(body: SettingsPatch, actor: ActorDep, cipher: CipherDep) -> SettingsOut:
    """Change the AI settings (admins); the API key is stored encrypted."""
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    row = await ai_settings.do_update_ai_settings(actor, cipher, changes)
    return _settings_out(row)


@router.get("/ai/metrics", response_model=MetricsOut)
async def metrics(actor: ActorDep) -> MetricsOut:
    """Draft acceptance, edit and rejection rates; intents; model usage and cost."""
    counts = await drafts.draft_metrics(actor)
    intent_counts = await intents.intent_counts(actor)
    usage = await ai_settings.ai_usage(actor)
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
        intents=intent_counts.by_intent,
        corrections=intent_counts.corrections,
        usage=UsageOut(
            calls=usage.calls,
            failed=usage.failed,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=usage.cost_usd,
            by_purpose=usage.by_purpose,
        ),
    )
