"""How the operator bot reaches Telegram: plain values, importable without aiogram.

The composition root knows the bot's webhook secret and mode before aiogram (seconds of
imports, ~100 MB) is loaded; ``bot.operator_bot`` builds the bot from this later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from crm.services.events.catalog import (
    AiHandedOff,
    ConversationAssigned,
    ConversationClosed,
    ConversationReopened,
    DealCreated,
    DealStageChanged,
    DraftCreated,
    MessageReceived,
    MessageStatusChanged,
)
from crm.services.events.event_types import EventType

ALLOWED_UPDATES = ["message", "callback_query", "inline_query"]

# The events the operator bot handles (notifications, alerts, team topics): only these load
# it on first need, so an unrelated event (a contact imported) leaves aiogram unloaded.
# tests/bot/test_operator_bot.py checks this against what
# ``OperatorBot.install_handlers`` registers.
OPERATOR_BOT_EVENT_TYPES: frozenset[type[EventType]] = frozenset(
    {
        MessageReceived,
        MessageStatusChanged,
        DealCreated,
        DealStageChanged,
        ConversationAssigned,
        ConversationClosed,
        ConversationReopened,
        AiHandedOff,
        DraftCreated,
    }
)


@dataclass(frozen=True)
class OperatorBotConfig:
    """How the operator bot reaches Telegram and how Telegram reaches it."""

    token: str
    webhook_secret: str
    mode: Literal["webhook", "polling"] = "webhook"
    # The Bot API host: the sandbox emulator's base, or None for api.telegram.org.
    api_base: str | None = None
    # Where Telegram posts updates in webhook mode; None leaves setWebhook to someone else
    # (the sandbox wiring registers the webhook with the in-process emulator directly).
    webhook_url: str | None = None
    request_timeout: float = 30.0
    # Whether the bot sends members their daily digest at their local morning (a periodic task,
    # crm.tasks.periodic, looks for who is due every minute).
    daily_digest: bool = True
    # allow_paid_broadcast on sends, and the bot's send budget raised from 30 to 1000 msg/s.
    paid_broadcast: bool = False
    # Space sends by Telegram's flood limits; off against the sandbox emulator, which enforces
    # none, so a developer (and the test suite) sees answers at once.
    pace_sends: bool = True
