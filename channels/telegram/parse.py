"""Telegram updates (aiogram types) to crm's ``Inbound*`` records.

The lead channel serves private chats: a lead writing to the business's bot, or (Telegram
Business) a lead writing to a rep's own account that the bot is connected to. Group and channel
posts, messages from bots, and the rep's own messages in a business chat are not lead input
and are skipped, as are update kinds the inbox has no use for.

External ids: Telegram numbers messages per chat, so a message is ``"<chat_id>:<message_id>"``.
A business chat numbers its messages in the rep's account, a sequence apart from the bot's own
chat with the same lead, so there the business connection id leads:
``"<business_connection_id>:<chat_id>:<message_id>"``. A pressed inline button (a callback
query, which has no message id of its own) is ``"cbq:<callback_query_id>"``.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import logging
import re
from typing import Any

import phonenumbers
from aiogram.types import (
    BusinessConnection,
    BusinessMessagesDeleted,
    CallbackQuery,
    Message,
    Update,
)
from pydantic import ValidationError

from crm.messaging import (
    BusinessConnectionUpdate,
    InboundEdit,
    InboundMessage,
    InboundUpdate,
    MediaRef,
    MessageKind,
)

logger = logging.getLogger(__name__)


def external_id(chat_id: int, message_id: int, business_connection_id: str | None = None) -> str:
    """The id a Telegram message is stored under (unique per bot connection)."""
    if business_connection_id:
        return f"{business_connection_id}:{chat_id}:{message_id}"
    return f"{chat_id}:{message_id}"


def split_external_id(value: str) -> tuple[str | None, int, int] | None:
    """``(business_connection_id, chat_id, message_id)`` of an external id, or None."""
    parts = value.rsplit(":", 2)
    try:
        if len(parts) == 2:
            return None, int(parts[0]), int(parts[1])
        if len(parts) == 3 and parts[0] and parts[0] != "cbq":
            return parts[0], int(parts[1]), int(parts[2])
    except ValueError:
        return None
    return None


def update_id_of(body: bytes) -> int | None:
    """The ``update_id`` of a webhook body (Telegram's key for a redelivered update)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("update_id"), int):
        return int(data["update_id"])
    return None


def phone_e164(raw: str) -> str | None:
    """A shared contact's number in E.164; Telegram sends digits, with or without '+'."""
    digits = re.sub(r"[^\d]", "", raw)
    if not digits:
        return None
    candidate = f"+{digits}"
    try:
        number = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException:
        return candidate
    if phonenumbers.is_possible_number(number):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return candidate


def parse_body(body: bytes) -> list[InboundUpdate]:
    """Every lead-facing update in a webhook body (one Update, or a getUpdates list)."""
    try:
        data = json.loads(body)
    except ValueError:
        logger.warning("telegram body is not JSON (%d bytes); skipped", len(body))
        return []
    if isinstance(data, dict) and "result" in data and "update_id" not in data:
        data = data["result"]  # a getUpdates answer
    items = data if isinstance(data, list) else [data]
    updates: list[InboundUpdate] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        unparsed: list[str] = []
        update = _validate(item, unparsed)
        if update is None:
            continue
        for parsed in parse_update(update):
            if unparsed and isinstance(parsed, InboundMessage):
                # Say what was left out, and keep it as Telegram sent it: nothing is lost.
                raw = {path: _raw_at(item, path) for path in unparsed}
                payload = {**parsed.payload, "unparsed": unparsed, "unparsed_raw": raw}
                parsed = dataclasses.replace(parsed, payload=payload)
            updates.append(parsed)
    return updates


_MESSAGE_KINDS = ("message", "business_message", "edited_message", "edited_business_message")
_MESSAGE_CORE = frozenset(
    {"message_id", "date", "chat", "from", "text", "caption", "business_connection_id", "edit_date"}
)


_PRUNE_ROUNDS = 8


def _drop(node: Any, path: tuple[Any, ...]) -> str | None:
    """Remove the object at ``path`` from ``node``; its dotted path, or None if not found.

    Segments that name no key (pydantic's union member tags, e.g. ``Message``) are skipped.
    """
    shown: list[str] = []
    parent: Any = None
    key: Any = None
    for segment in path:
        in_dict = isinstance(node, dict) and segment in node
        in_list = isinstance(node, list) and isinstance(segment, int) and 0 <= segment < len(node)
        if in_dict or in_list:
            parent, key, node = node, segment, node[segment]
        elif isinstance(segment, str):
            continue
        else:
            return None
        shown.append(str(segment))
    if parent is None or len(shown) < 2:
        return None  # never the update's message (or query) itself
    if isinstance(parent, dict):
        del parent[key]
    else:
        parent.pop(key)
    return ".".join(shown[1:])


def _raw_at(item: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted path of the update's message (or query), None when absent."""
    node: Any = next((v for v in item.values() if isinstance(v, dict)), None)
    for segment in dotted.split("."):
        if isinstance(node, dict):
            node = node.get(segment)
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            return None
    return node


def _pruned(item: dict[str, Any], exc: ValidationError, unparsed: list[str]) -> Update | None:
    """Validate again without the sub-objects aiogram rejected, noting each one left out."""
    candidate = copy.deepcopy(item)
    for _round in range(_PRUNE_ROUNDS):
        # The object holding the offending field goes (an empty thumbnail, a poll lacking a
        # field newer Bot APIs add). Only the deepest ones per round: a union's other members
        # (an inaccessible message) fail higher up, and must not take the whole message along.
        paths = {tuple(e["loc"][:-1]) for e in exc.errors()}
        deepest = max(len(p) for p in paths)
        chosen = sorted((p for p in paths if len(p) == deepest), reverse=True)
        dropped = [d for d in (_drop(candidate, p) for p in chosen) if d]
        if not dropped:
            return None
        for path in dropped:
            # A part inside one already noted is not news; an enclosing part replaces it.
            unparsed[:] = [u for u in unparsed if not u.startswith(path + ".")]
            unparsed.append(path)
        try:
            return Update.model_validate(candidate)
        except ValidationError as again:
            exc = again
    return None


def _validate(item: dict[str, Any], unparsed: list[str] | None = None) -> Update | None:
    """The aiogram Update of a JSON object, salvaging what a lead wrote when a part is odd.

    ``unparsed`` receives the dotted paths (inside the message) of the parts left out.
    """
    notes: list[str] = [] if unparsed is None else unparsed
    try:
        return Update.model_validate(item)
    except ValidationError as exc:
        errors = exc.error_count()
        first = exc
    pruned = _pruned(item, first, notes)
    if pruned is not None:
        logger.info("telegram update %s parsed without %s", item.get("update_id"), notes)
        return pruned
    notes.clear()
    # An attachment aiogram cannot read (a newer Bot API shape) must not lose the message
    # itself: keep its core fields; the content then parses as unsupported.
    kind = next((k for k in _MESSAGE_KINDS if isinstance(item.get(k), dict)), None)
    if kind is not None:
        core = {k: v for k, v in item[kind].items() if k in _MESSAGE_CORE}
        try:
            update = Update.model_validate({"update_id": item.get("update_id"), kind: core})
        except ValidationError:
            pass
        else:
            notes.extend(sorted(k for k in item[kind] if k not in _MESSAGE_CORE))
            return update
    logger.warning(
        "telegram update %s does not validate (%d errors); skipped", item.get("update_id"), errors
    )
    return None


def parse_update(update: Update) -> list[InboundUpdate]:
    """The inbox records one Update carries; kinds the inbox does not use give none."""
    if update.message is not None:
        return _listed(_inbound_message(update.message))
    if update.business_message is not None:
        return _listed(_inbound_message(update.business_message))
    if update.edited_message is not None:
        return _listed(_inbound_edit(update.edited_message))
    if update.edited_business_message is not None:
        return _listed(_inbound_edit(update.edited_business_message))
    if update.deleted_business_messages is not None:
        return list(_deletions(update.deleted_business_messages))
    if update.business_connection is not None:
        return [_business_connection(update.business_connection)]
    if update.callback_query is not None:
        return _listed(_button_press(update.callback_query))
    return []


def _listed(item: InboundUpdate | None) -> list[InboundUpdate]:
    return [] if item is None else [item]


def _from_lead(message: Message) -> bool:
    """A private chat's message written by the lead (not a bot, not the rep)."""
    user = message.from_user
    if message.chat.type != "private" or user is None or user.is_bot:
        return False
    # In a business chat the rep writes too; the lead is the one whose id is the chat's.
    return user.id == message.chat.id


def _sender_name(first: str | None, last: str | None) -> str | None:
    name = " ".join(part for part in (first, last) if part)
    return name or None


def _content(message: Message) -> tuple[MessageKind, MediaRef | None, dict[str, Any]]:
    """What a message carries: its kind, its attachment and structured extras."""
    if message.photo:
        largest = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        # Telegram re-encodes photos as JPEG.
        return MessageKind.IMAGE, _ref(largest.file_id, "image/jpeg", None, largest.file_size), {}
    if message.sticker is not None:
        sticker = message.sticker
        mime = (
            "application/x-tgsticker"
            if sticker.is_animated
            else "video/webm"
            if sticker.is_video
            else "image/webp"
        )
        payload = {"emoji": sticker.emoji} if sticker.emoji else {}
        return MessageKind.STICKER, _ref(sticker.file_id, mime, None, sticker.file_size), payload
    if message.voice is not None:
        voice = message.voice
        ref = _ref(voice.file_id, voice.mime_type or "audio/ogg", None, voice.file_size)
        return MessageKind.VOICE, ref, {"duration": voice.duration}
    if message.audio is not None:
        audio = message.audio
        ref = _ref(audio.file_id, audio.mime_type, audio.file_name, audio.file_size)
        return MessageKind.AUDIO, ref, {"duration": audio.duration}
    if message.video is not None:
        video = message.video
        ref = _ref(video.file_id, video.mime_type, video.file_name, video.file_size)
        return MessageKind.VIDEO, ref, {"duration": video.duration}
    if message.video_note is not None:
        note = message.video_note
        ref = _ref(note.file_id, "video/mp4", None, note.file_size)
        return MessageKind.VIDEO, ref, {"duration": note.duration}
    if message.document is not None:  # also set for GIF animations
        doc = message.document
        ref = _ref(doc.file_id, doc.mime_type, doc.file_name, doc.file_size)
        return MessageKind.DOCUMENT, ref, {}
    if message.venue is not None:
        venue = message.venue
        place: dict[str, Any] = {
            "latitude": venue.location.latitude,
            "longitude": venue.location.longitude,
            "name": venue.title,
            "address": venue.address,
        }
        return MessageKind.LOCATION, None, place
    if message.location is not None:
        location = message.location
        return (
            MessageKind.LOCATION,
            None,
            {"latitude": location.latitude, "longitude": location.longitude},
        )
    if message.contact is not None:
        contact = message.contact
        entry = {
            "phone": phone_e164(contact.phone_number),
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "user_id": contact.user_id,
        }
        return MessageKind.CONTACTS, None, {"contacts": [entry]}
    if message.text is not None:
        return MessageKind.TEXT, None, {}
    return MessageKind.UNSUPPORTED, None, {}


def _ref(file_id: str, mime_type: str | None, filename: str | None, size: int | None) -> MediaRef:
    return MediaRef(provider_media_id=file_id, mime_type=mime_type, filename=filename, size=size)


def _inbound_message(message: Message) -> InboundMessage | None:
    if not _from_lead(message):
        return None
    user = message.from_user
    assert user is not None
    kind, media, payload = _content(message)
    phone = None
    if message.contact is not None and message.contact.user_id == user.id:
        # Only a contact the lead shared of themselves ("share my number") is their phone.
        phone = phone_e164(message.contact.phone_number)
    bcid = message.business_connection_id
    reply = message.reply_to_message
    return InboundMessage(
        external_id=external_id(message.chat.id, message.message_id, bcid),
        sender_id=str(user.id),
        sent_at=_aware(message.date),
        kind=kind,
        text=message.text or message.caption or "",
        sender_name=_sender_name(user.first_name, user.last_name),
        phone=phone,
        telegram_username=user.username.lstrip("@").lower() if user.username else None,
        language_code=user.language_code,
        media=media,
        payload=payload,
        reply_to_external_id=(
            external_id(reply.chat.id, reply.message_id, bcid) if reply is not None else None
        ),
        business_connection_id=bcid,
    )


def _inbound_edit(message: Message) -> InboundEdit | None:
    if not _from_lead(message):
        return None
    assert message.from_user is not None
    at = (
        dt.datetime.fromtimestamp(message.edit_date, dt.UTC)
        if message.edit_date
        else _aware(message.date)
    )
    bcid = message.business_connection_id
    return InboundEdit(
        external_id=external_id(message.chat.id, message.message_id, bcid),
        sender_id=str(message.from_user.id),
        at=at,
        text=message.text if message.text is not None else (message.caption or ""),
        business_connection_id=bcid,
    )


def _deletions(event: BusinessMessagesDeleted) -> list[InboundEdit]:
    if event.chat.type != "private":
        return []
    # The update carries no date: the deletion is as old as its arrival.
    now = dt.datetime.now(dt.UTC)
    return [
        InboundEdit(
            external_id=external_id(event.chat.id, message_id, event.business_connection_id),
            sender_id=str(event.chat.id),
            at=now,
            deleted=True,
            business_connection_id=event.business_connection_id,
        )
        for message_id in event.message_ids
    ]


def _business_connection(connection: BusinessConnection) -> BusinessConnectionUpdate:
    # Bot API 9.0 moved can_reply into rights; older payloads still carry the flag.
    if connection.rights is not None:
        can_reply = bool(connection.rights.can_reply)
    else:
        can_reply = bool(connection.can_reply)
    return BusinessConnectionUpdate(
        business_connection_id=connection.id,
        rep_telegram_id=connection.user.id,
        rep_name=_sender_name(connection.user.first_name, connection.user.last_name),
        enabled=connection.is_enabled,
        can_reply=can_reply,
        at=_aware(connection.date),
    )


def _button_press(query: CallbackQuery) -> InboundMessage | None:
    """A lead pressed one of our inline buttons (``callback_data`` is the button id)."""
    message = query.message
    user = query.from_user
    if message is None or user.is_bot or message.chat.type != "private":
        return None
    if message.chat.id != user.id:
        return None
    data = query.data or ""
    title = data
    bcid: str | None = None
    if isinstance(message, Message):
        bcid = message.business_connection_id
        markup = message.reply_markup
        for row in markup.inline_keyboard if markup is not None else []:
            for button in row:
                if button.callback_data == data:
                    title = button.text
    return InboundMessage(
        external_id=f"cbq:{query.id}",
        sender_id=str(user.id),
        sent_at=dt.datetime.now(dt.UTC),  # a callback query carries no date
        kind=MessageKind.BUTTON,
        text=title,
        sender_name=_sender_name(user.first_name, user.last_name),
        telegram_username=user.username.lstrip("@").lower() if user.username else None,
        language_code=user.language_code,
        payload={"button_id": data},
        reply_to_external_id=external_id(message.chat.id, message.message_id, bcid),
        business_connection_id=bcid,
    )


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
