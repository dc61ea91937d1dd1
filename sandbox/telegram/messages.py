"""Sending, copying, forwarding, editing and deleting messages (and chat actions)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from sandbox.telegram.files import FileMethods
from sandbox.telegram.formatting import check_parse_mode
from sandbox.telegram.records import BotState, Chat, Message
from sandbox.telegram.wire import MEDIA_FIELDS, Params, TelegramApiError, bad_request, unix_now

_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a content and reply markup of the current message"
)
# Limits the emulator enforces only when asked to (``enforce_limits``).
_LIMIT_BOT = (30, 1.0)
_LIMIT_BOT_PAID = (1000, 1.0)  # sends with allow_paid_broadcast
_LIMIT_PRIVATE = (1, 1.0)
_LIMIT_GROUP = (20, 60.0)


class MessageMethods(FileMethods):
    """The Bot API methods that send and change messages."""

    def _validate_markup(self, markup: Any) -> dict[str, Any] | None:
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list):
                raise bad_request('can\'t parse inline keyboard button: field "inline_keyboard"')
            for row in rows:
                for button in row:
                    if not isinstance(button, dict) or not button.get("text"):
                        raise bad_request(
                            "can't parse inline keyboard button: Text buttons are unallowed"
                        )
                    data = button.get("callback_data")
                    if data is not None and not (1 <= len(str(data).encode()) <= 64):
                        raise bad_request("BUTTON_DATA_INVALID")
                    actions = set(button) - {"text", "style", "icon_custom_emoji_id"}
                    if len(actions) != 1:
                        raise bad_request(
                            "can't parse inline keyboard button: "
                            "exactly one of the optional fields must be used"
                        )
        elif "keyboard" in markup:
            for row in markup["keyboard"]:
                for button in row:
                    text = button if isinstance(button, str) else button.get("text")
                    if not text:
                        raise bad_request("keyboard button text is empty")
        elif not ({"remove_keyboard", "force_reply"} & set(markup)):
            raise bad_request("can't parse reply keyboard markup JSON object")
        return markup

    @staticmethod
    def _check_text(text: str | None, *, caption: bool) -> None:
        if text is None:
            return
        limit = 1024 if caption else 4096
        if len(text.encode("utf-16-le")) // 2 > limit:
            raise bad_request("message caption is too long" if caption else "message is too long")

    def _reply_to(self, chat: Chat, params: Params) -> dict[str, Any] | None:
        reply = params.value("reply_parameters")
        message_id: int | None
        allow_missing = params.flag("allow_sending_without_reply")
        if isinstance(reply, dict):
            message_id = int(reply["message_id"]) if "message_id" in reply else None
            allow_missing = bool(reply.get("allow_sending_without_reply", allow_missing))
        else:
            message_id = params.integer("reply_to_message_id")
        if message_id is None:
            return None
        target = chat.messages.get(message_id)
        if target is None or target.deleted:
            if allow_missing:
                return None
            raise bad_request("message to be replied not found")
        quoted = {k: v for k, v in target.data.items() if k != "reply_to_message"}
        return quoted

    def _thread(self, chat: Chat, params: Params) -> int | None:
        thread_id = params.integer("message_thread_id")
        if thread_id is None:
            return None
        if chat.type == "private":
            return None
        if thread_id not in chat.topics:
            raise bad_request("message thread not found")
        return thread_id

    def _new_outgoing(
        self,
        bot: BotState,
        chat: Chat,
        params: Params,
        *,
        method: str,
        content: dict[str, Any],
        parse_mode: str | None,
        markup: dict[str, Any] | None,
    ) -> Message:
        reply_to = self._reply_to(chat, params)
        thread_id = self._thread(chat, params)
        self._check_limits(bot, chat, paid=params.flag("allow_paid_broadcast"))
        data: dict[str, Any] = {
            "message_id": chat.allocate_id(),
            "date": unix_now(),
            "chat": chat.as_dict(),
        }
        business_connection_id = params.string("business_connection_id")
        if business_connection_id:
            connection = bot.business_connections[business_connection_id]
            # On behalf of the business account: the rep is the sender, the bot is named.
            data["from"] = connection["user"]
            data["sender_business_bot"] = bot.user
            data["business_connection_id"] = business_connection_id
        else:
            data["from"] = bot.user
        if thread_id is not None:
            data["message_thread_id"] = thread_id
            data["is_topic_message"] = True
        if reply_to is not None:
            data["reply_to_message"] = reply_to
        data.update(content)
        if markup and "inline_keyboard" in markup:
            data["reply_markup"] = markup
        message = Message(
            data=data,
            seq=next(self._seq),
            outgoing=True,
            method=method,
            parse_mode=parse_mode,
            reply_markup=markup,
        )
        chat.messages[message.message_id] = message
        return message

    def _content_text(self, params: Params) -> dict[str, Any]:
        text = params.string("text")
        if text is None or not text.strip():
            raise bad_request("message text is empty")
        self._check_text(text, caption=False)
        check_parse_mode(text, params.string("parse_mode"))
        content: dict[str, Any] = {"text": text}
        if (entities := params.value("entities")) is not None:
            content["entities"] = entities
        if (preview := params.value("link_preview_options")) is not None:
            content["link_preview_options"] = preview
        return content

    def _content_caption(self, params: Params) -> dict[str, Any]:
        caption = params.string("caption")
        if caption is None:
            return {}
        self._check_text(caption, caption=True)
        check_parse_mode(caption, params.string("parse_mode"))
        content: dict[str, Any] = {"caption": caption}
        if (entities := params.value("caption_entities")) is not None:
            content["caption_entities"] = entities
        return content

    def _check_limits(self, bot: BotState, chat: Chat, *, paid: bool = False) -> None:
        if not self.enforce_limits:
            return
        now = time.monotonic()
        rules = [("bot", *(_LIMIT_BOT_PAID if paid else _LIMIT_BOT))]
        rules.append(
            (f"chat:{chat.id}", *(_LIMIT_PRIVATE if chat.type == "private" else _LIMIT_GROUP))
        )
        for key, limit, window in rules:
            times = bot.send_times.setdefault(key, deque())
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) >= limit:
                wait = max(1, math.ceil(times[0] + window - now))
                raise TelegramApiError(
                    429, f"Too Many Requests: retry after {wait}", {"retry_after": wait}
                )
        for key, _, _ in rules:
            bot.send_times[key].append(now)

    def _send(self, bot: BotState, params: Params, method: str, kind: str | None) -> dict[str, Any]:
        chat = self._find_chat(bot, params)
        markup = self._validate_markup(params.value("reply_markup"))
        if kind is None:
            content = self._content_text(params)
        else:
            content = self._content_caption(params)
            record = self._input_file(bot, params, kind)
            content[kind] = self._media_object(bot, kind, record)
        message = self._new_outgoing(
            bot,
            chat,
            params,
            method=method,
            content=content,
            parse_mode=params.string("parse_mode"),
            markup=markup,
        )
        return message.data

    def _m_sendmessage(self, bot: BotState, params: Params) -> Any:
        return self._send(bot, params, "sendMessage", None)

    def _m_sendphoto(self, bot: BotState, params: Params) -> Any:
        return self._send(bot, params, "sendPhoto", "photo")

    def _m_senddocument(self, bot: BotState, params: Params) -> Any:
        return self._send(bot, params, "sendDocument", "document")

    def _m_sendvoice(self, bot: BotState, params: Params) -> Any:
        return self._send(bot, params, "sendVoice", "voice")

    def _m_sendaudio(self, bot: BotState, params: Params) -> Any:
        return self._send(bot, params, "sendAudio", "audio")

    def _m_sendvideo(self, bot: BotState, params: Params) -> Any:
        return self._send(bot, params, "sendVideo", "video")

    def _m_sendsticker(self, bot: BotState, params: Params) -> Any:
        return self._send(bot, params, "sendSticker", "sticker")

    def _m_sendchataction(self, bot: BotState, params: Params) -> Any:
        chat = self._find_chat(bot, params)
        action = params.string("action", required=True)
        if action not in _CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        bot.chat_actions.append(
            {
                "chat_id": chat.id,
                "action": action,
                "message_thread_id": params.integer("message_thread_id"),
                "business_connection_id": params.string("business_connection_id"),
                "date": unix_now(),
            }
        )
        return True

    def _source_message(self, bot: BotState, params: Params, verb: str) -> Message:
        from_chat_id = params.integer("from_chat_id", required=True)
        message_id = params.integer("message_id", required=True)
        assert from_chat_id is not None and message_id is not None
        source_chat = bot.chats.get(("", from_chat_id))
        if source_chat is None:
            raise bad_request("chat not found")
        source = source_chat.messages.get(message_id)
        if source is None or source.deleted:
            raise bad_request(f"message to {verb} not found")
        return source

    def _m_copymessage(self, bot: BotState, params: Params) -> Any:
        source = self._source_message(bot, params, "copy")
        chat = self._find_chat(bot, params)
        markup = self._validate_markup(params.value("reply_markup"))
        content = {k: v for k, v in source.data.items() if k in ("text", "entities", *MEDIA_FIELDS)}
        if params.has("caption"):
            content.update(self._content_caption(params))
        elif "caption" in source.data:
            content["caption"] = source.data["caption"]
        message = self._new_outgoing(
            bot,
            chat,
            params,
            method="copyMessage",
            content=content,
            parse_mode=params.string("parse_mode"),
            markup=markup,
        )
        return {"message_id": message.message_id}

    def _m_forwardmessage(self, bot: BotState, params: Params) -> Any:
        source = self._source_message(bot, params, "forward")
        chat = self._find_chat(bot, params)
        content = {
            k: v
            for k, v in source.data.items()
            if k in ("text", "entities", "caption", "caption_entities", *MEDIA_FIELDS)
        }
        sender = source.data.get("from")
        if sender is not None:
            content["forward_origin"] = {
                "type": "user",
                "sender_user": sender,
                "date": source.data["date"],
            }
        else:
            content["forward_origin"] = {
                "type": "chat",
                "sender_chat": source.data["chat"],
                "date": source.data["date"],
            }
        message = self._new_outgoing(
            bot,
            chat,
            params,
            method="forwardMessage",
            content=content,
            parse_mode=None,
            markup=None,
        )
        return message.data

    def _editable(self, bot: BotState, params: Params) -> Message:
        if params.has("inline_message_id"):
            raise bad_request("inline messages are not emulated")
        chat = self._find_chat(bot, params)
        message_id = params.integer("message_id", required=True)
        assert message_id is not None
        message = chat.messages.get(message_id)
        if message is None or message.deleted:
            raise bad_request("message to edit not found")
        if not message.outgoing:
            raise bad_request("message can't be edited")
        return message

    def _apply_edit(
        self,
        message: Message,
        changes: dict[str, Any],
        markup: dict[str, Any] | None,
        parse_mode: str | None,
        *,
        drop: Iterable[str] = (),
    ) -> dict[str, Any]:
        data = dict(message.data)
        for key in drop:
            data.pop(key, None)
        data.update(changes)
        # Editing without reply_markup removes an inline keyboard, as Telegram does.
        if markup and "inline_keyboard" in markup:
            data["reply_markup"] = markup
        else:
            data.pop("reply_markup", None)
        if data == message.data:
            raise bad_request(_NOT_MODIFIED.removeprefix("Bad Request: "))
        data["edit_date"] = unix_now()
        message.data = data
        message.reply_markup = markup
        message.parse_mode = parse_mode if parse_mode is not None else message.parse_mode
        message.edited = True
        return data

    def _m_editmessagetext(self, bot: BotState, params: Params) -> Any:
        message = self._editable(bot, params)
        if "text" not in message.data:
            raise bad_request("there is no text in the message to edit")
        markup = self._validate_markup(params.value("reply_markup"))
        content = self._content_text(params)
        return self._apply_edit(
            message, content, markup, params.string("parse_mode"), drop=("entities",)
        )

    def _m_editmessagecaption(self, bot: BotState, params: Params) -> Any:
        message = self._editable(bot, params)
        if not any(kind in message.data for kind in MEDIA_FIELDS):
            raise bad_request("there is no caption in the message to edit")
        markup = self._validate_markup(params.value("reply_markup"))
        content = self._content_caption(params)
        return self._apply_edit(
            message,
            content,
            markup,
            params.string("parse_mode"),
            drop=("caption", "caption_entities"),
        )

    def _m_editmessagereplymarkup(self, bot: BotState, params: Params) -> Any:
        message = self._editable(bot, params)
        markup = self._validate_markup(params.value("reply_markup"))
        return self._apply_edit(message, {}, markup, None)

    def _m_deletemessage(self, bot: BotState, params: Params) -> Any:
        chat = self._find_chat(bot, params)
        message_id = params.integer("message_id", required=True)
        assert message_id is not None
        message = chat.messages.get(message_id)
        if message is None or message.deleted:
            raise bad_request("message to delete not found")
        message.deleted = True
        return True

    def _m_deletemessages(self, bot: BotState, params: Params) -> Any:
        chat = self._find_chat(bot, params)
        for message_id in params.value("message_ids") or []:
            message = chat.messages.get(int(message_id))
            if message is not None:
                message.deleted = True
        return True
