"""What bot.handling does around a handler: the actor it needs, and a refusal shown once."""

from __future__ import annotations

from typing import Any

from aiogram.dispatcher.event.handler import HandlerObject
from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.types import CallbackQuery, TelegramObject
from aiogram.types import User as TelegramUser
from aiogram.utils.callback_answer import CallbackAnswer

from bot.handling import (
    ACTOR_FLAG,
    REFUSAL_FLAG,
    ActorMiddleware,
    NeedsActor,
    RefusalMiddleware,
)
from crm.errors import PermissionDenied, ServiceError
from crm.models import Role
from crm.services.access import Actor

PRESSER = TelegramUser(id=7, is_bot=False, first_name="Olga")
ACTOR = Actor(tenant_id=1, user_id=2, role=Role.VIEWER)


def _press() -> CallbackQuery:
    return CallbackQuery(id="1", from_user=PRESSER, chat_instance="c", data="x")


def _data(flags: dict[str, Any], **values: Any) -> dict[str, Any]:
    async def handler() -> None:  # only its flags are read
        return None

    answer = CallbackAnswer(answered=False)
    return {
        "handler": HandlerObject(callback=handler, flags=flags),
        "callback_answer": answer,
        **values,
    }


async def test_a_handler_without_its_actor_does_not_run_and_the_press_says_why() -> None:
    ran: list[Any] = []

    async def handler(event: TelegramObject, data: dict[str, Any]) -> None:
        ran.append(data["actor"])

    need = NeedsActor(missing=lambda: "no workspace")
    data = _data({ACTOR_FLAG: need}, actor=None)
    await ActorMiddleware()(handler, _press(), data)
    assert ran == []
    assert (data["callback_answer"].text, data["callback_answer"].show_alert) == (
        "no workspace",
        True,
    )

    data = _data({ACTOR_FLAG: need}, actor=ACTOR)
    await ActorMiddleware()(handler, _press(), data)
    assert ran == [ACTOR]


async def test_a_button_names_the_workspace_its_actor_comes_from() -> None:
    async def in_the_button_workspace(data: dict[str, Any]) -> Actor | None:
        return Actor(tenant_id=9, user_id=2, role=Role.ADMIN)

    seen: list[Actor] = []

    async def handler(event: TelegramObject, data: dict[str, Any]) -> None:
        seen.append(data["actor"])

    data = _data({ACTOR_FLAG: NeedsActor(resolve=in_the_button_workspace)}, actor=ACTOR)
    await ActorMiddleware()(handler, _press(), data)
    assert [a.tenant_id for a in seen] == [9]


async def test_a_dialogue_without_its_actor_ends() -> None:
    storage = MemoryStorage()
    state = FSMContext(storage, StorageKey(bot_id=1, chat_id=7, user_id=7))
    await state.set_state("Form:name")

    async def handler(event: TelegramObject, data: dict[str, Any]) -> None:
        raise AssertionError("not called")

    need = NeedsActor(missing=lambda: "gone", ends_dialogue=True)
    data = _data({ACTOR_FLAG: need}, actor=None, state=state)
    await ActorMiddleware()(handler, _press(), data)
    assert await state.get_state() is None


async def test_a_refusal_of_the_services_is_one_alert_worded_by_the_router() -> None:
    async def handler(event: TelegramObject, data: dict[str, Any]) -> None:
        raise PermissionDenied("viewers may not")

    def wording(exc: ServiceError, actor: Actor | None) -> str:
        return f"refused {type(exc).__name__} for {actor.role if actor else None}"

    data = _data({}, actor=ACTOR)
    assert await RefusalMiddleware(wording)(handler, _press(), data) is None
    answer = data["callback_answer"]
    assert (answer.text, answer.show_alert) == ("refused PermissionDenied for viewer", True)


async def test_a_handler_flag_brings_its_own_refusal_for_messages_only() -> None:
    own: list[str] = []

    async def handler(event: TelegramObject, data: dict[str, Any]) -> None:
        raise PermissionDenied("no")

    async def dialogue_refusal(message: Any, exc: ServiceError, data: dict[str, Any]) -> None:
        own.append(exc.detail)

    data = _data({REFUSAL_FLAG: dialogue_refusal}, actor=ACTOR)
    await RefusalMiddleware(lambda exc, actor: "router wording")(handler, _press(), data)
    # A button press is not a dialogue message: the router's wording applies.
    assert own == [] and data["callback_answer"].text == "router wording"
