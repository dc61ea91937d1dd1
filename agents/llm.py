"""Model access through litellm: one call with retries, a fallback chain, and its accounting.

litellm is imported on the first call (it costs seconds), offline (no price list download, no
telemetry) and quiet (its loggers stay at WARNING, so prompts, which carry personal data, never
reach the logs). Retries and fallbacks are done here rather than by litellm, so they are
deterministic and every attempt is counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from crm.services.ai.settings import ModelConfig

logger = logging.getLogger(__name__)

# Loggers that may carry prompts or request bodies at DEBUG/INFO.
_QUIET_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "openai", "httpx", "httpcore")
# Environment switches that keep litellm from fetching its remote configuration files.
_OFFLINE_ENV = (
    "LITELLM_LOCAL_MODEL_COST_MAP",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS",
    "LITELLM_LOCAL_BLOG_POSTS",
)
_CALLBACK_LISTS = (
    "input_callback",
    "success_callback",
    "failure_callback",
    "service_callback",
    "callbacks",
    "_async_success_callback",
    "_async_failure_callback",
)
BACKOFF_SECONDS = 0.05  # times the attempt number: short, so tests stay fast
_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
_ERROR_CHARS = 200
# Errors that litellm maps to 500 although no retry can fix them (a client-side config fault).
_NOT_RETRYABLE_HINTS = ("missing credentials",)
_SECRET_PATTERNS = (
    re.compile(r"(?i)\bbearer\s+\S+"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"(?i)(api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
)

# Providers that speak OpenAI's API to any base URL. A local server behind one (Ollama, vLLM,
# LM Studio, the sandbox model) needs no key, but the OpenAI SDK refuses to send a request
# without one ("Missing credentials"): such a call gets a placeholder, never the OPENAI_API_KEY
# of the environment (a real key must not travel to another host).
_OPENAI_COMPATIBLE = frozenset({"openai", "hosted_vllm", "lm_studio", "openai_like"})
KEYLESS_PLACEHOLDER = "no-key"

_LITELLM_PREFIX_RE = re.compile(r"^(?:litellm\.\w+:\s*)?(?:\w+Error:\s*)?(?:\w+Exception\s*-\s*)?")

_litellm_module: Any = None
_litellm_lock = threading.Lock()


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call; ``parameters`` is the JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI function-tool dict of this tool."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model asked for; ``arguments`` is {} when its JSON was invalid."""

    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str


@dataclass(frozen=True)
class CallUsage:
    """The accounting of one complete() call over all its attempts."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    attempts: int
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class Completion:
    """The model's answer: text and/or tool calls, with the call's usage."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str
    usage: CallUsage


class ModelError(Exception):
    """Every model in the chain failed; ``usage`` accounts for the failed call."""

    def __init__(self, message: str, usage: CallUsage) -> None:
        super().__init__(message)
        self.usage = usage

    @classmethod
    def empty(cls, usage: CallUsage) -> ModelError:
        """The model answered, but with nothing usable (e.g. blank text)."""
        reason = usage.error or "the model gave an empty answer"
        return cls(f"{usage.model}: {reason}", replace(usage, ok=False, error=reason))


UsageSink = Callable[[CallUsage], Awaitable[None]]


class _BadResponse(Exception):
    """The endpoint answered, but not with a usable chat completion."""


def _quiet_loggers() -> None:
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _import_litellm() -> Any:
    global _litellm_module
    with _litellm_lock:
        if _litellm_module is None:
            for name in _OFFLINE_ENV:
                # Without these litellm fetches files from GitHub at import (a blocked,
                # retried download on an offline machine).
                os.environ.setdefault(name, "True")
            # Before the import too: litellm logs at DEBUG while it loads.
            _quiet_loggers()
            import litellm

            litellm.suppress_debug_info = True
            litellm.set_verbose = False
            # No logging callbacks (they would ship prompts somewhere), and should one be
            # added later, it gets no message contents. This release has no telemetry switch.
            litellm.turn_off_message_logging = True
            for name in _CALLBACK_LISTS:
                getattr(litellm, name).clear()
            _quiet_loggers()
            _litellm_module = litellm
        return _litellm_module


async def load_litellm() -> Any:
    """Import and configure litellm once, off the event loop (the import takes seconds)."""
    if _litellm_module is not None:
        return _litellm_module
    return await asyncio.to_thread(_import_litellm)


def api_key_for(spec: ModelConfig, model: str) -> str | None:
    """The key to send to ``model``: the configured one, else a placeholder for an
    OpenAI-compatible ``api_base`` (which asks for none), else None (litellm's own lookup)."""
    if spec.api_key:
        return spec.api_key
    provider = model.split("/", 1)[0] if "/" in model else ""
    if spec.api_base and provider in _OPENAI_COMPATIBLE:
        return KEYLESS_PLACEHOLDER
    return None


def scrub(text: str, secret: str | None) -> str:
    """``text`` without ``secret`` or anything shaped like a credential."""
    if secret:
        text = text.replace(secret, "[redacted]")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.lastindex else "") + "[redacted]", text)
    return text


def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt at the same model may succeed (rate limit, 5xx, timeout...)."""
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    if isinstance(exc, _BadResponse):
        return False
    if any(hint in str(exc).lower() for hint in _NOT_RETRYABLE_HINTS):
        return False
    litellm = _litellm_module
    if litellm is not None and isinstance(
        exc, litellm.Timeout | litellm.APIConnectionError | litellm.RateLimitError
    ):
        return True
    status = _status_of(exc)
    return status is not None and (status in _RETRYABLE_STATUS or status >= 500)


def _reason(exc: BaseException, spec: ModelConfig) -> str:
    if isinstance(exc, TimeoutError):
        return f"Timeout: no answer within {spec.timeout_seconds:g}s"
    status = _status_of(exc)
    head = type(exc).__name__ + (f" ({status})" if status is not None else "")
    detail = " ".join(str(getattr(exc, "message", None) or exc).split())
    # litellm prefixes its class names: "litellm.RateLimitError: RateLimitError: OpenAIException
    # - ...", which the head already says.
    detail = _LITELLM_PREFIX_RE.sub("", detail).split(" Error_str:", 1)[0]
    detail = scrub(detail, spec.api_key)
    if len(detail) > _ERROR_CHARS:
        detail = detail[: _ERROR_CHARS - 1] + "…"
    return f"{head}: {detail}" if detail else head


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def parse_tool_call(raw: Any, index: int) -> ToolCall:
    """A ToolCall from an OpenAI-shaped tool call; invalid argument JSON gives arguments={}."""
    function = _field(raw, "function") or {}
    raw_arguments = _field(function, "arguments")
    if not isinstance(raw_arguments, str):
        raw_arguments = json.dumps(raw_arguments) if raw_arguments is not None else ""
    try:
        parsed = json.loads(raw_arguments) if raw_arguments.strip() else {}
    except ValueError:
        parsed = {}
    return ToolCall(
        id=str(_field(raw, "id") or f"call_{index}"),
        name=str(_field(function, "name") or ""),
        arguments=parsed if isinstance(parsed, dict) else {},
        raw_arguments=raw_arguments,
    )


def _token_counts(response: Any) -> tuple[int, int]:
    usage = _field(response, "usage")
    prompt = _field(usage, "prompt_tokens") if usage is not None else None
    completion = _field(usage, "completion_tokens") if usage is not None else None
    return int(prompt or 0), int(completion or 0)


def _cost(spec: ModelConfig, model: str, response: Any, prompt: int, completion: int) -> float:
    if spec.has_prices:
        # Priced by the spec: computed here, no global registration in litellm needed.
        return (
            prompt * (spec.input_cost_per_million or 0.0)
            + completion * (spec.output_cost_per_million or 0.0)
        ) / 1_000_000
    litellm = _litellm_module
    try:
        return float(litellm.completion_cost(completion_response=response, model=model) or 0.0)
    except Exception:
        # litellm raises for models it has no price for: those calls cost nothing known.
        return 0.0


class ModelClient:
    """Calls models through litellm with retries and fallbacks; reports every call's usage."""

    def __init__(self, on_call: UsageSink | None = None) -> None:
        self._on_call = on_call

    async def complete(
        self,
        spec: ModelConfig,
        messages: Sequence[dict[str, Any]],
        *,
        tools: Sequence[ToolSpec] = (),
        temperature: float = 0.2,
        max_tokens: int | None = None,
    ) -> Completion:
        """The first answer along the spec's model chain; raises ModelError when all fail."""
        litellm = await load_litellm()
        kwargs: dict[str, Any] = {
            "api_base": spec.api_base,
            "timeout": spec.timeout_seconds,
            "temperature": temperature,
            # The OpenAI SDK retries twice by default (litellm passes it through): retries
            # are counted here instead.
            "max_retries": 0,
        }
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        if tools:
            kwargs["tools"] = [tool.to_openai() for tool in tools]
        started = time.perf_counter()
        attempts = 0
        model = spec.model
        error: BaseException | None = None
        for model in spec.chain:
            for attempt in range(1, max(0, spec.max_retries) + 2):
                attempts += 1
                try:
                    # litellm may rewrite messages in place; the caller's stay untouched.
                    response = await asyncio.wait_for(
                        litellm.acompletion(
                            model=model,
                            messages=[dict(m) for m in messages],
                            api_key=api_key_for(spec, model),
                            **kwargs,
                        ),
                        # httpx's timeout is per read; this one bounds the whole attempt.
                        timeout=spec.timeout_seconds + 1.0,
                    )
                    completion = self._completion(spec, model, response, started, attempts)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = exc
                    retry = is_retryable(exc) and attempt <= spec.max_retries
                    logger.warning(
                        "model %s attempt %d failed%s: %s",
                        model,
                        attempt,
                        ", retrying" if retry else "",
                        _reason(exc, spec),
                    )
                    if not retry:
                        break
                    await asyncio.sleep(BACKOFF_SECONDS * attempt)
                    continue
                await self._report(completion.usage)
                return completion
        usage = CallUsage(
            model=model,
            prompt_tokens=0,
            completion_tokens=0,
            cost_usd=0.0,
            latency_ms=(time.perf_counter() - started) * 1000,
            attempts=attempts,
            ok=False,
            error=_reason(error, spec) if error is not None else "no model to call",
        )
        await self._report(usage)
        raise ModelError(
            f"model call failed after {attempts} attempt(s) over {', '.join(spec.chain)}: "
            f"{usage.error}",
            usage,
        )

    def _completion(
        self, spec: ModelConfig, model: str, response: Any, started: float, attempts: int
    ) -> Completion:
        choices = _field(response, "choices") or []
        if not choices:
            raise _BadResponse("the answer has no choices")
        choice = choices[0]
        message = _field(choice, "message")
        if message is None:
            raise _BadResponse("the answer has no message")
        raw_calls = _field(message, "tool_calls") or []
        tool_calls = tuple(parse_tool_call(raw, i) for i, raw in enumerate(raw_calls, 1))
        content = _field(message, "content")
        prompt, completion = _token_counts(response)
        usage = CallUsage(
            model=model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=_cost(spec, model, response, prompt, completion),
            latency_ms=(time.perf_counter() - started) * 1000,
            attempts=attempts,
            ok=True,
        )
        finish = _field(choice, "finish_reason") or ("tool_calls" if tool_calls else "stop")
        return Completion(
            text=content if isinstance(content, str) else "",
            tool_calls=tool_calls,
            finish_reason=str(finish),
            usage=usage,
        )

    async def _report(self, usage: CallUsage) -> None:
        if self._on_call is None:
            return
        try:
            await self._on_call(usage)
        except Exception:
            # Accounting must not turn an answered call into a failed one.
            logger.exception("the usage sink failed for a call to %s", usage.model)
