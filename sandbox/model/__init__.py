"""A local OpenAI-compatible endpoint serving a deterministic, deliberately naive test model.

litellm's ``openai/<name>`` provider with ``api_base=f"{base}{prefix}/v1"`` talks to it unchanged.
The model obeys directives it reads (``[[tool:...]]``, ``[[say:...]]``, ``[[intent:...]]``) on
purpose, so the product's guardrails can be tested against prompt injection. It is the other
side of the wire: nothing here imports the client (agents.llm). ``replies`` holds the model,
``state`` its faults and recorded calls, ``router`` the HTTP side.
"""

from sandbox.model.replies import (
    CHAT_MODEL,
    CONTEXT_PREFIX,
    DEFAULT_REPLY,
    DEFAULT_REPLY_RU,
    FAIL_MODEL,
    MODELS,
    Reply,
    completion_body,
    count_tokens,
    parse_tool_directives,
    prompt_tokens,
    respond,
    text_of,
    tool_names,
)
from sandbox.model.router import build_router, create_model_app, openai_error
from sandbox.model.state import Fault, FaultKind, FaultRequest, SandboxModel

__all__ = [
    "CHAT_MODEL",
    "CONTEXT_PREFIX",
    "DEFAULT_REPLY",
    "DEFAULT_REPLY_RU",
    "FAIL_MODEL",
    "MODELS",
    "Fault",
    "FaultKind",
    "FaultRequest",
    "Reply",
    "SandboxModel",
    "build_router",
    "completion_body",
    "count_tokens",
    "create_model_app",
    "openai_error",
    "parse_tool_directives",
    "prompt_tokens",
    "respond",
    "text_of",
    "tool_names",
]
