"""Telegram's flood limits, kept on our side, and a bounded retry on 429.

Telegram answers 429 ``retry_after`` when a bot sends more than about 30 messages a second,
more than one a second to one private chat, or more than 20 a minute to one group. aiogram
never retries by itself; ``FloodControlMiddleware`` (an aiogram request middleware) spaces
sends with ``SendRateLimiter`` and, on a 429 that still happens, waits and retries a few times.
Server errors (5xx) are not retried here: the adapter turns them into a retryable ``SendError``
and the caller's queue retries, so a message is never retried by two layers at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType

if TYPE_CHECKING:
    from aiogram import Bot

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


PAID_BROADCAST_PER_SECOND = 1000  # Telegram's ceiling for a bot sending paid broadcasts


@dataclass(frozen=True)
class RateLimits:
    """How many messages fit in which window, per bot and per chat."""

    per_bot: int = 30  # PAID_BROADCAST_PER_SECOND with allow_paid_broadcast
    bot_window: float = 1.0
    per_private_chat: int = 1
    private_window: float = 1.0
    per_group_chat: int = 20
    group_window: float = 60.0


class _Window:
    """Send slots of one key; a new slot is never earlier than the previous one (FIFO)."""

    __slots__ = ("limit", "slots", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.slots: deque[float] = deque()

    def reserve(self, now: float) -> float:
        # Slots older than one window cannot constrain a slot at or after ``now``.
        while self.slots and self.slots[0] <= now - self.window:
            self.slots.popleft()
        slot = max(now, self.slots[-1]) if self.slots else now
        if len(self.slots) >= self.limit:
            slot = max(slot, self.slots[-self.limit] + self.window)
        self.slots.append(slot)
        return slot

    def idle(self, now: float) -> bool:
        return not self.slots or self.slots[-1] <= now - self.window


class SendRateLimiter:
    """Spaces one process's sends so Telegram's flood limits are not hit.

    A send first takes a slot in its chat's window, sleeps until then, and only then takes a
    slot in its bot's window: a chat that must wait never holds up sends to other chats, and
    each chat's messages keep their order. Slots are computed, not polled (no busy waiting).
    """

    def __init__(
        self,
        limits: RateLimits | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.limits = limits or RateLimits()
        self._clock = clock
        self._sleep = sleep
        self._bots: dict[int, _Window] = {}
        self._chats: dict[tuple[int, str | None, int | str], _Window] = {}
        self._reservations = 0

    def chat_delay(
        self, bot_id: int, chat_id: int | str, business_connection_id: str | None = None
    ) -> float:
        """Reserve the chat's next slot; returns how long to wait for it."""
        key = (bot_id, business_connection_id, chat_id)
        window = self._chats.get(key)
        if window is None:
            private = isinstance(chat_id, int) and chat_id > 0
            limits = self.limits
            window = (
                _Window(limits.per_private_chat, limits.private_window)
                if private
                else _Window(limits.per_group_chat, limits.group_window)
            )
            self._chats[key] = window
        now = self._clock()
        self._sweep(now)
        return window.reserve(now) - now

    def bot_delay(self, bot_id: int) -> float:
        """Reserve the bot's next slot; returns how long to wait for it."""
        window = self._bots.get(bot_id)
        if window is None:
            window = self._bots[bot_id] = _Window(self.limits.per_bot, self.limits.bot_window)
        now = self._clock()
        return window.reserve(now) - now

    async def acquire(
        self, bot_id: int, chat_id: int | str, business_connection_id: str | None = None
    ) -> None:
        """Wait until one more message to ``chat_id`` fits the limits."""
        delay = self.chat_delay(bot_id, chat_id, business_connection_id)
        if delay > 0:
            await self._sleep(delay)
        delay = self.bot_delay(bot_id)
        if delay > 0:
            await self._sleep(delay)

    def _sweep(self, now: float) -> None:
        # Forget chats that went quiet, so a long-running worker does not grow without bound.
        self._reservations += 1
        if self._reservations % 1000:
            return
        for key in [k for k, w in self._chats.items() if w.idle(now)]:
            del self._chats[key]


def _limited(method: TelegramMethod[TelegramType]) -> bool:
    """Methods that put a message into a chat count against the flood limits."""
    name = method.__api_method__
    return name.startswith(("send", "copy", "forward")) and name != "sendChatAction"


class FloodControlMiddleware(BaseRequestMiddleware):
    """aiogram request middleware: rate-limit sends, and retry a 429 after ``retry_after``.

    With ``paid_broadcast`` every send that supports it carries ``allow_paid_broadcast``:
    Telegram then accepts up to 1000 messages/s from the bot (charged in Stars) instead of
    about 30; pair it with a limiter whose ``per_bot`` is raised to match.
    """

    def __init__(
        self,
        limiter: SendRateLimiter | None = None,
        *,
        max_attempts: int = 3,
        max_wait: float = 30.0,
        sleep: Sleep = asyncio.sleep,
        paid_broadcast: bool = False,
    ) -> None:
        self.limiter = limiter
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self._sleep = sleep
        self.paid_broadcast = paid_broadcast

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        """Run the request, spacing sends and retrying flood-control answers a few times."""
        chat_id = getattr(method, "chat_id", None)
        limited = self.limiter is not None and chat_id is not None and _limited(method)
        if self.paid_broadcast and "allow_paid_broadcast" in type(method).model_fields:
            method.allow_paid_broadcast = True  # type: ignore[attr-defined]
        attempt = 0
        while True:
            attempt += 1
            if limited:
                assert self.limiter is not None and chat_id is not None
                await self.limiter.acquire(
                    bot.id, chat_id, getattr(method, "business_connection_id", None)
                )
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                # A 429 means Telegram did not send the message, so sending again is safe.
                # Long waits go back to the caller's queue instead of holding a worker.
                if attempt >= self.max_attempts or exc.retry_after > self.max_wait:
                    raise
                logger.info(
                    "telegram flood control on %s: retry %d in %s s",
                    method.__api_method__,
                    attempt,
                    exc.retry_after,
                )
                await self._sleep(float(exc.retry_after))
