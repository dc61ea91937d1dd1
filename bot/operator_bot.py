"""The operator bot in one object: aiogram Bot, Dispatcher, routers, middlewares, transport.

The composition root builds an ``OperatorBot`` from settings-derived values (this package never
reads settings), serves ``bot.webhook.build_router(operator)`` in webhook mode, and calls
``start()``/``stop()`` in the app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any

from aiogram import BaseMiddleware, Bot, Dispatcher, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import PRODUCTION, TelegramAPIServer
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.storage.redis import DefaultKeyBuilder, RedisStorage
from aiogram.utils.i18n import I18n

from bot.background import BackgroundTasks
from bot.commands import set_commands
from bot.config import ALLOWED_UPDATES, OperatorBotConfig
from bot.dependencies import BotServices
from bot.middlewares import (
    FloodLimiter,
    FloodLimitMiddleware,
    OperatorContextMiddleware,
    OperatorLocaleMiddleware,
)
from bot.routers import build_routers
from bot.senders.alerts import Alerts
from bot.senders.notifications import Notifier
from bot.senders.team_inbox import TeamInboxPoster
from crm.tasks.handlers import HandlerRegistry
from crm.tasks.handlers import registry as event_handlers
from telegram_transport.limits import (
    PAID_BROADCAST_PER_SECOND,
    FloodControlMiddleware,
    RateLimits,
    SendRateLimiter,
)
from telegram_transport.logs import redact

logger = logging.getLogger(__name__)

SETUP_ATTEMPTS = 8

OPERATOR_CHAT_BURST = 3  # messages to one operator at once; then one a second on average
FSM_KEY_PREFIX = "crm:fsm"
FSM_TTL_SECONDS = 7 * 24 * 3600  # a dialogue left half-way is forgotten after a week


def fsm_storage(redis_url: str | None, *, prefix: str = FSM_KEY_PREFIX) -> BaseStorage:
    """Dialogue state in Redis when the service has one (it survives restarts and is shared
    by every web process), in memory otherwise."""
    if not redis_url:
        return MemoryStorage()
    return RedisStorage.from_url(
        redis_url,
        key_builder=DefaultKeyBuilder(prefix=prefix, with_bot_id=True),
        state_ttl=FSM_TTL_SECONDS,
        data_ttl=FSM_TTL_SECONDS,
    )


def fallback_i18n() -> I18n:
    """An I18n with no catalogs: every string stays in English (source) until catalogs exist."""
    empty = Path(tempfile.mkdtemp(prefix="crm-no-locales-"))
    return I18n(path=empty, default_locale="en", domain="messages")


class OperatorBot:
    """The operator bot of this installation: one per process."""

    def __init__(
        self,
        config: OperatorBotConfig,
        services: BotServices,
        *,
        i18n: I18n | None = None,
        i18n_middleware: BaseMiddleware | None = None,
        extra_routers: tuple[Router, ...] = (),
        extra_data: dict[str, Any] | None = None,
        handlers: HandlerRegistry | None = None,
        storage: BaseStorage | None = None,
        flood: FloodLimiter | None = None,
    ) -> None:
        """``i18n_middleware`` defaults to ``OperatorLocaleMiddleware(i18n)``; ``storage`` (the
        FSM's) to memory; ``flood`` to 20 updates per 10 s per user."""
        self.config = config
        self.webhook_secret = config.webhook_secret
        self.i18n = i18n or fallback_i18n()
        session = AiohttpSession(
            api=TelegramAPIServer.from_base(config.api_base) if config.api_base else PRODUCTION,
            timeout=config.request_timeout,
        )
        limits = RateLimits(
            per_bot=PAID_BROADCAST_PER_SECOND if config.paid_broadcast else RateLimits.per_bot,
            # Telegram allows short bursts in a chat as long as the pace stays about one a
            # second: an answer, a card and a confirmation go out at once, not a second apart.
            per_private_chat=OPERATOR_CHAT_BURST,
            private_window=float(OPERATOR_CHAT_BURST),
        )
        self.limiter = SendRateLimiter(limits) if config.pace_sends else None
        session.middleware(
            FloodControlMiddleware(self.limiter, paid_broadcast=config.paid_broadcast)
        )
        self.bot = Bot(token=config.token, session=session)
        self.background = BackgroundTasks()
        self.flood = flood or FloodLimiter()
        self.dispatcher = Dispatcher(
            storage=storage or MemoryStorage(),
            **{"background": self.background, **(extra_data or {})},
        )
        self.dispatcher.update.outer_middleware(FloodLimitMiddleware(self.flood, self.i18n))
        self.dispatcher.update.outer_middleware(OperatorContextMiddleware(services))
        locale = i18n_middleware or OperatorLocaleMiddleware(self.i18n)
        locale.setup(self.dispatcher)  # type: ignore[attr-defined]
        self.dispatcher.include_routers(*build_routers(extra_routers))
        self.notifier = Notifier(self.bot, self.i18n, media=services.media_store)
        self.alerts = Alerts(self.bot, self.i18n)
        self.team_inbox = TeamInboxPoster(self.bot, self.i18n)
        self._handlers = handlers or event_handlers
        self._tasks: list[asyncio.Task[Any]] = []

    def install_handlers(self, registry: HandlerRegistry | None = None) -> None:
        """Register every event handler of the bot (lead notifications, alerts, team inbox) and
        its periodic jobs (the daily digest unless ``daily_digest`` is off, the team inbox).

        Any process that runs tasks calls this (``start`` does; so does `crm worker`, which may
        take any event's dispatch or periodic round): a process without them would skip the
        bot's part.
        """
        registry = registry or self._handlers
        self.notifier.install(registry)
        self.alerts.install(registry, digest=self.config.daily_digest)
        self.team_inbox.install(registry)

    def uninstall_handlers(self, registry: HandlerRegistry | None = None) -> None:
        """Unregister what ``install_handlers`` registered."""
        registry = registry or self._handlers
        self.notifier.uninstall(registry)
        self.alerts.uninstall(registry)
        self.team_inbox.uninstall(registry)

    async def start(self) -> None:
        """Install the event handlers and periodic jobs, and announce the bot."""
        self.install_handlers()
        await self.team_inbox.start()
        # The Bot API may be this very service (the sandbox), which is not listening yet.
        self._tasks.append(asyncio.create_task(self._announce()))
        if self.config.mode == "polling":
            self._tasks.append(asyncio.create_task(self._poll()))

    async def _announce(self) -> None:
        """setMyCommands per language, and setWebhook when this service owns it; retried."""
        delay = 0.05
        for attempt in range(1, SETUP_ATTEMPTS + 1):
            try:
                await set_commands(self.bot, self.i18n)
                if self.config.mode == "webhook" and self.config.webhook_url:
                    await self.bot.set_webhook(
                        self.config.webhook_url,
                        secret_token=self.webhook_secret,
                        allowed_updates=ALLOWED_UPDATES,
                    )
                elif self.config.mode == "polling":
                    await self.bot.delete_webhook()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt == SETUP_ATTEMPTS:
                    logger.warning("operator bot set-up failed: %s", redact(str(exc)))
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _poll(self) -> None:
        await self.dispatcher.start_polling(
            self.bot, handle_signals=False, allowed_updates=ALLOWED_UPDATES, close_bot_session=False
        )

    async def feed(self, update: dict[str, Any]) -> None:
        """Process one update from the webhook; a failing handler is logged, never raised."""
        try:
            await self.dispatcher.feed_raw_update(self.bot, update)
        except Exception:
            logger.exception("operator bot: update %s failed", update.get("update_id"))

    async def stop(self) -> None:
        """Stop polling and background work, remove the handlers, close the HTTP session."""
        self.uninstall_handlers()
        await self.team_inbox.stop()  # lets a post in flight finish, so before the session
        if self.config.mode == "polling":
            with contextlib.suppress(RuntimeError):  # polling never started
                await self.dispatcher.stop_polling()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.background.close()  # imports tell their operator, so before the session
        await self.dispatcher.storage.close()
        await self.bot.session.close()
