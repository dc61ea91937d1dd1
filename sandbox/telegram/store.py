"""The emulator's core state: bots by connection and token, their chats, and saving."""

from __future__ import annotations

import asyncio
import itertools
import random
import re
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from fastapi import HTTPException

from sandbox.persist import StateFile
from sandbox.telegram.records import BotState, Chat, Fault
from sandbox.telegram.wire import Params, TelegramApiError, bad_request


class TelegramStore:
    """Registered bots and their chats; the base every Bot API area builds on."""

    def __init__(
        self,
        *,
        webhook_retry_delays: Iterable[float],
        webhook_timeout: float,
        enforce_limits: bool,
        shuffle_window: float,
        rng: random.Random | None,
    ) -> None:
        self.webhook_retry_delays = tuple(webhook_retry_delays)
        self.shuffle_window = shuffle_window
        self._rng = rng or random.Random()
        self.webhook_timeout = webhook_timeout
        self.enforce_limits = enforce_limits
        self._bots: dict[str, BotState] = {}
        self._by_token: dict[str, BotState] = {}
        self._faults: list[Fault] = []
        self._duplicates = 0
        self._shuffle = False
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self._client: httpx.AsyncClient | None = None
        self._methods: dict[str, Callable[[BotState, Params], Any]] = {}
        self._state: StateFile | None = None

    def _changed(self) -> None:
        if self._state is not None:
            self._state.changed()

    def save(self) -> None:
        """Write the state file now (no-op without a ``state_path``)."""
        if self._state is not None:
            self._state.save()

    # ---- bots ------------------------------------------------------------------------------

    def register_bot(
        self, connection_id: str, token: str, username: str | None = None
    ) -> dict[str, Any]:
        """Register (or replace) the bot of ``connection_id``; returns its User object."""
        bot_id, sep, secret = token.partition(":")
        if not sep or not bot_id.isdigit() or not secret:
            raise ValueError("a bot token looks like '<digits>:<secret>'")
        old = self._bots.get(connection_id)
        name = username or f"sandbox_{re.sub(r'[^A-Za-z0-9_]', '_', connection_id)}_bot"
        user = {
            "id": int(bot_id),
            "is_bot": True,
            "first_name": f"Sandbox {connection_id}",
            "username": name,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": True,
            "can_connect_to_business": True,
            "has_main_web_app": False,
        }
        if old is not None and old.token == token:
            # The same bot registering again (a restart) keeps its chats.
            old.user = user
            self._changed()
            return dict(user)
        if old is not None:
            self._by_token.pop(old.token, None)
        state = BotState(connection_id=connection_id, token=token, user=user)
        self._bots[connection_id] = state
        self._by_token[token] = state
        self._changed()
        return dict(user)

    def _bot(self, connection_id: str) -> BotState:
        state = self._bots.get(connection_id)
        if state is None:
            raise HTTPException(404, f"no bot registered for connection_id {connection_id!r}")
        return state

    # ---- chats -----------------------------------------------------------------------------

    def register_chat(
        self,
        connection_id: str,
        chat_id: int,
        *,
        chat_type: str | None = None,
        title: str | None = None,
        is_forum: bool | None = None,
        first_name: str | None = None,
        username: str | None = None,
        bot_status: str | None = None,
        bot_rights: dict[str, bool] | None = None,
    ) -> dict[str, Any]:
        """Make a chat known to the bot (a group it was added to, a user who pressed Start).

        In a group the bot is an administrator with every right unless ``bot_status`` is
        "member" or ``bot_rights`` takes rights away (``{"can_manage_topics": False}``).
        """
        bot = self._bot(connection_id)
        chat = self._ensure_chat(bot, chat_id, None, title=title, chat_type=chat_type)
        if is_forum is not None:
            chat.is_forum = is_forum
        if bot_status is not None:
            if bot_status not in ("administrator", "member"):
                raise HTTPException(400, "bot_status is administrator or member")
            chat.bot_status = bot_status
        if bot_rights is not None:
            chat.bot_rights = {str(k): bool(v) for k, v in bot_rights.items()}
        if first_name is not None:
            chat.first_name = first_name
        if username is not None:
            chat.username = username
        if chat.type == "private":
            bot.users.setdefault(
                chat_id, {"id": chat_id, "is_bot": False, "first_name": chat.first_name}
            )
        self._changed()
        return chat.as_dict()

    def block_user(self, connection_id: str, user_id: int, blocked: bool = True) -> None:
        """The user blocks (or unblocks) the bot: sends to them answer 403."""
        bot = self._bot(connection_id)
        if blocked:
            bot.blocked.add(user_id)
        else:
            bot.blocked.discard(user_id)
        self._changed()

    def _ensure_chat(
        self,
        bot: BotState,
        chat_id: int,
        business_connection_id: str | None,
        *,
        title: str | None = None,
        chat_type: str | None = None,
    ) -> Chat:
        key = (business_connection_id or "", chat_id)
        chat = bot.chats.get(key)
        if chat is not None:
            return chat
        if chat_type is None:
            if chat_id > 0:
                chat_type = "private"
            else:
                chat_type = "supergroup" if chat_id < -(10**12) else "group"
        chat = Chat(id=chat_id, type=chat_type, business_connection_id=business_connection_id)
        if chat_type == "private":
            user = bot.users.get(chat_id, {})
            chat.first_name = user.get("first_name") or f"User {chat_id}"
            chat.last_name = user.get("last_name")
            chat.username = user.get("username")
        else:
            chat.title = title or f"Sandbox group {chat_id}"
            chat.is_forum = chat_type == "supergroup"
        bot.chats[key] = chat
        return chat

    def _find_chat(self, bot: BotState, params: Params, *, name: str = "chat_id") -> Chat:
        business_connection_id = params.string("business_connection_id")
        raw = params.raw.get(name)
        if raw is None or raw == "":
            raise bad_request(f"{name} is empty")
        if isinstance(raw, str) and raw.startswith("@"):
            for known in bot.chats.values():
                if known.username and f"@{known.username}".lower() == raw.lower():
                    return known
            raise bad_request("chat not found")
        chat_id = params.integer(name, required=True)
        assert chat_id is not None
        if business_connection_id:
            self._business_connection(bot, business_connection_id, sending=True)
        chat = bot.chats.get((business_connection_id or "", chat_id))
        if chat is None:
            raise bad_request("chat not found")
        if chat.type == "private" and chat.id in bot.blocked and not business_connection_id:
            raise TelegramApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _business_connection(
        self, bot: BotState, business_connection_id: str, *, sending: bool = False
    ) -> dict[str, Any]:
        connection = bot.business_connections.get(business_connection_id)
        if connection is None:
            raise bad_request("BUSINESS_CONNECTION_INVALID")
        if sending and not connection["is_enabled"]:
            raise bad_request("BUSINESS_CONNECTION_INVALID")
        if sending and not connection.get("rights", {}).get("can_reply"):
            raise TelegramApiError(403, "Forbidden: BUSINESS_CONNECTION_NOT_ALLOWED")
        return connection
