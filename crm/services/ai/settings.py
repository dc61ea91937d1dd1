"""A workspace's AI settings: its model (or none), business profile, rules and guardrails.

The model's API key is encrypted at rest with the credential cipher and never returned; the
settings say only whether one is set. No model configured means the offline helpers answer
(retrieval drafts, the n-gram intent classifier), and every answer says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from tortoise.transactions import in_transaction

from crm.errors import ValidationFailed
from crm.infrastructure.cipher import CredentialCipher
from crm.models import AiCall, AiSettings
from crm.services.access import Actor
from crm.services.events.catalog import AiSettingsUpdated
from crm.services.events.recording import record_event, snapshot
from crm.services.text import clean_text

INTENTS: tuple[str, ...] = (
    "interested",
    "meeting_request",
    "question",
    "not_now",
    "not_interested",
    "unsubscribe",
    "out_of_office",
    "wrong_person",
)
# What an intent does to the lead's open deal unless the tenant says otherwise: a stage name,
# or ``opt_out``. Any reply at all moves a deal from Cold to Replied (REPLY_RULE).
DEFAULT_INTENT_RULES: dict[str, str] = {
    "meeting_request": "Meeting",
    "not_interested": "Lost",
    "unsubscribe": "opt_out",
}
REPLY_RULE = ("Cold", "Replied")
OPT_OUT_ACTION = "opt_out"
NO_ACTION = "none"
# A model call gets 1 to 300 seconds: a smaller timeout fails every call (the model is silently
# gone), a larger one holds a worker for minutes.
MIN_TIMEOUT = 1.0
MAX_TIMEOUT = 300.0
MAX_COST = 1_000_000.0  # dollars per million tokens
# Settings whose column holds a value: they can be changed, never set to null.
NOT_NULL = (
    "timeout_seconds",
    "max_retries",
    "business_profile",
    "handoff_confidence",
    "quiet_start_hour",
    "quiet_end_hour",
    "default_ai_mode",
)
_MODEL_RE = re.compile(r"^[A-Za-z0-9._:/@+-]{1,200}$")
SETTINGS_HIDDEN = frozenset({"api_key_encrypted"})


@dataclass(frozen=True)
class ModelConfig:
    """The decrypted model settings of one workspace, as the AI edge needs them."""

    model: str
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    fallbacks: tuple[str, ...] = ()
    timeout_seconds: float = 30.0
    max_retries: int = 1
    input_cost_per_million: float | None = None
    output_cost_per_million: float | None = None

    @property
    def chain(self) -> tuple[str, ...]:
        """The models tried in order: the main one, then the fallbacks."""
        return (self.model, *self.fallbacks)

    @property
    def has_prices(self) -> bool:
        """Whether the config prices its tokens itself."""
        return self.input_cost_per_million is not None or self.output_cost_per_million is not None


async def settings_of(tenant_id: int) -> AiSettings:
    """The workspace's AI settings row (defaults when it never saved any)."""
    row = await AiSettings.get_or_none(tenant_id=tenant_id)
    return row if row is not None else AiSettings(tenant_id=tenant_id)


async def model_config_of(tenant_id: int, cipher: CredentialCipher) -> ModelConfig | None:
    """The workspace's model, decrypted; None when it configured none."""
    row = await AiSettings.get_or_none(tenant_id=tenant_id)
    if row is None or not row.model:
        return None
    api_key = None
    if row.api_key_encrypted:
        api_key = cipher.decrypt(row.api_key_encrypted).get("api_key")
    return ModelConfig(
        model=row.model,
        api_base=row.api_base,
        api_key=str(api_key) if api_key else None,
        fallbacks=tuple(row.fallbacks or ()),
        # A row saved before the bounds existed may hold 5e-324: that would fail every call.
        timeout_seconds=min(max(row.timeout_seconds, MIN_TIMEOUT), MAX_TIMEOUT),
        max_retries=row.max_retries,
        input_cost_per_million=row.input_cost_per_million,
        output_cost_per_million=row.output_cost_per_million,
    )


def intent_rules_of(row: AiSettings) -> dict[str, str]:
    """The tenant's intent rules over the defaults."""
    return {**DEFAULT_INTENT_RULES, **(row.intent_rules or {})}


async def access_ai_settings(actor: Actor) -> AiSettings:
    """Every member reads the settings (the key itself is never part of them)."""
    actor.require_read()
    return await settings_of(actor.tenant_id)


def _clean_model(name: str, field_name: str) -> str:
    name = name.strip()
    if name and not _MODEL_RE.match(name):
        raise ValidationFailed(field_name, "must be a model name like openai/gpt-4o-mini")
    return name


def _clean_changes(changes: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in changes.items():
        if value is None and key in NOT_NULL:
            raise ValidationFailed(key, "must not be null (leave the field out to keep its value)")
        if key == "model":
            clean[key] = _clean_model(str(value or ""), "model")
        elif key == "fallbacks":
            clean[key] = [_clean_model(str(v), "fallbacks") for v in value or []]
            if "" in clean[key]:
                raise ValidationFailed("fallbacks", "must not contain empty names")
        elif key == "api_base":
            if value:
                parsed = urlparse(str(value))
                if parsed.scheme not in ("http", "https") or not parsed.netloc:
                    raise ValidationFailed("api_base", "must be an http(s) URL")
            clean[key] = str(value) if value else None
        elif key == "intent_rules":
            rules = dict(value or {})
            for intent, action in rules.items():
                if intent not in INTENTS:
                    raise ValidationFailed(
                        "intent_rules", f"unknown intent {intent!r}; one of {', '.join(INTENTS)}"
                    )
                if not isinstance(action, str) or not action.strip():
                    raise ValidationFailed(
                        "intent_rules", f"{intent}: give a stage name, opt_out or none"
                    )
            clean[key] = {k: str(v).strip() for k, v in rules.items()}
        elif key == "handoff_confidence":
            if not 0.0 <= float(value) <= 1.0:
                raise ValidationFailed("handoff_confidence", "must be between 0 and 1")
            clean[key] = float(value)
        elif key in ("quiet_start_hour", "quiet_end_hour"):
            if not 0 <= int(value) <= 23:
                raise ValidationFailed(key, "must be an hour from 0 to 23")
            clean[key] = int(value)
        elif key == "banned_phrases":
            phrases = [clean_text(str(p)).strip() for p in value or []]
            clean[key] = [p for p in phrases if p]
        elif key == "timeout_seconds":
            if not MIN_TIMEOUT <= float(value) <= MAX_TIMEOUT:
                raise ValidationFailed(
                    key, f"must be between {MIN_TIMEOUT:g} and {MAX_TIMEOUT:g} seconds"
                )
            clean[key] = float(value)
        elif key in ("input_cost_per_million", "output_cost_per_million"):
            if value is not None and not 0 <= float(value) <= MAX_COST:
                raise ValidationFailed(key, f"must be between 0 and {MAX_COST:g}")
            clean[key] = None if value is None else float(value)
        elif key == "business_profile":
            clean[key] = clean_text(str(value))
        else:
            clean[key] = value
    return clean


async def do_update_ai_settings(
    actor: Actor, cipher: CredentialCipher, changes: dict[str, Any]
) -> AiSettings:
    """Change the workspace's AI settings (admins); ``api_key`` is encrypted, ``""`` clears it."""
    actor.require_admin()
    changes = dict(changes)
    api_key = changes.pop("api_key", None)
    clean = _clean_changes(changes)
    async with in_transaction() as conn:
        row = await AiSettings.filter(tenant_id=actor.tenant_id).using_db(conn).first()
        if row is None:
            row = await AiSettings.create(tenant_id=actor.tenant_id, using_db=conn)
        before = snapshot(row, SETTINGS_HIDDEN)
        for key, value in clean.items():
            setattr(row, key, value)
        if api_key is not None:
            row.api_key_encrypted = cipher.encrypt({"api_key": api_key}) if api_key else None  # type: ignore[assignment]
        await row.save(using_db=conn)
        after = snapshot(row, SETTINGS_HIDDEN)
        after["api_key_set"] = bool(row.api_key_encrypted)
        await record_event(
            actor,
            AiSettingsUpdated,
            row.id,
            before=before,
            after=after,
            using_db=conn,
        )
    return row


@dataclass(frozen=True)
class CallRecord:
    """What one model call cost, as the AI edge reports it."""

    tenant_id: int
    purpose: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    attempts: int
    ok: bool
    error: str | None = None
    agent_run_id: int | None = None


async def record_call(call: CallRecord) -> AiCall:
    """Account one model call (tokens, cost, latency), success or failure."""
    return await AiCall.create(
        tenant_id=call.tenant_id,
        purpose=call.purpose[:32],
        model=call.model[:200],
        prompt_tokens=call.prompt_tokens,
        completion_tokens=call.completion_tokens,
        cost_usd=call.cost_usd,
        latency_ms=call.latency_ms,
        attempts=call.attempts,
        ok=call.ok,
        error=(call.error or None) and call.error[:500],
        agent_run_id=call.agent_run_id,
    )


@dataclass(frozen=True)
class AiUsage:
    """A workspace's model calls: counts, tokens and cost, in all and per purpose."""

    calls: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    by_purpose: dict[str, dict[str, float]]


async def ai_usage(actor: Actor) -> AiUsage:
    """What the workspace's model calls used, summed from the recorded calls."""
    actor.require_read()
    rows = await AiCall.filter(tenant_id=actor.tenant_id).values_list(
        "purpose", "ok", "prompt_tokens", "completion_tokens", "cost_usd"
    )
    by_purpose: dict[str, dict[str, float]] = {}
    for purpose, _ok, prompt, completion, cost in rows:
        entry = by_purpose.setdefault(str(purpose), {"calls": 0, "tokens": 0, "cost_usd": 0.0})
        entry["calls"] += 1
        entry["tokens"] += int(prompt) + int(completion)
        entry["cost_usd"] = round(entry["cost_usd"] + float(cost), 8)
    return AiUsage(
        calls=len(rows),
        failed=sum(1 for r in rows if not r[1]),
        prompt_tokens=sum(int(r[2]) for r in rows),
        completion_tokens=sum(int(r[3]) for r in rows),
        cost_usd=round(sum(float(r[4]) for r in rows), 8),
        by_purpose=by_purpose,
    )
