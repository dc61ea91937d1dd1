"""The Telegram lead channel: an aiogram-based ``ChannelAdapter`` and its webhook view.

The adapter loads aiogram (seconds of imports, ~100 MB): it is imported on first use, so
serving the webhook view and starting the service do not wait for it. The send rate limits and
token scrubbing it shares with the operator bot live in ``telegram_transport``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from channels.telegram.adapter import ALLOWED_UPDATES, TelegramAdapter

_LAZY = {
    "ALLOWED_UPDATES": "channels.telegram.adapter",
    "TelegramAdapter": "channels.telegram.adapter",
}


def __getattr__(name: str) -> Any:
    """The aiogram-based names, imported when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["ALLOWED_UPDATES", "TelegramAdapter"]
