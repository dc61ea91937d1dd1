"""The lead's side, played through the control API: messages and marketing opt-outs."""

from __future__ import annotations

from typing import Any

from sandbox.whatsapp.records import EmulatedConnection, StoredMedia
from sandbox.whatsapp.webhooks import WebhookPushes
from sandbox.whatsapp.wire import (
    MEDIA_TYPES,
    USER_ID_RE,
    digits,
    lead_id,
    new_numeric_id,
    new_wamid,
)

_DEFAULT_MIME = {
    "image": "image/jpeg",
    "document": "application/pdf",
    "audio": "audio/mpeg",
    "voice": "audio/ogg; codecs=opus",
    "video": "video/mp4",
    "sticker": "image/webp",
}


class LeadActions(WebhookPushes):
    """What a lead does, pushed to the business's webhook."""

    async def inbound(
        self,
        connection_id: str,
        from_: str,
        text: str = "",
        *,
        name: str = "",
        kind: str = "text",
        media: bytes | None = None,
        mime_type: str | None = None,
        filename: str | None = None,
        reply_to: str | None = None,
        button_payload: str | None = None,
        latitude: float | None = None,
        longitude: float | None = None,
        emoji: str | None = None,
        message_id: str | None = None,
    ) -> str:
        """The lead ``from_`` sends a message; its webhook is pushed; returns its wamid.

        ``from_`` is a phone number, or a business-scoped user id (``US.1349...``) for a lead
        who shows only a username: then the push names them by ``from_user_id`` alone.
        """
        connection = self._connection(connection_id)
        wa_id = lead_id(str(from_))
        now = self.clock()
        wamid = new_wamid()
        by_user_id = bool(USER_ID_RE.match(wa_id))
        message: dict[str, Any] = {
            "from_user_id" if by_user_id else "from": wa_id,
            "id": wamid,
            "timestamp": str(int(now.timestamp())),
        }
        if reply_to:
            message["context"] = {"from": connection.display_phone_number, "id": reply_to}
        message.update(
            self._inbound_content(
                connection,
                kind,
                text=text,
                media=media,
                mime_type=mime_type,
                filename=filename,
                button_payload=button_payload,
                latitude=latitude,
                longitude=longitude,
                emoji=emoji,
                message_id=message_id,
            )
        )
        self._last_inbound[(connection.phone_id, wa_id)] = now
        self._changed()
        value = self._value(connection)
        if by_user_id:
            profile = {"name": name or wa_id, "username": f"@{wa_id.split('.')[-1][-8:]}"}
            value["contacts"] = [{"profile": profile, "user_id": wa_id}]
        else:
            value["contacts"] = [{"profile": {"name": name or wa_id}, "wa_id": wa_id}]
        value["messages"] = [message]
        self._enqueue(connection, self._envelope(connection, value, "messages"))
        return wamid

    async def marketing_preference(
        self, connection_id: str, wa_id: str, *, stop: bool, name: str = ""
    ) -> None:
        """The lead stops (or resumes) marketing messages: a ``user_preferences`` push."""
        connection = self._connection(connection_id)
        wa_id = digits(wa_id)
        verb = "stop" if stop else "resume"
        value = self._value(connection)
        value["contacts"] = [{"profile": {"name": name or wa_id}, "wa_id": wa_id}]
        value["user_preferences"] = [
            {
                "wa_id": wa_id,
                "detail": f"User requested to {verb} marketing messages",
                "category": "marketing_messages",
                "value": verb,
                "timestamp": int(self.clock().timestamp()),
            }
        ]
        self._enqueue(connection, self._envelope(connection, value, "user_preferences"))

    def _inbound_content(
        self,
        connection: EmulatedConnection,
        kind: str,
        *,
        text: str,
        media: bytes | None,
        mime_type: str | None,
        filename: str | None,
        button_payload: str | None,
        latitude: float | None,
        longitude: float | None,
        emoji: str | None,
        message_id: str | None,
    ) -> dict[str, Any]:
        if kind == "text":
            return {"type": "text", "text": {"body": text}}
        if kind in (*MEDIA_TYPES, "voice"):
            if media is None:
                raise ValueError(f"a {kind} message needs media bytes")
            wire = "audio" if kind == "voice" else kind
            stored = StoredMedia(
                id=new_numeric_id(),
                phone_id=connection.phone_id,
                data=media,
                mime_type=mime_type or _DEFAULT_MIME[kind],
                filename=filename,
            )
            self._media[stored.id] = stored
            content: dict[str, Any] = {
                "mime_type": stored.mime_type,
                "sha256": stored.sha256_b64,
                "id": stored.id,
            }
            if text and wire in ("image", "video", "document"):
                content["caption"] = text
            if wire == "document":
                content["filename"] = filename or "file"
            if wire == "audio":
                content["voice"] = kind == "voice"
            if wire == "sticker":
                content["animated"] = False
            return {"type": wire, wire: content}
        if kind == "location":
            if latitude is None or longitude is None:
                raise ValueError("a location needs latitude and longitude")
            location: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
            if text:
                location["name"] = text
            return {"type": "location", "location": location}
        if kind == "button":
            return {"type": "button", "button": {"payload": button_payload or text, "text": text}}
        if kind in ("interactive", "button_reply", "list_reply"):
            sub = "list_reply" if kind == "list_reply" else "button_reply"
            reply = {"id": button_payload or text, "title": text}
            return {"type": "interactive", "interactive": {"type": sub, sub: reply}}
        if kind == "reaction":
            if not message_id:
                raise ValueError("a reaction needs the message_id it reacts to")
            return {
                "type": "reaction",
                "reaction": {"message_id": message_id, "emoji": emoji or ""},
            }
        raise ValueError(f"unsupported inbound type {kind!r}")
