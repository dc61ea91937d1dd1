"""A local OpenAI-compatible endpoint serving a deterministic, deliberately naive test model.

litellm's ``openai/<name>`` provider with ``api_base=f"{base}{prefix}/v1"`` talks to it unchanged.
The model obeys directives it reads (``[[tool:...]]``, ``[[say:...]]``, ``[[intent:...]]``) on
purpose, so the product's guardrails can be tested against prompt injection. It is the other
side of the wire: nothing here imports the client (agents.llm).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

CHAT_MODEL = "sandbox-chat"
FAIL_MODEL = "sandbox-fail"
MODELS = (CHAT_MODEL, FAIL_MODEL)

DEFAULT_REPLY = "Thanks for your message! We will get back to you shortly."
DEFAULT_REPLY_RU = "Спасибо за сообщение! Мы скоро ответим."
CONTEXT_PREFIX = "According to our records: "
SUMMARY_CHARS = 120

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_TOOL_RE = re.compile(r"\[\[tool:([A-Za-z0-9_.\-]+)")
_SAY_RE = re.compile(r"\[\[say:(.*?)\]\]", re.DOTALL)
_INTENT_RE = re.compile(r"\[\[intent:([^\]]*)\]\]")
_CONTEXT_RE = re.compile(r"^\s*Context:(.*)$")
_BULLET_RE = re.compile(r"^\s*(?:[-*•]\s+)?")
_LETTER_RE = re.compile(r"[^\W\d_]")
_CYRILLIC_RE = re.compile(r"[\u0400-\u04FF]")
_JSON = json.JSONDecoder()

FaultKind = Literal["server_error", "rate_limit", "slow"]


class FaultRequest(BaseModel):
    """Faults to inject into the next ``count`` completion calls."""

    kind: FaultKind
    count: int = Field(default=1, ge=1, le=10_000)
    seconds: float = Field(default=0.0, ge=0.0, le=600.0)


@dataclass(frozen=True)
class Fault:
    """One completion call's injected fault."""

    kind: FaultKind
    seconds: float = 0.0


@dataclass
class SandboxModel:
    """The emulator's state: pending faults and the completion requests it received."""

    faults: deque[Fault] = field(default_factory=deque)
    calls: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add_faults(self, kind: FaultKind, count: int = 1, seconds: float = 0.0) -> None:
        """Make the next ``count`` completion calls fail (or stall) the given way."""
        self.faults.extend(Fault(kind, seconds) for _ in range(count))

    def next_fault(self) -> Fault | None:
        """The fault of the call being answered, if any is pending."""
        return self.faults.popleft() if self.faults else None

    def reset(self) -> None:
        """Forget pending faults and recorded calls."""
        self.faults.clear()
        self.calls.clear()

    def next_id(self) -> str:
        """A fresh completion id."""
        return f"chatcmpl-sandbox-{next(self._ids)}"


# --- wire helpers -------------------------------------------------------------------------


def openai_error(
    status: int,
    message: str,
    type_: str,
    code: str | None = None,
    *,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error response in OpenAI's shape."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def text_of(content: Any) -> str:
    """The text of a message content: a string, None, or a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return str(content)


def count_tokens(text: str) -> int:
    """Tokens of ``text`` under the sandbox's deterministic tokenizer."""
    return len(_TOKEN_RE.findall(text))


def _message_text_for_tokens(message: dict[str, Any]) -> str:
    parts = [text_of(message.get("content"))]
    for call in message.get("tool_calls") or []:
        function = (call.get("function") if isinstance(call, dict) else None) or {}
        parts.append(str(function.get("name", "")))
        parts.append(str(function.get("arguments", "")))
    return "\n".join(parts)


def prompt_tokens(messages: list[dict[str, Any]], tools: list[Any]) -> int:
    """Tokens of every message content plus the offered tool schemas."""
    total = sum(count_tokens(_message_text_for_tokens(m)) for m in messages)
    if tools:
        total += count_tokens(json.dumps(tools, sort_keys=True))
    return total


def tool_names(tools: list[Any]) -> list[str]:
    """Names of the offered function tools."""
    names = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names


# --- the naive model ----------------------------------------------------------------------


def parse_tool_directives(text: str) -> list[tuple[str, str]]:
    """``[[tool:NAME {json}]]`` directives in ``text`` as (name, argument text) pairs."""
    found: list[tuple[str, str]] = []
    pos = 0
    while (match := _TOOL_RE.search(text, pos)) is not None:
        name = match.group(1)
        start = match.end()
        while start < len(text) and text[start].isspace():
            start += 1
        arguments: str | None = None
        end = start
        if text.startswith("{", start):
            # raw_decode copes with "]]" inside the JSON, which a regex would cut short.
            try:
                _, json_end = _JSON.raw_decode(text, start)
            except ValueError:
                pass
            else:
                after = json_end
                while after < len(text) and text[after].isspace():
                    after += 1
                if text.startswith("]]", after):
                    arguments, end = text[start:json_end], after + 2
        if arguments is None:
            close = text.find("]]", start)
            if close < 0:
                pos = match.end()
                continue
            # Invalid JSON is passed through verbatim: the client must cope with it.
            arguments, end = text[start:close].strip() or "{}", close + 2
        found.append((name, arguments))
        pos = end
    return found


def _tool_result_summary(messages: list[dict[str, Any]]) -> str:
    names: dict[str, str] = {}
    results: list[dict[str, Any]] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            if message.get("role") == "assistant":
                for call in message.get("tool_calls") or []:
                    if isinstance(call, dict):
                        function = call.get("function") or {}
                        names[str(call.get("id"))] = str(function.get("name", "tool"))
            break
        results.append(message)
    parts = []
    for result in reversed(results):
        name = names.get(str(result.get("tool_call_id")), str(result.get("name") or "tool"))
        content = " ".join(text_of(result.get("content")).split())
        parts.append(f"{name}: {content[:SUMMARY_CHARS]}")
    return "; ".join(parts)


def _first_passage(messages: list[dict[str, Any]]) -> str | None:
    for message in messages:
        if message.get("role") not in ("system", "user"):
            continue
        lines = text_of(message.get("content")).splitlines()
        for index, line in enumerate(lines):
            match = _CONTEXT_RE.match(line)
            if match is None:
                continue
            candidates = [match.group(1), *lines[index + 1 :]]
            for candidate in candidates:
                passage = _BULLET_RE.sub("", candidate, count=1).strip()
                if passage:
                    return passage
    return None


def _mostly_cyrillic(text: str) -> bool:
    letters = _LETTER_RE.findall(text)
    if not letters:
        return False
    return sum(1 for c in letters if _CYRILLIC_RE.match(c)) * 2 > len(letters)


@dataclass(frozen=True)
class Reply:
    """What the sandbox model answers: text or tool calls."""

    content: str | None
    tool_calls: tuple[tuple[str, str], ...] = ()

    @property
    def finish_reason(self) -> str:
        """OpenAI's finish reason of this reply."""
        return "tool_calls" if self.tool_calls else "stop"


def respond(messages: list[dict[str, Any]], tools: list[Any]) -> Reply:
    """The deterministic answer of ``sandbox-chat`` to a conversation."""
    last_assistant = max(
        (i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1
    )
    if tools:
        directives = [
            directive
            for message in messages[last_assistant + 1 :]
            for directive in parse_tool_directives(text_of(message.get("content")))
        ]
        if directives:
            return Reply(None, tuple(directives))
    last_user = next(
        (text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
    )
    if (say := _SAY_RE.search(last_user)) is not None:
        return Reply(say.group(1))
    if (intent := _INTENT_RE.search(last_user)) is not None:
        return Reply(json.dumps({"intent": intent.group(1).strip(), "confidence": 0.9}))
    if messages and messages[-1].get("role") == "tool":
        return Reply("Done. " + _tool_result_summary(messages))
    if (passage := _first_passage(messages)) is not None:
        return Reply(CONTEXT_PREFIX + passage)
    return Reply(DEFAULT_REPLY_RU if _mostly_cyrillic(last_user) else DEFAULT_REPLY)


def completion_body(model: SandboxModel, name: str, reply: Reply, prompt: int) -> dict[str, Any]:
    """The chat.completion body of ``reply``."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    completion_text = reply.content or ""
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
            for i, (n, a) in enumerate(reply.tool_calls, 1)
        ]
        completion_text = "\n".join(f"{n} {a}" for n, a in reply.tool_calls)
    completion = count_tokens(completion_text)
    return {
        "id": model.next_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": name,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


async def _sleep_unless_disconnected(request: Request, seconds: float) -> None:
    # A client that timed out has gone: stop stalling so servers shut down promptly.
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(0.05, left))
        if await request.is_disconnected():
            return


def _authorized(request: Request) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


_UNAUTHORIZED = (
    401,
    "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
    "invalid_request_error",
    "invalid_api_key",
)


# --- HTTP ---------------------------------------------------------------------------------


def build_router(prefix: str = "/sandbox/llm", model: SandboxModel | None = None) -> APIRouter:
    """The emulator's routes under ``prefix``; ``model`` holds its state (a fresh one if None)."""
    state = model if model is not None else SandboxModel()
    router = APIRouter(prefix=prefix, tags=["sandbox"])

    @router.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse:
        if not _authorized(request):
            return openai_error(*_UNAUTHORIZED)
        try:
            body = await request.json()
        except ValueError:
            return openai_error(400, "The body is not valid JSON.", "invalid_request_error")
        if not isinstance(body, dict):
            return openai_error(400, "The body must be a JSON object.", "invalid_request_error")
        name = body.get("model")
        messages = body.get("messages")
        tools = body.get("tools") or []
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return openai_error(
                400,
                "'messages' must be a list of objects.",
                "invalid_request_error",
                param="messages",
            )
        if not isinstance(tools, list):
            return openai_error(
                400, "'tools' must be a list.", "invalid_request_error", param="tools"
            )
        record: dict[str, Any] = {
            "model": name,
            "messages": len(messages),
            "tools": tool_names(tools),
            # What the client asked, so tests can check the prompt that went over the wire.
            "last_user": next(
                (
                    text_of(m.get("content"))
                    for m in reversed(messages)
                    if isinstance(m, dict) and m.get("role") == "user"
                ),
                "",
            ),
            "at": dt.datetime.now(dt.UTC).isoformat(),
            "status": 200,
            "fault": None,
        }
        state.calls.append(record)
        if body.get("stream"):
            record["status"] = 400
            return openai_error(
                400,
                "Streaming is not supported by the sandbox model.",
                "invalid_request_error",
                "unsupported_parameter",
                param="stream",
            )
        if name not in MODELS:
            record["status"] = 404
            return openai_error(
                404,
                f"The model '{name}' does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
                param="model",
            )
        fault = state.next_fault()
        if fault is not None:
            record["fault"] = fault.kind
            if fault.kind == "server_error":
                record["status"] = 500
                return openai_error(
                    500, "The sandbox model had an injected server error.", "server_error"
                )
            if fault.kind == "rate_limit":
                record["status"] = 429
                retry_after = f"{fault.seconds:g}" if fault.seconds else "1"
                return openai_error(
                    429,
                    "Rate limit reached for the sandbox model (injected).",
                    "requests",
                    "rate_limit_exceeded",
                    headers={"retry-after": retry_after},
                )
            await _sleep_unless_disconnected(request, fault.seconds)
        if name == FAIL_MODEL:
            record["status"] = 500
            return openai_error(500, "The sandbox-fail model always fails.", "server_error")
        reply = respond(messages, tools)
        return JSONResponse(
            completion_body(state, str(name), reply, prompt_tokens(messages, tools))
        )

    @router.get("/v1/models", response_model=None)
    async def list_models(request: Request) -> JSONResponse:
        if not _authorized(request):
            return openai_error(*_UNAUTHORIZED)
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "sandbox"} for m in MODELS]
        return JSONResponse({"object": "list", "data": data})

    @router.post("/faults")
    async def add_faults(fault: FaultRequest) -> dict[str, Any]:
        state.add_faults(fault.kind, fault.count, fault.seconds)
        return {"pending": len(state.faults)}

    @router.get("/calls")
    async def calls() -> dict[str, Any]:
        return {"calls": list(state.calls)}

    @router.post("/reset")
    async def reset() -> dict[str, Any]:
        state.reset()
        return {"ok": True}

    return router


def create_model_app(model: SandboxModel | None = None, prefix: str = "/sandbox/llm") -> FastAPI:
    """An app serving the sandbox model alone (tests, local development)."""
    state = model if model is not None else SandboxModel()
    app = FastAPI(title="Sandbox model", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox_model = state
    app.include_router(build_router(prefix, state))
    return app
