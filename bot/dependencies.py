"""What the composition root hands the bot's handlers (through middleware data, never globals)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crm.infrastructure.media_store import LocalMediaStore

if TYPE_CHECKING:
    from agents.assistant import Assistant


@dataclass(frozen=True)
class BotServices:
    """Settings-derived values and hooks the handlers need."""

    # Runs after /start created a workspace (the composition root adds sandbox channels).
    on_workspace_created: Callable[[int], Awaitable[object]] | None = None
    # The sandbox page, when the service runs the emulators; None otherwise.
    sandbox_url: str | None = None
    # Sandbox only: a link to that page that signs the new owner in (tenant id, user id).
    sandbox_link: Callable[[int, int], Awaitable[str]] | None = None
    # Where attachments live: lead media shown to operators, files operators send to leads.
    media_store: LocalMediaStore | None = None
    # The AI: drafts, answers from history, intents (None: the AI buttons say it is off).
    assistant: Assistant | None = None
