"""Each workspace's configured model, called through litellm and accounted call by call.

Built by the composition root; handlers, HTTP views and the bot get it as an argument.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from agents.llm import CallUsage, Completion, ModelClient, ModelError, ToolSpec
from crm.infrastructure.cipher import CredentialCipher
from crm.services.ai import settings as ai_settings
from crm.services.ai.settings import CallRecord, ModelConfig

logger = logging.getLogger(__name__)


def spec_of(config: ModelConfig, model: str | None = None) -> ModelConfig:
    """The tenant's model config, with ``model`` (an agent's own) in place of its model."""
    return replace(config, model=model) if model else config


@dataclass
class ModelGateway:
    """Calls a workspace's configured model and records every call (tokens, cost, latency)."""

    cipher: CredentialCipher

    async def config(self, tenant_id: int) -> ModelConfig | None:
        """The workspace's model settings, or None when it has no model."""
        return await ai_settings.model_config_of(tenant_id, self.cipher)

    async def complete(
        self,
        tenant_id: int,
        purpose: str,
        messages: Sequence[dict[str, Any]],
        *,
        tools: Sequence[ToolSpec] = (),
        model: str | None = None,
        agent_run_id: int | None = None,
        config: ModelConfig | None = None,
        max_tokens: int | None = None,
    ) -> Completion | None:
        """The model's answer; None when the workspace has no model. Raises ModelError."""
        config = config or await self.config(tenant_id)
        if config is None:
            return None

        async def account(usage: CallUsage) -> None:
            await ai_settings.record_call(
                CallRecord(
                    tenant_id=tenant_id,
                    purpose=purpose,
                    model=usage.model,
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    cost_usd=usage.cost_usd,
                    latency_ms=usage.latency_ms,
                    attempts=usage.attempts,
                    ok=usage.ok,
                    error=usage.error,
                    agent_run_id=agent_run_id,
                )
            )

        # One client per call: its usage sink knows the tenant and the purpose.
        return await ModelClient(on_call=account).complete(
            spec_of(config, model), messages, tools=tools, max_tokens=max_tokens
        )


__all__ = ["ModelError", "ModelGateway", "spec_of"]
