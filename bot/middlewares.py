"""Middlewares: a flood limit per user, the operator and their role, and the locale."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Chat, TelegramObject, Update
from aiogram.types import User as TelegramUser
from aiogram.utils.i18n import I18n, I18nMiddleware
from aiogram.utils.i18n import gettext as _

from bot.dependencies import BotServices
from crm.models import User
from crm.services.accounts import operators

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]

logger = logging.getLogger(__name__)

FLOOD_BURST = 20
FLOOD_WINDOW = 10.0


@dataclass
class _Sender:
    """The recent accepted updates of one user and when they were last told to slow down."""

    accepted: deque[float] = field(default_factory=deque)
    told_at: float | None = None


@dataclass(frozen=True)
class Verdict:
    """Whether an update goes on, and whether its sender should now be told it did not."""

    allowed: bool
    tell: bool = False


class FloodLimiter:
    """At most ``burst`` updates per ``window`` seconds per user (a sliding window), in process.

    Over the limit an update is dropped; the first drop of a window says so (``tell``), later
    ones are silent until a window has passed. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        burst: int = FLOOD_BURST,
        window: float = FLOOD_WINDOW,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_senders: int = 100_000,
    ) -> None:
        self.burst = burst
        self.window = window
        self.clock = clock
        self.max_senders = max_senders
        self._senders: dict[int, _Sender] = {}

    def hit(self, user_id: int) -> Verdict:
        """Count one update of ``user_id``."""
        now = self.clock()
        sender = self._senders.get(user_id)
        if sender is None:
            if len(self._senders) >= self.max_senders:
                self._forget_idle(now)
            sender = self._senders[user_id] = _Sender()
        accepted = sender.accepted
        while accepted and accepted[0] <= now - self.window:
            accepted.popleft()
        if len(accepted) < self.burst:
            accepted.append(now)
            return Verdict(allowed=True)
        if sender.told_at is None or now - sender.told_at >= self.window:
            sender.told_at = now
            return Verdict(allowed=False, tell=True)
        return Verdict(allowed=False)

    def _forget_idle(self, now: float) -> None:
        idle = [
            user_id
            for user_id, s in self._senders.items()
            if not s.accepted or s.accepted[-1] <= now - self.window
        ]
        for user_id in idle:
            del self._senders[user_id]
        if len(self._senders) >= self.max_senders:  # all busy: a flood of users, start afresh
            self._senders.clear()


class FloodLimitMiddleware(BaseMiddleware):
    """Outer middleware on updates: drops a user's updates over the limit (see FloodLimiter).

    Registered before the operator is loaded, so a dropped update costs no database query
    (only the notice, once per window, looks up the operator's language). A dropped callback
    query is still answered, so the button's spinner stops.
    """

    def __init__(self, limiter: FloodLimiter, i18n: I18n) -> None:
        self.limiter = limiter
        self.i18n = i18n

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        """Pass the update on, or drop it and tell the sender once."""
        sender: TelegramUser | None = data.get("event_from_user")
        if sender is None or sender.is_bot:
            return await handler(event, data)
        verdict = self.limiter.hit(sender.id)
        if verdict.allowed:
            return await handler(event, data)
        logger.info("operator bot: update from %s dropped by the flood limit", sender.id)
        bot: Bot | None = data.get("bot")
        if bot is None:
            return None
        notice = await self._notice(sender) if verdict.tell else None
        try:
            if isinstance(event, Update) and event.callback_query is not None:
                await bot.answer_callback_query(event.callback_query.id, text=notice)
            elif notice is not None:
                chat: Chat | None = data.get("event_chat")
                if chat is not None:
                    await bot.send_message(
                        chat.id, notice, message_thread_id=data.get("event_thread_id")
                    )
        except TelegramAPIError as exc:
            logger.info("operator bot: flood notice not delivered: %s", exc)
        return None

    async def _notice(self, sender: TelegramUser) -> str:
        user = await operators.find_operator(sender.id)
        stored = user.language if user is not None else None
        locale = operators.language_of(stored or sender.language_code)
        with self.i18n.context(), self.i18n.use_locale(locale):
            return _("Too many requests: wait a few seconds.")


class OperatorContextMiddleware(BaseMiddleware):
    """Puts ``user`` (crm User or None), ``actor`` (Actor or None) and ``services`` in data."""

    def __init__(self, services: BotServices) -> None:
        self.services = services

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        """Load the operator of the update's sender and their role in the current workspace."""
        sender: TelegramUser | None = data.get("event_from_user")
        user: User | None = None
        if sender is not None and not sender.is_bot:
            user = await operators.find_operator(sender.id)
        data["user"] = user
        data["actor"] = await operators.actor_for(user) if user is not None else None
        data["services"] = self.services
        data["set_language"] = set_language
        return await handler(event, data)


async def set_language(telegram_id: int, locale: str) -> None:
    """Store the language an operator chose with /lang."""
    user = await operators.find_operator(telegram_id)
    if user is not None:
        await operators.do_set_language(user, locale)


class OperatorLocaleMiddleware(I18nMiddleware):
    """The stored language of the operator, else their Telegram language (en or ru)."""

    def __init__(self, i18n: I18n) -> None:
        super().__init__(i18n=i18n)

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        """The locale of the update's sender."""
        user: User | None = data.get("user")
        if user is not None and user.language:
            return operators.language_of(user.language)
        sender: TelegramUser | None = data.get("event_from_user")
        return operators.language_of(sender.language_code if sender is not None else None)
