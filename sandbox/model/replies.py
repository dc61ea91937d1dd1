"""The deterministic, deliberately naive ``sandbox-chat`` model, and token counts."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from sandbox.model.state import SandboxModel

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
