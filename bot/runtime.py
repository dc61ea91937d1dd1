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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aiogram import BaseMiddleware, Bot, Dispatcher, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import PRODUCTION, TelegramAPIServer
from aiogram.utils.i18n import I18n

from bot.commands import set_commands
from bot.middlewares import OperatorContextMiddleware, OperatorLocaleMiddleware
from bot.notify import Notifier
from bot.routers import build_routers
from bot.services import BotServices
from channels.telegram import FloodControlMiddleware, SendRateLimiter
from channels.telegram.logs import redact
from crm.tasks.handlers import HandlerRegistry
from crm.tasks.handlers import registry as event_handlers

logger = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "callback_query"]
SETUP_ATTEMPTS = 8


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
    ) -> None:
        """``i18n_middleware`` defaults to ``OperatorLocaleMiddleware(i18n)``."""
        self.config = config
        self.webhook_secret = config.webhook_secret
        self.i18n = i18n or fallback_i18n()
        session = AiohttpSession(
            api=TelegramAPIServer.from_base(config.api_base) if config.api_base else PRODUCTION,
            timeout=config.request_timeout,
        )
        session.middleware(FloodControlMiddleware(SendRateLimiter()))
        self.bot = Bot(token=config.token, session=session)
        self.dispatcher = Dispatcher(**(extra_data or {}))
        self.dispatcher.update.outer_middleware(OperatorContextMiddleware(services))
        locale = i18n_middleware or OperatorLocaleMiddleware(self.i18n)
        locale.setup(self.dispatcher)  # type: ignore[attr-defined]
        self.dispatcher.include_routers(*build_routers(), *extra_routers)
        self.notifier = Notifier(self.bot, self.i18n)
        self._handlers = handlers or event_handlers
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        """Install the notification handlers and, in the background, announce the bot."""
        self.notifier.install(self._handlers)
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
        self.notifier.uninstall(self._handlers)
        if self.config.mode == "polling":
            with contextlib.suppress(RuntimeError):  # polling never started
                await self.dispatcher.stop_polling()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.bot.session.close()
