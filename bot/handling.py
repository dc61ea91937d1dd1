"""What every feature router does around its handlers: answer buttons, find the actor, refuse.

``feature_router`` builds a router for the chat types it declares (``PRIVATE_CHATS``,
``GROUP_CHATS`` or ``DIALOGUE_CHATS``: its messages from other chats go on to other routers;
button presses are not filtered, a lead's buttons work in the team inbox group too) with
three inner middlewares, outermost first:

- aiogram's ``CallbackAnswerMiddleware``: every button press is answered once, after its
  handler; a handler that shows a toast or an alert sets ``callback_answer.text`` (and
  ``show_alert``) instead of calling ``query.answer`` itself.
- ``ActorMiddleware``: a handler registered with ``flags={"actor": NeedsActor(...)}`` runs only
  with an actor in ``data["actor"]`` (the current workspace's, or the workspace a button names);
  without one the operator is told why, once, and the handler does not run.
- ``RefusalMiddleware``: a ``ServiceError`` a handler lets through is the services' refusal; it
  is worded by the router's ``refusal`` function and shown once (an alert on a button, else a
  message); a dialogue's handler may bring its own (``flags={"refusal": ...}``). aiogram's
  ``errors`` observer runs after the callback answer and does not know which feature's wording
  applies, hence a middleware per router.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiogram import BaseMiddleware, F, Router
from aiogram.dispatcher.flags import get_flag
from aiogram.enums import ChatType
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message, TelegramObject
from aiogram.utils.callback_answer import CallbackAnswer, CallbackAnswerMiddleware

from bot.texts import no_workspace
from crm.errors import ServiceError
from crm.services.access import Actor

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]
Refusal = Callable[[ServiceError, Actor | None], str]
MessageRefusal = Callable[[Message, ServiceError, dict[str, Any]], Awaitable[None]]
ActorOf = Callable[[dict[str, Any]], Awaitable[Actor | None]]

# The chats a router's messages come from: the operator's private chat with the bot, or the
# team inbox (a forum supergroup, or a group before Telegram upgrades it).
PRIVATE_CHATS = frozenset({ChatType.PRIVATE})
GROUP_CHATS = frozenset({ChatType.GROUP, ChatType.SUPERGROUP})
# A dialogue a button of the team inbox group starts (a deal's title, a draft's edit) is
# answered, and cancelled, in that group.
DIALOGUE_CHATS = PRIVATE_CHATS | GROUP_CHATS

ACTOR_FLAG = "actor"
# A handler's own way to refuse a message (a dialogue that asks again or ends), if any.
REFUSAL_FLAG = "refusal"


@dataclass(frozen=True)
class NeedsActor:
    """A handler's need for an actor: where it comes from, and what is said when there is none.

    ``resolve`` (given the handler data) finds the actor in the workspace a button names; left
    ``None``, the actor of the operator's current workspace is used. ``ends_dialogue``: without
    an actor, the dialogue (FSM state) the message answered is left.
    """

    missing: Callable[[], str] = no_workspace
    resolve: ActorOf | None = None
    ends_dialogue: bool = False


CURRENT_ACTOR = {ACTOR_FLAG: NeedsActor()}
DIALOGUE_ACTOR = {ACTOR_FLAG: NeedsActor(ends_dialogue=True)}


async def refuse(event: TelegramObject, text: str, data: dict[str, Any], *, reply: bool) -> None:
    """Tell the operator why nothing happened: an alert on a button, else a message."""
    if isinstance(event, CallbackQuery):
        answer: CallbackAnswer | None = data.get("callback_answer")
        if answer is not None and not answer.answered and not answer.disabled:
            answer.text = text
            answer.show_alert = True
        else:
            await event.answer(text, show_alert=True)
    elif isinstance(event, Message):
        if reply:
            await event.reply(text)
        else:
            await event.answer(text)


class ActorMiddleware(BaseMiddleware):
    """Runs a handler flagged with ``NeedsActor`` only when its actor is found."""

    def __init__(self, *, reply: bool = False) -> None:
        self.reply = reply

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        """Put the handler's actor in ``data["actor"]``, or refuse without calling it."""
        need = get_flag(data, ACTOR_FLAG)
        if not isinstance(need, NeedsActor):
            return await handler(event, data)
        if need.resolve is not None:
            data["actor"] = await need.resolve(data)
        if data.get("actor") is None:
            state: FSMContext | None = data.get("state")
            if need.ends_dialogue and state is not None:
                await state.clear()
            await refuse(event, need.missing(), data, reply=self.reply)
            return None
        return await handler(event, data)


class RefusalMiddleware(BaseMiddleware):
    """Shows a ``ServiceError`` raised by a handler as the router's wording of the refusal."""

    def __init__(self, render: Refusal, *, reply: bool = False) -> None:
        self.render = render
        self.reply = reply

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        """Call the handler; on a refusal of the services, say why."""
        try:
            return await handler(event, data)
        except ServiceError as exc:
            own: MessageRefusal | None = get_flag(data, REFUSAL_FLAG)
            if own is not None and isinstance(event, Message):
                await own(event, exc, data)
            else:
                await refuse(event, self.render(exc, data.get("actor")), data, reply=self.reply)
            return None


def feature_router(
    name: str,
    refusal: Refusal | None = None,
    *,
    chats: frozenset[ChatType],
    reply: bool = False,
) -> Router:
    """A router whose buttons are answered for it, with actors and refusals handled once.

    ``chats``: the chat types whose messages it takes. ``reply``: refusals of messages are sent
    as replies to them (the notification threads).
    """
    router = Router(name=name)
    router.message.filter(F.chat.type.in_(chats))
    router.callback_query.middleware(CallbackAnswerMiddleware())
    for observer in (router.message, router.callback_query):
        observer.middleware(ActorMiddleware(reply=reply))
        if refusal is not None:
            observer.middleware(RefusalMiddleware(refusal, reply=reply))
    return router
