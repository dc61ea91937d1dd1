"""What the service asks of the AI: draft, regenerate, answer, classify (a port; DESIGN section 3).

The AI edge (``agents.assistant.Assistant``) implements ``AiAssistant``; the composition root
puts it on ``app.state.assistant``, and the HTTP API depends on this protocol, not on the edge.
"""

from __future__ import annotations

from typing import Any, Protocol

from crm.models import Draft
from crm.services.access import Actor

MAX_QUESTION = 2000  # characters of a question to the AI or a text to classify


class AskedAnswer(Protocol):
    """An answer to a question with the passages it stands on."""

    @property
    def answer(self) -> str:
        """The answer's text."""
        ...

    @property
    def citations(self) -> list[dict[str, Any]]:
        """The passages cited, as stored on a draft."""
        ...

    @property
    def source(self) -> str:
        """Who answered: offline (retrieval only) or model."""
        ...


class IntentVerdict(Protocol):
    """An intent with its confidence, language, and who decided it (offline or model)."""

    @property
    def intent(self) -> str:
        """One of ``crm.services.ai.settings.INTENTS``."""
        ...

    @property
    def confidence(self) -> float:
        """How sure the classifier is, 0 to 1."""
        ...

    @property
    def language(self) -> str:
        """The text's language code."""
        ...

    @property
    def source(self) -> str:
        """Who decided: offline or model."""
        ...


class AiAssistant(Protocol):
    """The AI's operations the HTTP API offers to a workspace."""

    async def draft_reply(self, actor: Actor, conversation_id: int) -> Draft:
        """A new pending draft answering the lead's latest message."""
        ...

    async def regenerate(self, actor: Actor, draft_id: int) -> Draft:
        """Replace a pending draft with the next-best one."""
        ...

    async def ask(self, actor: Actor, question: str) -> AskedAnswer:
        """Answer a question from the workspace's own history."""
        ...

    async def classify(self, actor: Actor, text: str) -> IntentVerdict:
        """The intent of a text, for the workspace."""
        ...


__all__ = ["MAX_QUESTION", "AiAssistant", "AskedAnswer", "IntentVerdict"]
