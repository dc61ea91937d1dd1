"""The bot's own settings (getMe, commands, menu button) and answers to queries."""

from __future__ import annotations

import json
import re
from typing import Any

from sandbox.telegram.records import BotState
from sandbox.telegram.store import TelegramStore
from sandbox.telegram.wire import Params, bad_request

_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"


class BotMethods(TelegramStore):
    """Bot settings and answers to callback and inline queries."""

    def _m_answercallbackquery(self, bot: BotState, params: Params) -> Any:
        query_id = params.string("callback_query_id", required=True)
        assert query_id is not None
        query = bot.callback_queries.get(query_id)
        if query is None or query["answered"]:
            raise bad_request(_QUERY_TOO_OLD.removeprefix("Bad Request: "))
        query["answered"] = True
        bot.callback_answers.append(
            {
                "callback_query_id": query_id,
                "data": query.get("data"),
                "text": params.string("text"),
                "show_alert": params.flag("show_alert"),
                "url": params.string("url"),
                "cache_time": params.integer("cache_time"),
            }
        )
        return True

    def _m_answerinlinequery(self, bot: BotState, params: Params) -> Any:
        query_id = params.string("inline_query_id", required=True)
        assert query_id is not None
        query = bot.inline_queries.get(query_id)
        if query is None or query["answered"]:
            raise bad_request(_QUERY_TOO_OLD.removeprefix("Bad Request: "))
        results = params.value("results")
        if not isinstance(results, list):
            raise bad_request("can't parse inline query results JSON object")
        query["answered"] = True
        bot.inline_answers.append(
            {
                "inline_query_id": query_id,
                "query": query.get("query"),
                "results": results,
                "cache_time": params.integer("cache_time"),
                "is_personal": params.flag("is_personal"),
                "button": params.value("button"),
            }
        )
        return True

    # ---- bot settings ----------------------------------------------------------------------

    def _m_getme(self, bot: BotState, params: Params) -> Any:
        return bot.user

    def _m_logout(self, bot: BotState, params: Params) -> Any:
        return True

    def _m_close(self, bot: BotState, params: Params) -> Any:
        return True

    @staticmethod
    def _scope_key(params: Params) -> tuple[str, str]:
        scope = params.value("scope") or {"type": "default"}
        if not isinstance(scope, dict) or "type" not in scope:
            raise bad_request("can't parse BotCommandScope JSON object")
        language = params.string("language_code") or ""
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise bad_request("invalid language code specified")
        return json.dumps(scope, sort_keys=True), language

    def _m_setmycommands(self, bot: BotState, params: Params) -> Any:
        commands = params.value("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("can't parse commands JSON object")
        for command in commands:
            if not isinstance(command, dict) or not _COMMAND_RE.match(
                str(command.get("command", ""))
            ):
                raise bad_request("BOT_COMMAND_INVALID")
            if not (1 <= len(str(command.get("description", ""))) <= 256):
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._scope_key(params)
        if commands:
            bot.commands[key] = [
                {"command": c["command"], "description": c["description"]} for c in commands
            ]
        else:
            bot.commands.pop(key, None)
        return True

    def _m_getmycommands(self, bot: BotState, params: Params) -> Any:
        return bot.commands.get(self._scope_key(params), [])

    def _m_deletemycommands(self, bot: BotState, params: Params) -> Any:
        bot.commands.pop(self._scope_key(params), None)
        return True

    def _m_setchatmenubutton(self, bot: BotState, params: Params) -> Any:
        chat_id = params.integer("chat_id")
        if chat_id is not None and ("", chat_id) not in bot.chats:
            raise bad_request("chat not found")
        button = params.value("menu_button") or {"type": "default"}
        if not isinstance(button, dict) or button.get("type") not in (
            "default",
            "commands",
            "web_app",
        ):
            raise bad_request("can't parse menu button JSON object")
        if button["type"] == "web_app" and not (
            button.get("text") and isinstance(button.get("web_app"), dict)
        ):
            raise bad_request("can't parse menu button JSON object")
        bot.menu_buttons[chat_id] = button
        return True

    def _m_getchatmenubutton(self, bot: BotState, params: Params) -> Any:
        chat_id = params.integer("chat_id")
        return bot.menu_buttons.get(chat_id) or bot.menu_buttons.get(None) or {"type": "default"}
