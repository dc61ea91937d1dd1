"""Middlewares: the operator and their role injected into handlers, and the locale."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject
from aiogram.types import User as TelegramUser
from aiogram.utils.i18n import I18n, I18nMiddleware

from bot.services import BotServices
from crm.models import User
from crm.services import operators

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


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
