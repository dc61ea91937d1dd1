"""The emulator's state as JSON for the state file, and back."""

from __future__ import annotations

import itertools
from typing import Any

from sandbox.telegram.records import BotState, Chat, FileRecord, Message, Webhook
from sandbox.telegram.store import TelegramStore

# How many of a chat's latest messages survive a restart.
PERSISTED_MESSAGES_PER_CHAT = 1000


class StateSnapshots(TelegramStore):
    """Snapshot and restore of every bot (see sandbox.persist)."""

    @staticmethod
    def _peek(counter: itertools.count[int]) -> tuple[int, itertools.count[int]]:
        value = next(counter)
        return value, itertools.count(value)

    def _snapshot(self) -> dict[str, Any]:
        assert self._state is not None
        next_seq, self._seq = self._peek(self._seq)
        next_id, self._ids = self._peek(self._ids)
        bots = []
        for bot in self._bots.values():
            for record in bot.files.values():
                if record.data:
                    self._state.put_blob(record.file_id, record.data)
            hook = bot.webhook
            bots.append(
                {
                    "connection_id": bot.connection_id,
                    "token": bot.token,
                    "user": bot.user,
                    "next_update_id": bot.next_update_id,
                    "users": list(bot.users.values()),
                    "blocked": sorted(bot.blocked),
                    # Not delivered yet: handed on after the restart, like Telegram keeps them.
                    "pending": [*bot.pending, *bot.outbox],
                    "webhook": None
                    if hook is None
                    else {
                        "url": hook.url,
                        "secret_token": hook.secret_token,
                        "allowed_updates": hook.allowed_updates,
                        "max_connections": hook.max_connections,
                    },
                    "poll_allowed_updates": bot.poll_allowed_updates,
                    "commands": [[*key, value] for key, value in bot.commands.items()],
                    "menu_buttons": [[key, value] for key, value in bot.menu_buttons.items()],
                    "business_connections": bot.business_connections,
                    "files": [
                        {
                            "file_id": f.file_id,
                            "file_unique_id": f.file_unique_id,
                            "file_path": f.file_path,
                            "mime_type": f.mime_type,
                            "filename": f.filename,
                            "url": f.url,
                            "stored": bool(f.data),
                        }
                        for f in bot.files.values()
                    ],
                    "chats": [self._chat_snapshot(chat) for chat in bot.chats.values()],
                }
            )
        return {"next_seq": next_seq, "next_id": next_id, "bots": bots}

    @staticmethod
    def _chat_snapshot(chat: Chat) -> dict[str, Any]:
        return {
            "id": chat.id,
            "type": chat.type,
            "business_connection_id": chat.business_connection_id,
            "title": chat.title,
            "first_name": chat.first_name,
            "last_name": chat.last_name,
            "username": chat.username,
            "is_forum": chat.is_forum,
            "bot_status": chat.bot_status,
            "bot_rights": chat.bot_rights,
            "next_message_id": chat.next_message_id,
            "topics": [[key, topic] for key, topic in chat.topics.items()],
            # The latest messages only (what a reply or a button press may still point at); the
            # next id is kept apart, so ids go on increasing all the same.
            "messages": [
                {
                    "data": m.data,
                    "seq": m.seq,
                    "outgoing": m.outgoing,
                    "method": m.method,
                    "parse_mode": m.parse_mode,
                    "reply_markup": m.reply_markup,
                    "deleted": m.deleted,
                    "edited": m.edited,
                    "received_at": m.received_at,
                }
                for m in itertools.islice(
                    reversed(chat.messages.values()), PERSISTED_MESSAGES_PER_CHAT
                )
            ][::-1],
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        assert self._state is not None
        self._seq = itertools.count(int(saved.get("next_seq", 1)))
        self._ids = itertools.count(int(saved.get("next_id", 1)))
        for raw in saved.get("bots", []):
            bot = BotState(
                connection_id=raw["connection_id"],
                token=raw["token"],
                user=raw["user"],
                next_update_id=int(raw["next_update_id"]),
            )
            bot.users = {int(u["id"]): u for u in raw.get("users", [])}
            bot.blocked = {int(i) for i in raw.get("blocked", [])}
            bot.pending.extend(raw.get("pending", []))
            if (hook := raw.get("webhook")) is not None:
                bot.webhook = Webhook(
                    url=hook["url"],
                    secret_token=hook["secret_token"],
                    allowed_updates=hook["allowed_updates"],
                    max_connections=int(hook["max_connections"]),
                )
            bot.poll_allowed_updates = raw.get("poll_allowed_updates")
            bot.commands = {(c[0], c[1]): c[2] for c in raw.get("commands", [])}
            bot.menu_buttons = {m[0]: m[1] for m in raw.get("menu_buttons", [])}
            bot.business_connections = dict(raw.get("business_connections", {}))
            for f in raw.get("files", []):
                data = (self._state.get_blob(f["file_id"]) or b"") if f["stored"] else b""
                bot.files[f["file_id"]] = FileRecord(
                    file_id=f["file_id"],
                    file_unique_id=f["file_unique_id"],
                    file_path=f["file_path"],
                    data=data,
                    mime_type=f["mime_type"],
                    filename=f["filename"],
                    url=f["url"],
                )
            for c in raw.get("chats", []):
                chat = Chat(
                    id=int(c["id"]),
                    type=c["type"],
                    business_connection_id=c["business_connection_id"],
                    title=c["title"],
                    first_name=c["first_name"],
                    last_name=c["last_name"],
                    username=c["username"],
                    is_forum=bool(c["is_forum"]),
                    bot_status=c["bot_status"],
                    bot_rights=dict(c["bot_rights"]),
                    next_message_id=int(c["next_message_id"]),
                )
                chat.topics = {int(key): topic for key, topic in c.get("topics", [])}
                for m in c.get("messages", []):
                    message = Message(
                        data=m["data"],
                        seq=int(m["seq"]),
                        outgoing=bool(m["outgoing"]),
                        method=m["method"],
                        parse_mode=m["parse_mode"],
                        reply_markup=m["reply_markup"],
                        deleted=bool(m["deleted"]),
                        edited=bool(m["edited"]),
                        received_at=float(m["received_at"]),
                    )
                    chat.messages[message.message_id] = message
                bot.chats[(chat.business_connection_id or "", chat.id)] = chat
            self._bots[bot.connection_id] = bot
            self._by_token[bot.token] = bot
