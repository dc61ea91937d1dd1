"""``/lang``: the operator picks the language the bot speaks to them (English or Russian).

Middleware data this router needs:

- ``set_language``: ``Callable[[int, str], Awaitable[None]]``, called as
  ``await set_language(telegram_user_id, locale)`` with a locale from ``bot.i18n.SUPPORTED``;
  it stores the choice on the operator (``User.language``) so later updates use it. The
  composition root (or the operator middleware) provides it.
- ``i18n``: aiogram's ``I18n``, put there by ``OperatorI18nMiddleware``.

The buttons show each language in its own name (endonyms), on purpose not translated.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiogram import Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __

from bot.handling import PRIVATE_CHATS, feature_router
from bot.i18n import SUPPORTED

SetLanguage = Callable[[int, str], Awaitable[None]]

# Each language as its speakers write it: the buttons.
ENDONYMS = {"en": "English", "ru": "Русский"}
# Each language as the current locale names it: the confirmation.
LANGUAGE_NAMES = {"en": __("English"), "ru": __("Russian")}


class LangCallback(CallbackData, prefix="lang"):
    """A language button: ``lang:<code>``."""

    code: str


def language_keyboard() -> InlineKeyboardMarkup:
    """One button per supported language."""
    buttons = [
        InlineKeyboardButton(text=ENDONYMS[code], callback_data=LangCallback(code=code).pack())
        for code in SUPPORTED
    ]
    return InlineKeyboardMarkup(inline_keyboard=[buttons])


async def choose_language(message: Message) -> None:
    """Offer the languages."""
    await message.answer(_("Choose the language of the bot:"), reply_markup=language_keyboard())


async def language_chosen(
    query: CallbackQuery,
    callback_data: LangCallback,
    set_language: SetLanguage,
    i18n: I18n,
    callback_answer: CallbackAnswer,
) -> None:
    """Store the chosen language and confirm in it."""
    code = callback_data.code
    if code not in SUPPORTED:
        callback_answer.text = _("This language is not available.")
        callback_answer.show_alert = True
        return
    await set_language(query.from_user.id, code)
    with i18n.use_locale(code):
        text = _("Language: {language}").format(language=LANGUAGE_NAMES[code])
    if isinstance(query.message, Message):
        await query.message.edit_text(text)
    callback_answer.text = text


def build_router() -> Router:
    """A fresh ``/lang`` router (a Router belongs to one Dispatcher, and tests build several)."""
    router = feature_router("lang", chats=PRIVATE_CHATS)
    router.message.register(choose_language, Command("lang"))
    router.callback_query.register(language_chosen, LangCallback.filter())
    return router
