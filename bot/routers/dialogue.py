"""Short dialogues (FSM states): ``/cancel`` leaves the one the operator is in; what answers it."""

from __future__ import annotations

from typing import Any

from aiogram import Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.handling import DIALOGUE_CHATS, feature_router


async def cancel(message: Message, state: FSMContext) -> None:
    """Clear the dialogue state; the dialogue saved nothing yet, so nothing changes."""
    if await state.get_state() is None:
        await message.answer(_("There is nothing to cancel."))
        return
    await state.clear()
    await message.answer(_("Cancelled. Nothing was changed."))


async def answers_the_dialogue(message: Message, state: FSMContext) -> bool:
    """A dialogue answer is plain text, or a reply to the dialogue's own prompt (``prompt_id``).

    A reply to a lead notification is not an answer and goes on to ``inbox.reply_to_lead``.
    """
    replied = message.reply_to_message
    if replied is None:
        return True
    data: dict[str, Any] = await state.get_data()
    return bool(replied.message_id == data.get("prompt_id"))


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = feature_router("dialogue", chats=DIALOGUE_CHATS)
    router.message.register(cancel, Command("cancel"))
    return router
