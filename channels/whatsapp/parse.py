"""WhatsApp Cloud API webhook bodies -> crm.messaging records.

The Meta JSON is read directly rather than through pywa's update classes: those need a client,
and pywa's update filter drops updates whose entry id differs from the client's WABA id (the
real payloads mix entry ids). Anything unknown is skipped, never raised.

``InboundMessage.payload`` keys, by kind:

- BUTTON / INTERACTIVE: ``button_id``, ``source`` (``quick_reply`` for a template button,
  ``reply_button``, ``list``, or the interactive type, e.g. ``nfm_reply``), ``description``
- LOCATION: ``latitude``, ``longitude`` and, for a chosen place, ``name``, ``address``, ``url``
- CONTACTS: ``contacts`` (Meta's list as is)
- REACTION: ``emoji``, ``removed`` (True when the lead took the reaction back)
- STICKER: ``animated``
- UNSUPPORTED: ``type`` (Meta's type, e.g. ``order``), ``errors`` (codes), and the raw content
- any kind: ``forwarded``, ``frequently_forwarded``, ``referral`` (click-to-WhatsApp ad)
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from typing import Any

from crm.messaging import (
    DeliveryStatus,
    InboundEdit,
    InboundMessage,
    InboundPreference,
    InboundStatus,
    InboundUpdate,
    MediaRef,
    MessageKind,
)

logger = logging.getLogger(__name__)

_STATUSES = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    # A voice message was played: it was read, and "read" is the last stage there is.
    "played": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
}
_MEDIA = {
    "image": MessageKind.IMAGE,
    "document": MessageKind.DOCUMENT,
    "audio": MessageKind.AUDIO,
    "video": MessageKind.VIDEO,
    "sticker": MessageKind.STICKER,
}
_PREFERENCES = {"stop": True, "resume": False, "signup": False}


def _at(timestamp: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(timestamp), tz=dt.UTC)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def parse_webhook(body: bytes) -> list[InboundUpdate]:
    """Every message, status and marketing preference in a webhook body, in order."""
    try:
        data = json.loads(body)
    except ValueError:
        logger.warning("whatsapp webhook body is not JSON (%d bytes)", len(body))
        return []
    updates: list[InboundUpdate] = []
    for entry in _list(_dict(data).get("entry")):
        for change in _list(_dict(entry).get("changes")):
            change = _dict(change)
            value = _dict(change.get("value"))
            field = change.get("field")
            if field == "messages":
                updates.extend(_messages_change(value))
            elif field == "user_preferences":
                updates.extend(_preferences(value))
            # account_update, template updates, calls, echoes...: not the inbox's business.
    return updates


def _messages_change(value: dict[str, Any]) -> Iterator[InboundUpdate]:
    names = {
        str(c.get("wa_id")): _dict(c.get("profile")).get("name")
        for c in map(_dict, _list(value.get("contacts")))
    }
    for raw in map(_dict, _list(value.get("messages"))):
        try:
            update = _message(raw, names)
        except (KeyError, TypeError, ValueError) as error:
            logger.warning(
                "skipping a malformed whatsapp message (type %r): %r", raw.get("type"), error
            )
            continue
        if update is not None:
            yield update
    for raw in map(_dict, _list(value.get("statuses"))):
        try:
            status = _status(raw)
        except (KeyError, TypeError, ValueError) as error:
            logger.warning("skipping a malformed whatsapp status: %r", error)
            continue
        if status is not None:
            yield status


def _status(raw: dict[str, Any]) -> InboundStatus | None:
    status = _STATUSES.get(str(raw.get("status", "")).lower())
    if status is None:
        return None  # e.g. call statuses, "deleted", "warning"
    error = _dict(_list(raw.get("errors"))[0]) if _list(raw.get("errors")) else {}
    code = error.get("code")
    return InboundStatus(
        external_id=str(raw["id"]),
        status=status,
        at=_at(raw["timestamp"]),
        recipient_id=str(raw["recipient_id"]) if raw.get("recipient_id") else None,
        error_code=int(code) if code is not None else None,
        error_title=error.get("title") or error.get("message"),
    )


def _message(raw: dict[str, Any], names: dict[str, str | None]) -> InboundUpdate | None:
    kind = raw.get("type")
    sender = str(raw["from"])
    at = _at(raw["timestamp"])
    if kind == "system":
        return None  # number or identity changes: nothing for the inbox
    if kind == "revoke":
        original = _dict(raw.get("revoke")).get("original_message_id")
        return InboundEdit(external_id=str(original), sender_id=sender, at=at, deleted=True)
    if kind == "edit":
        edit = _dict(raw.get("edit"))
        new = _dict(edit.get("message"))
        content = _dict(new.get(new.get("type", "")))
        text = content.get("body") or content.get("caption") or ""
        return InboundEdit(
            external_id=str(edit["original_message_id"]), sender_id=sender, at=at, text=text
        )

    context = _dict(raw.get("context"))
    payload: dict[str, Any] = {}
    for flag in ("forwarded", "frequently_forwarded"):
        if context.get(flag):
            payload[flag] = True
    if raw.get("referral"):
        payload["referral"] = raw["referral"]
    fields: dict[str, Any] = {"kind": MessageKind.UNSUPPORTED, "text": ""}
    reply_to = context.get("id")

    if kind == "text":
        fields = {"kind": MessageKind.TEXT, "text": _dict(raw.get("text")).get("body", "")}
    elif kind in _MEDIA:
        content = _dict(raw.get(kind))
        message_kind = _MEDIA[kind]
        if kind == "audio" and content.get("voice"):
            message_kind = MessageKind.VOICE
        if kind == "sticker":
            payload["animated"] = bool(content.get("animated"))
        media = MediaRef(
            provider_media_id=str(content["id"]) if content.get("id") else None,
            mime_type=content.get("mime_type"),
            filename=content.get("filename"),
            sha256=content.get("sha256"),
            url=content.get("url"),
        )
        fields = {"kind": message_kind, "text": content.get("caption", ""), "media": media}
    elif kind == "location":
        location = _dict(raw.get("location"))
        keys = ("latitude", "longitude", "name", "address", "url")
        payload.update({k: location[k] for k in keys if k in location})
        fields = {"kind": MessageKind.LOCATION, "text": location.get("name", "")}
    elif kind == "contacts":
        contacts = _list(raw.get("contacts"))
        payload["contacts"] = contacts
        shown = [_dict(_dict(c).get("name")).get("formatted_name") for c in contacts]
        fields = {"kind": MessageKind.CONTACTS, "text": ", ".join(n for n in shown if n)}
    elif kind == "button":
        button = _dict(raw.get("button"))
        payload.update({"button_id": button.get("payload"), "source": "quick_reply"})
        fields = {"kind": MessageKind.BUTTON, "text": button.get("text", "")}
    elif kind == "interactive" and raw.get("interactive"):
        fields = _interactive(_dict(raw.get("interactive")), payload)
    elif kind == "reaction":
        reaction = _dict(raw.get("reaction"))
        emoji = reaction.get("emoji") or ""
        payload.update({"emoji": emoji, "removed": not emoji})
        reply_to = reaction.get("message_id")
        fields = {"kind": MessageKind.REACTION, "text": emoji}
    else:
        # "unsupported", "order", an interactive Meta could not read, or a type newer than us.
        payload["type"] = _dict(raw.get("unsupported")).get("type") or kind
        payload["errors"] = [_dict(e).get("code") for e in _list(raw.get("errors"))]
        if kind in raw and kind not in ("unsupported", "interactive"):
            payload[str(kind)] = raw[kind]
        fields["text"] = str(_dict(raw.get(kind)).get("text", "")) if kind in raw else ""

    return InboundMessage(
        external_id=str(raw["id"]),
        sender_id=sender,
        sent_at=at,
        sender_name=names.get(sender),
        phone=f"+{sender}" if sender.isdigit() else None,
        payload=payload,
        reply_to_external_id=str(reply_to) if reply_to else None,
        **fields,
    )


def _interactive(interactive: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    sub = str(interactive.get("type", ""))
    reply = _dict(interactive.get(sub))
    if sub == "button_reply":
        payload.update({"button_id": reply.get("id"), "source": "reply_button"})
        return {"kind": MessageKind.BUTTON, "text": reply.get("title", "")}
    if sub == "list_reply":
        payload.update({"button_id": reply.get("id"), "source": "list"})
        if reply.get("description"):
            payload["description"] = reply["description"]
        return {"kind": MessageKind.INTERACTIVE, "text": reply.get("title", "")}
    # Flow completions (nfm_reply), call permission replies and the like: kept whole.
    payload.update({"source": sub, sub: reply})
    return {"kind": MessageKind.INTERACTIVE, "text": str(reply.get("body", ""))}


def _preferences(value: dict[str, Any]) -> Iterator[InboundPreference]:
    for raw in map(_dict, _list(value.get("user_preferences"))):
        opted_out = _PREFERENCES.get(str(raw.get("value", "")).lower())
        if raw.get("category") != "marketing_messages" or opted_out is None:
            continue
        try:
            yield InboundPreference(
                sender_id=str(raw["wa_id"]), opted_out=opted_out, at=_at(raw["timestamp"])
            )
        except (KeyError, TypeError, ValueError) as error:
            logger.warning("skipping a malformed whatsapp user preference: %r", error)
