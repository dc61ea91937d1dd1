"""What a lead notification says and carries: its HTML text or caption, and the lead's media.

Everything the lead controls is escaped. The lead's photo, document, voice message, audio or
video is prepared for the Bot API here (``attachment_of``) and sent by
``bot.senders.notifications.Notifier``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from aiogram.types import Message as TelegramMessage
from aiogram.utils.i18n import gettext as _

from crm.messaging import MessageKind
from crm.services.inbox.lead_recipients import OpenDeal

CHANNEL_NAMES = {"whatsapp": "WhatsApp", "telegram": "Telegram"}
CAPTION_LIMIT = 1024  # UTF-16 units of a media caption (4096 for a text: bot.long_messages)
# What a bot may upload to the Bot API, in bytes: photos are smaller.
UPLOAD_LIMIT = 50 * 1024 * 1024
PHOTO_LIMIT = 10 * 1024 * 1024
# The Bot API method (and Message field) that carries each kind of lead media.
SEND_AS = {
    MessageKind.IMAGE: "photo",
    MessageKind.DOCUMENT: "document",
    MessageKind.VOICE: "voice",
    MessageKind.AUDIO: "audio",
    MessageKind.VIDEO: "video",
}
DEFAULT_NAMES = {
    "photo": "photo.jpg",
    "document": "document",
    "voice": "voice.ogg",
    "audio": "audio.mp3",
    "video": "video.mp4",
}


def media_label(kind: str) -> str:
    """A bracketed, localized name of what a media message carries."""
    labels = {
        MessageKind.IMAGE: _("[photo]"),
        MessageKind.DOCUMENT: _("[document]"),
        MessageKind.AUDIO: _("[audio]"),
        MessageKind.VOICE: _("[voice message]"),
        MessageKind.VIDEO: _("[video]"),
        MessageKind.STICKER: _("[sticker]"),
        MessageKind.LOCATION: _("[location]"),
        MessageKind.CONTACTS: _("[contact card]"),
    }
    try:
        return labels.get(MessageKind(kind), f"[{kind}]")
    except ValueError:
        return f"[{kind}]"


def intent_label(intent: str) -> str:
    """The localized name of a lead message's intent."""
    labels = {
        "interested": _("🔥 interested"),
        "meeting_request": _("📅 wants a meeting"),
        "question": _("❓ question"),
        "not_now": _("⏳ not now"),
        "not_interested": _("🚫 not interested"),
        "unsubscribe": _("🔕 unsubscribe"),
        "out_of_office": _("🏖 out of office"),
        "wrong_person": _("👤 wrong person"),
    }
    return labels.get(intent, intent)


def render_notification(
    *,
    lead_name: str,
    channel: str,
    deal: OpenDeal | None,
    kind: str,
    text: str,
    attached: bool = False,
    intent: str | None = None,
) -> str:
    """The HTML of a lead notification; everything the lead controls is escaped.

    With ``attached`` the lead's media travels with it (this is its caption): no label then,
    and no placeholder for a media message without a caption.
    """
    lines = [
        _("💬 <b>{name}</b> via {channel}").format(
            name=html.escape(lead_name), channel=CHANNEL_NAMES.get(channel, channel)
        )
    ]
    if deal is not None:
        lines.append(
            _("Deal: {title} ({stage})").format(
                title=html.escape(deal.title), stage=html.escape(deal.stage)
            )
        )
    if intent is not None:
        lines.append(_("Intent: {intent}").format(intent=intent_label(intent)))
    if attached:
        if text.strip():
            lines += ["", html.escape(text)]
        return "\n".join(lines)
    body = text
    if kind != MessageKind.TEXT.value:
        body = f"{media_label(kind)} {body}".strip()
    lines.append("")
    lines.append(html.escape(body) or _("(empty message)"))
    return "\n".join(lines)


def telegram_length(text: str) -> int:
    """Telegram's length of a text: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class Attachment:
    """A lead's stored media, ready for the Bot API."""

    send_as: str  # photo, document, voice, audio or video
    data: bytes
    filename: str


def attachment_of(kind: str, media: dict[str, Any] | None, data: bytes | None) -> Attachment | None:
    """How a lead message's media goes to Telegram; None when only a label can."""
    try:
        send_as = SEND_AS.get(MessageKind(kind))
    except ValueError:
        return None
    if send_as is None or not data or len(data) > UPLOAD_LIMIT:
        return None
    if send_as == "photo" and len(data) > PHOTO_LIMIT:
        send_as = "document"
    filename = str((media or {}).get("filename") or "") or DEFAULT_NAMES[send_as]
    return Attachment(send_as=send_as, data=data, filename=filename)


def file_id_of(sent: TelegramMessage, send_as: str) -> str | None:
    """The Telegram file id of the media in a sent message."""
    if send_as == "photo":
        return sent.photo[-1].file_id if sent.photo else None
    media = getattr(sent, send_as, None)
    file_id = getattr(media, "file_id", None)
    return file_id if isinstance(file_id, str) else None
