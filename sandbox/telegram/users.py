"""The users' side, played through the control API: messages, edits, presses, queries."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from fastapi import HTTPException

from sandbox.telegram.control import control_float, control_ids, control_int
from sandbox.telegram.delivery import UpdateDelivery
from sandbox.telegram.files import FileMethods
from sandbox.telegram.records import BotState, Chat, Message
from sandbox.telegram.wire import MEDIA_FIELDS, unix_now


class UserActions(FileMethods, UpdateDelivery):
    """Builds the updates users cause and delivers them."""

    def _user(self, bot: BotState, payload: dict[str, Any]) -> dict[str, Any]:
        user_id = int(payload["from_user_id"])
        known = bot.users.get(user_id, {})
        user: dict[str, Any] = {
            "id": user_id,
            "is_bot": False,
            "first_name": payload.get("first_name") or known.get("first_name") or "Lead",
        }
        for key in ("last_name", "username", "language_code"):
            value = payload.get(key) or known.get(key)
            if value:
                user[key] = value
        bot.users[user_id] = user
        return user

    def _next_update(self, bot: BotState, kind: str, body: Any) -> dict[str, Any]:
        update = {"update_id": bot.next_update_id, kind: body}
        bot.next_update_id += 1
        return update

    def _user_content(self, bot: BotState, payload: dict[str, Any]) -> dict[str, Any]:
        content: dict[str, Any] = {}
        text = payload.get("text")
        media_kind = next((k for k in MEDIA_FIELDS if payload.get(f"{k}_base64")), None)
        if media_kind is not None:
            try:
                data = base64.b64decode(payload[f"{media_kind}_base64"], validate=True)
            except ValueError:
                raise HTTPException(400, f"{media_kind}_base64 is not base64") from None
            record = self._store_file(
                bot,
                data,
                kind=media_kind,
                filename=payload.get("filename"),
                mime_type=payload.get("mime_type"),
            )
            content[media_kind] = self._media_object(bot, media_kind, record)
            if text:
                content["caption"] = text
        elif isinstance(payload.get("contact"), dict):
            contact = dict(payload["contact"])
            if "phone_number" not in contact:
                raise HTTPException(422, "contact.phone_number: field required")
            contact.setdefault("first_name", payload.get("first_name") or "Lead")
            # The "share my phone number" button: the contact is the sender's own.
            contact.setdefault("user_id", int(payload["from_user_id"]))
            if contact["user_id"] is None:
                del contact["user_id"]
            content["contact"] = contact
        elif isinstance(payload.get("location"), dict):
            location = payload["location"]
            content["location"] = {
                "latitude": control_float(location, "latitude"),
                "longitude": control_float(location, "longitude"),
            }
        elif text:
            content["text"] = text
            if (entities := payload.get("entities")) is not None:
                content["entities"] = entities
            elif text.startswith("/"):
                command = text.split(maxsplit=1)[0]
                content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        else:
            raise HTTPException(400, "an update needs text, media, contact or location")
        return content

    async def post_update(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Play a user: build the Update ``payload`` describes and deliver it to the bot."""
        bot = self._bot(str(payload.get("connection_id", "")))
        payload = control_ids(payload)
        if payload.get("from_user_id") is None:
            raise HTTPException(422, "from_user_id: field required")
        if "inline_query" in payload:
            return self._post_inline_query(bot, payload)
        user = self._user(bot, payload)
        business_connection_id = payload.get("business_connection_id")
        if business_connection_id:
            connection = bot.business_connections.get(business_connection_id)
            if connection is None:
                raise HTTPException(400, "unknown business_connection_id")
            if not connection["is_enabled"]:
                raise HTTPException(400, "the business connection is disabled")
        chat_id = int(payload.get("chat_id") or user["id"])
        chat = self._ensure_chat(
            bot, chat_id, business_connection_id, title=payload.get("chat_title")
        )
        if chat.type == "private" and chat.id == user["id"]:
            chat.first_name = user["first_name"]
            chat.last_name = user.get("last_name")
            chat.username = user.get("username")
        if payload.get("delete_message_ids") is not None:
            return self._post_deletion(bot, chat, payload)
        if payload.get("callback_data") is not None:
            return self._post_callback(bot, chat, user, payload)
        if payload.get("edit"):
            return self._post_edit(bot, chat, user, payload)
        content = self._user_content(bot, payload)
        wanted = payload.get("message_id")
        if wanted is not None and int(wanted) in chat.messages:
            raise HTTPException(400, f"message_id {wanted} is already used in this chat")
        data: dict[str, Any] = {
            "message_id": chat.allocate_id(int(wanted) if wanted is not None else None),
            "from": user,
            "chat": chat.as_dict(),
            "date": unix_now(),
        }
        if business_connection_id:
            data["business_connection_id"] = business_connection_id
        thread_id = payload.get("message_thread_id")
        if thread_id is not None:
            if int(thread_id) not in chat.topics:
                raise HTTPException(400, "message thread not found")
            data["message_thread_id"] = int(thread_id)
            data["is_topic_message"] = True
        reply_id = payload.get("reply_to_message_id")
        if reply_id is None and thread_id is not None and int(thread_id) in chat.messages:
            # Like Telegram: a message in a topic replies to the topic's "created" message.
            reply_id = int(thread_id)
        if reply_id is not None:
            target = chat.messages.get(int(reply_id))
            if target is None:
                raise HTTPException(400, f"no message {reply_id} in this chat to reply to")
            data["reply_to_message"] = {
                k: v for k, v in target.data.items() if k != "reply_to_message"
            }
        data.update(content)
        message = Message(data=data, seq=next(self._seq), outgoing=False, method="user")
        chat.messages[message.message_id] = message
        kind = "business_message" if business_connection_id else "message"
        update = self._next_update(bot, kind, data)
        self._emit(bot, update)
        return {"update_id": update["update_id"], "message_id": message.message_id}

    def _post_edit(
        self, bot: BotState, chat: Chat, user: dict[str, Any], payload: dict[str, Any]
    ) -> dict[str, Any]:
        message_id = payload.get("message_id")
        message = chat.messages.get(int(message_id)) if message_id is not None else None
        if message is None or message.deleted:
            raise HTTPException(400, "edit needs the message_id of a message in this chat")
        if message.outgoing or message.data.get("from", {}).get("id") != user["id"]:
            raise HTTPException(400, "a user can only edit their own messages")
        text = payload.get("text")
        if not text:
            raise HTTPException(400, "edit needs text")
        data = dict(message.data)
        data["caption" if "text" not in data else "text"] = text
        data.pop("entities", None)
        data["edit_date"] = unix_now()
        message.data = data
        message.edited = True
        kind = "edited_business_message" if chat.business_connection_id else "edited_message"
        update = self._next_update(bot, kind, data)
        self._emit(bot, update)
        return {"update_id": update["update_id"], "message_id": message.message_id}

    def _post_deletion(self, bot: BotState, chat: Chat, payload: dict[str, Any]) -> dict[str, Any]:
        if not chat.business_connection_id:
            raise HTTPException(
                400, "bots learn of deletions only in business chats: pass business_connection_id"
            )
        ids = [int(i) for i in payload["delete_message_ids"]]
        for message_id in ids:
            if (message := chat.messages.get(message_id)) is not None:
                message.deleted = True
        body = {
            "business_connection_id": chat.business_connection_id,
            "chat": chat.as_dict(),
            "message_ids": ids,
        }
        update = self._next_update(bot, "deleted_business_messages", body)
        self._emit(bot, update)
        return {"update_id": update["update_id"]}

    @staticmethod
    def _buttons_data(message: Message) -> list[str]:
        markup = message.data.get("reply_markup") or {}
        return [
            str(button["callback_data"])
            for row in markup.get("inline_keyboard", [])
            for button in row
            if "callback_data" in button
        ]

    def _post_callback(
        self, bot: BotState, chat: Chat, user: dict[str, Any], payload: dict[str, Any]
    ) -> dict[str, Any]:
        data = str(payload["callback_data"])
        message_id = payload.get("message_id")
        message: Message | None
        if message_id is not None:
            message = chat.messages.get(int(message_id))
            if message is None or message.deleted or not message.outgoing:
                raise HTTPException(400, f"the bot has no message {message_id} in this chat")
            if data not in self._buttons_data(message):
                raise HTTPException(400, "that message has no button with this callback_data")
        else:
            candidates = [
                m
                for m in chat.messages.values()
                if m.outgoing and not m.deleted and data in self._buttons_data(m)
            ]
            if not candidates:
                raise HTTPException(400, "no message of the bot has a button with this data")
            message = max(candidates, key=lambda m: m.message_id)
        query_id = str(next(self._ids) * 1000003 + bot.id)
        instance = hashlib.sha256(f"{bot.id}:{chat.id}".encode()).hexdigest()[:16]
        body = {
            "id": query_id,
            "from": user,
            "message": message.data,
            "chat_instance": instance,
            "data": data,
        }
        bot.callback_queries[query_id] = {"answered": False, "data": data}
        update = self._next_update(bot, "callback_query", body)
        self._emit(bot, update)
        return {
            "update_id": update["update_id"],
            "callback_query_id": query_id,
            "message_id": message.message_id,
        }

    def _post_inline_query(self, bot: BotState, payload: dict[str, Any]) -> dict[str, Any]:
        user = self._user(bot, payload)
        query_id = str(next(self._ids) * 1000003 + bot.id)
        body = {
            "id": query_id,
            "from": user,
            "query": str(payload["inline_query"]),
            "offset": "",
            "chat_type": "sender",
        }
        bot.inline_queries[query_id] = {"answered": False, "query": body["query"]}
        update = self._next_update(bot, "inline_query", body)
        self._emit(bot, update)
        return {"update_id": update["update_id"], "inline_query_id": query_id}

    async def connect_business(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A rep connects (or disconnects) the bot to their account: a business_connection."""
        bot = self._bot(str(payload.get("connection_id", "")))
        user_id = control_int(payload, "user_id", required=True)
        assert user_id is not None
        business_connection_id = str(
            payload.get("business_connection_id") or f"BC{bot.id}x{next(self._ids)}"
        )
        user: dict[str, Any] = {
            "id": user_id,
            "is_bot": False,
            "first_name": payload.get("first_name") or "Rep",
        }
        for key in ("last_name", "username"):
            if payload.get(key):
                user[key] = payload[key]
        rights: dict[str, Any] = {}
        if payload.get("can_reply", True):
            rights["can_reply"] = True
            rights["can_read_messages"] = True
        connection = {
            "id": business_connection_id,
            "user": user,
            "user_chat_id": user_id,
            "date": unix_now(),
            "rights": rights,
            "is_enabled": bool(payload.get("enabled", True)),
        }
        bot.business_connections[business_connection_id] = connection
        update = self._next_update(bot, "business_connection", connection)
        self._emit(bot, update)
        return {"update_id": update["update_id"], "business_connection_id": business_connection_id}
