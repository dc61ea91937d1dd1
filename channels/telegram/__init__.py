"""The Telegram lead channel: an aiogram-based ``ChannelAdapter`` and its webhook view."""

from channels.telegram.adapter import ALLOWED_UPDATES, TelegramAdapter
from channels.telegram.limits import FloodControlMiddleware, RateLimits, SendRateLimiter
from channels.telegram.logs import redact_tokens_in_logs
from channels.telegram.webhook import build_router

__all__ = [
    "ALLOWED_UPDATES",
    "FloodControlMiddleware",
    "RateLimits",
    "SendRateLimiter",
    "TelegramAdapter",
    "build_router",
    "redact_tokens_in_logs",
]
