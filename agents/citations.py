"""How drafts and answers quote retrieved passages: excerpts cut at a sentence end, citations."""

from __future__ import annotations

from typing import Any

from agents.memory import Passage
from crm.models import MemorySource

EXCERPT_CHARS = 400


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A passage cut at a sentence end near ``limit``."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = max(text.rfind(". ", 0, limit), text.rfind("! ", 0, limit), text.rfind("? ", 0, limit))
    return text[: cut + 1] if cut > limit // 3 else text[:limit].rstrip() + "…"


def citation(passage: Passage) -> dict[str, Any]:
    """How a draft or an answer cites a passage."""
    chunk = passage.chunk
    return {
        "message_id": chunk.source_id if chunk.source is MemorySource.MESSAGE else None,
        "conversation_id": chunk.conversation_id,
        "source": chunk.source.value,
        "source_id": chunk.source_id,
        "text": excerpt(chunk.text, 300),
    }
