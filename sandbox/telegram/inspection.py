"""What tests and the sandbox page read back: sent messages, commands, topics, state."""

from __future__ import annotations

import json
from typing import Any

from sandbox.telegram.records import Message
from sandbox.telegram.store import TelegramStore
from sandbox.telegram.wire import MEDIA_FIELDS


class Inspection(TelegramStore):
    """Read-only views of a bot's state."""

    def sent(self, connection_id: str, chat_id: int | None = None) -> list[dict[str, Any]]:
        """What the bot sent (latest state of each message), oldest first."""
        bot = self._bot(connection_id)
        rows: list[Message] = [
            message
            for (_, cid), chat in bot.chats.items()
            if chat_id is None or cid == chat_id
            for message in chat.messages.values()
            if message.outgoing
        ]
        return [self._sent_entry(m) for m in sorted(rows, key=lambda m: m.seq)]

    @staticmethod
    def _sent_entry(message: Message) -> dict[str, Any]:
        data = message.data
        entry: dict[str, Any] = {
            "message_id": message.message_id,
            "chat_id": data["chat"]["id"],
            "method": message.method,
            "reply_markup": message.reply_markup,
            "message_thread_id": data.get("message_thread_id"),
            "business_connection_id": data.get("business_connection_id"),
            "parse_mode": message.parse_mode,
            "reply_to_message_id": (data.get("reply_to_message") or {}).get("message_id"),
            "deleted": message.deleted,
            "edited": message.edited,
            "date": data["date"],
            "received_at": message.received_at,
        }
        if "text" in data:
            entry["text"] = data["text"]
        else:
            entry["caption"] = data.get("caption")
        for kind in MEDIA_FIELDS:
            if kind in data:
                obj = data[kind][-1] if kind == "photo" else data[kind]
                entry["media"] = {
                    "kind": kind,
                    "file_id": obj["file_id"],
                    "file_name": obj.get("file_name"),
                    "mime_type": obj.get("mime_type"),
                    "file_size": obj.get("file_size"),
                }
        return entry

    def commands(self, connection_id: str) -> list[dict[str, Any]]:
        """The command lists the bot set, per scope and language."""
        bot = self._bot(connection_id)
        return [
            {"scope": json.loads(scope), "language_code": language, "commands": commands}
            for (scope, language), commands in sorted(bot.commands.items())
        ]

    def topics(self, connection_id: str, chat_id: int) -> list[dict[str, Any]]:
        """The forum topics of a chat, oldest first."""
        bot = self._bot(connection_id)
        chat = bot.chats.get(("", chat_id))
        if chat is None:
            return []
        return [dict(topic) for _, topic in sorted(chat.topics.items())]

    def callback_answers(self, connection_id: str) -> list[dict[str, Any]]:
        """Every answered callback query, oldest first."""
        return list(self._bot(connection_id).callback_answers)

    def updates(self, connection_id: str) -> list[dict[str, Any]]:
        """Every update the emulator built for the bot, oldest first."""
        return list(self._bot(connection_id).history)

    def state(self, connection_id: str) -> dict[str, Any]:
        """Everything else worth inspecting about a bot."""
        bot = self._bot(connection_id)
        hook = bot.webhook
        return {
            "bot": bot.user,
            "webhook": None
            if hook is None
            else {
                "url": hook.url,
                "has_secret": hook.secret_token is not None,
                "allowed_updates": hook.allowed_updates,
                "last_error_message": hook.last_error_message,
            },
            "pending_updates": len(bot.pending),
            "failed_deliveries": len(bot.failed_deliveries),
            "menu_buttons": [
                {"chat_id": chat_id, "menu_button": button}
                for chat_id, button in bot.menu_buttons.items()
            ],
            "callback_answers": bot.callback_answers,
            "inline_answers": bot.inline_answers,
            "chat_actions": bot.chat_actions,
            "business_connections": list(bot.business_connections.values()),
        }
