"""The Telegram lead channel: an aiogram-based ``ChannelAdapter`` and its webhook view.

The adapter and the rate limits load aiogram (seconds of imports, ~100 MB): they are imported
on first use, so serving the webhook view and starting the service do not wait for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from channels.telegram.logs import redact_tokens_in_logs

if TYPE_CHECKING:
    from channels.telegram.adapter import ALLOWED_UPDATES, TelegramAdapter
    from channels.telegram.limits import FloodControlMiddleware, RateLimits, SendRateLimiter

_LAZY = {
    "ALLOWED_UPDATES": "channels.telegram.adapter",
    "TelegramAdapter": "channels.telegram.adapter",
    "FloodControlMiddleware": "channels.telegram.limits",
    "RateLimits": "channels.telegram.limits",
    "SendRateLimiter": "channels.telegram.limits",
}


def __getattr__(name: str) -> Any:
    """The aiogram-based names, imported when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ALLOWED_UPDATES",
    "FloodControlMiddleware",
    "RateLimits",
    "SendRateLimiter",
    "TelegramAdapter",
    "redact_tokens_in_logs",
]
