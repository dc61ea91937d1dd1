"""Chats, members, forum topics and business connections, as the bot asks about them."""

from __future__ import annotations

from typing import Any

from sandbox.telegram.records import BotState, Chat, Message
from sandbox.telegram.store import TelegramStore
from sandbox.telegram.wire import Params, bad_request, unix_now

_TOPIC_COLORS = (7322096, 16766590, 13338331, 9367192, 16749490, 16478047)


class ChatMethods(TelegramStore):
    """getChat, getChatMember, forum topics, getBusinessConnection."""

    def _m_getchat(self, bot: BotState, params: Params) -> Any:
        chat = self._find_chat(bot, params)
        info = chat.as_dict()
        info.update(
            {
                "accent_color_id": 0,
                "max_reaction_count": 11,
                "accepted_gift_types": {
                    "unlimited_gifts": False,
                    "limited_gifts": False,
                    "unique_gifts": False,
                    "premium_subscription": False,
                    "gifts_from_channels": False,
                },
            }
        )
        return info

    def _m_getchatmember(self, bot: BotState, params: Params) -> Any:
        chat = self._find_chat(bot, params)
        user_id = params.integer("user_id", required=True)
        if user_id == bot.id:
            if chat.type == "private":
                return {"status": "member", "user": bot.user}
            rights = {
                name: True
                for name in (
                    "can_manage_chat",
                    "can_delete_messages",
                    "can_manage_video_chats",
                    "can_restrict_members",
                    "can_promote_members",
                    "can_change_info",
                    "can_invite_users",
                    "can_post_stories",
                    "can_edit_stories",
                    "can_delete_stories",
                    "can_send_welcome_messages",
                    "can_pin_messages",
                    "can_manage_topics",
                )
            }
            rights.update(chat.bot_rights)
            if chat.bot_status == "member":
                return {"status": "member", "user": bot.user}
            return {
                "status": "administrator",
                "user": bot.user,
                "can_be_edited": False,
                "is_anonymous": False,
                **rights,
            }
        user = bot.users.get(int(user_id or 0))
        if user is None:
            raise bad_request("user not found")
        if chat.type == "private" and user["id"] in bot.blocked:
            return {"status": "kicked", "user": user, "until_date": 0}
        return {"status": "member", "user": user}

    def _forum(self, bot: BotState, params: Params) -> Chat:
        chat = self._find_chat(bot, params)
        if chat.type != "supergroup" or not chat.is_forum:
            raise bad_request("the chat is not a forum")
        if chat.bot_status != "administrator" or not chat.bot_rights.get("can_manage_topics", True):
            raise bad_request("not enough rights to manage topics")
        return chat

    def _topic(self, chat: Chat, params: Params) -> dict[str, Any]:
        thread_id = params.integer("message_thread_id", required=True)
        topic = chat.topics.get(int(thread_id or 0))
        if topic is None:
            raise bad_request("message thread not found")
        return topic

    def _m_createforumtopic(self, bot: BotState, params: Params) -> Any:
        chat = self._forum(bot, params)
        name = params.string("name", required=True) or ""
        if not (1 <= len(name) <= 128):
            raise bad_request("TOPIC_TITLE_EMPTY" if not name else "TOPIC_TITLE_TOO_LONG")
        color = params.integer("icon_color") or _TOPIC_COLORS[0]
        if color not in _TOPIC_COLORS:
            raise bad_request("TOPIC_COLOR_INVALID")
        # A topic is identified by the id of its service message "topic created".
        thread_id = chat.allocate_id()
        topic: dict[str, Any] = {"message_thread_id": thread_id, "name": name, "icon_color": color}
        if emoji := params.string("icon_custom_emoji_id"):
            topic["icon_custom_emoji_id"] = emoji
        service = {
            "message_id": thread_id,
            "date": unix_now(),
            "chat": chat.as_dict(),
            "from": bot.user,
            "message_thread_id": thread_id,
            "is_topic_message": True,
            "forum_topic_created": {"name": name, "icon_color": color},
        }
        chat.messages[thread_id] = Message(
            data=service, seq=next(self._seq), outgoing=False, method="createForumTopic"
        )
        chat.topics[thread_id] = {**topic, "is_closed": False}
        return topic

    def _m_editforumtopic(self, bot: BotState, params: Params) -> Any:
        chat = self._forum(bot, params)
        topic = self._topic(chat, params)
        name = params.string("name")
        emoji = params.raw.get("icon_custom_emoji_id")
        if name is None and emoji is None:
            raise bad_request("TOPIC_NOT_MODIFIED")
        if name is not None:
            if not (1 <= len(name) <= 128):
                raise bad_request("TOPIC_TITLE_TOO_LONG")
            topic["name"] = name
        if emoji is not None:
            topic["icon_custom_emoji_id"] = emoji
        return True

    def _set_closed(self, bot: BotState, params: Params, closed: bool) -> bool:
        chat = self._forum(bot, params)
        topic = self._topic(chat, params)
        if topic["is_closed"] == closed:
            raise bad_request("TOPIC_NOT_MODIFIED")
        topic["is_closed"] = closed
        return True

    def _m_closeforumtopic(self, bot: BotState, params: Params) -> Any:
        return self._set_closed(bot, params, True)

    def _m_reopenforumtopic(self, bot: BotState, params: Params) -> Any:
        return self._set_closed(bot, params, False)

    def _m_deleteforumtopic(self, bot: BotState, params: Params) -> Any:
        chat = self._forum(bot, params)
        topic = self._topic(chat, params)
        thread_id = topic["message_thread_id"]
        del chat.topics[thread_id]
        for message in chat.messages.values():
            if message.data.get("message_thread_id") == thread_id:
                message.deleted = True
        return True

    def _m_getbusinessconnection(self, bot: BotState, params: Params) -> Any:
        business_connection_id = params.string("business_connection_id", required=True)
        return self._business_connection(bot, business_connection_id or "")
