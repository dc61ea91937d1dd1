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
- INTERACTIVE flow replies (``nfm_reply``): the reply as Meta sent it, its ``response_json``
  string decoded to ``response`` when it is JSON
- UNSUPPORTED: ``type`` (Meta's type, e.g. ``order``), ``errors`` (codes), and the raw content
- any kind: ``forwarded``, ``frequently_forwarded``, ``referral`` (click-to-WhatsApp ad),
  ``errors`` (codes Meta attached to the message or to its whole webhook value),
  ``error_details`` (Meta's texts for them)

Identity (WhatsApp's business-scoped user ids, 2026): a message names its sender by ``from``
(the phone, wa_id) and/or ``from_user_id``; the ``contacts`` entry carries ``wa_id``,
``user_id``, ``parent_user_id`` and ``profile.username``. ``sender_id`` is the wa_id when there
is one, else the user id, and the user ids travel beside it. A status names the lead by
``recipient_id`` and/or ``recipient_user_id``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Lead:
    """Who a ``contacts`` entry says the lead is."""

    wa_id: str | None
    user_id: str | None
    parent_user_id: str | None
    username: str | None
    name: str | None


def _text_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def _leads(value: dict[str, Any]) -> list[_Lead]:
    leads = []
    for raw in map(_dict, _list(value.get("contacts"))):
        profile = _dict(raw.get("profile"))
        username = _text_or_none(profile.get("username"))
        leads.append(
            _Lead(
                wa_id=_text_or_none(raw.get("wa_id")),
                user_id=_text_or_none(raw.get("user_id")),
                parent_user_id=_text_or_none(raw.get("parent_user_id")),
                username=username.lstrip("@") or None if username else None,
                name=_text_or_none(profile.get("name")),
            )
        )
    return leads


def _lead_of(leads: list[_Lead], wa_id: str | None, user_id: str | None) -> _Lead | None:
    for lead in leads:
        if (wa_id and lead.wa_id == wa_id) or (user_id and lead.user_id == user_id):
            return lead
    # One contact and a sender it does not name: Meta lists the sender, whoever that is.
    return leads[0] if len(leads) == 1 and not (wa_id and user_id) else None


def _errors(raw: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in map(_dict, _list(raw.get("errors"))) if e]


def _error_text(error: dict[str, Any]) -> str | None:
    """Meta's title and, when it adds something, ``error_data.details``."""
    title = _text_or_none(error.get("title")) or _text_or_none(error.get("message"))
    details = _text_or_none(_dict(error.get("error_data")).get("details"))
    if details and details != title:
        return f"{title}: {details}" if title else details
    return title


def _code(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _messages_change(value: dict[str, Any]) -> Iterator[InboundUpdate]:
    leads = _leads(value)
    # Errors on the whole value (e.g. "Unsupported webhook payload") belong to its messages.
    value_errors = _errors(value)
    for raw in map(_dict, _list(value.get("messages"))):
        try:
            update = _message(raw, leads, value_errors)
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            logger.warning(
                "skipping a malformed whatsapp message (type %r): %r", raw.get("type"), error
            )
            continue
        if update is not None:
            yield update
    for raw in map(_dict, _list(value.get("statuses"))):
        try:
            status = _status(raw, value_errors)
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            logger.warning("skipping a malformed whatsapp status: %r", error)
            continue
        if status is not None:
            yield status


def _status(raw: dict[str, Any], value_errors: list[dict[str, Any]]) -> InboundStatus | None:
    status = _STATUSES.get(str(raw.get("status", "")).lower())
    if status is None:
        return None  # e.g. call statuses, "deleted", "warning"
    errors = _errors(raw) or value_errors
    error = errors[0] if errors else {}
    return InboundStatus(
        external_id=str(raw["id"]),
        status=status,
        at=_at(raw["timestamp"]),
        recipient_id=_text_or_none(raw.get("recipient_id")),
        error_code=_code(error.get("code")),
        error_title=_error_text(error) if error else None,
        recipient_user_id=_text_or_none(raw.get("recipient_user_id")),
        tracker=_text_or_none(raw.get("biz_opaque_callback_data")),
    )


def _message(
    raw: dict[str, Any], leads: list[_Lead], value_errors: list[dict[str, Any]]
) -> InboundUpdate | None:
    kind = raw.get("type")
    phone_id = _text_or_none(raw.get("from"))
    lead = _lead_of(leads, phone_id, _text_or_none(raw.get("from_user_id")))
    wa_id = phone_id or (lead.wa_id if lead else None)
    user_id = _text_or_none(raw.get("from_user_id")) or (lead.user_id if lead else None)
    sender = wa_id or user_id
    if sender is None:
        raise KeyError("from")  # neither a phone nor a user id: nobody to file it under
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
        fields = {"kind": MessageKind.TEXT, "text": _str(_dict(raw.get("text")).get("body"))}
    elif kind in _MEDIA:
        content = _dict(raw.get(kind))
        message_kind = _MEDIA[kind]
        if kind == "audio" and content.get("voice"):
            message_kind = MessageKind.VOICE
        if kind == "sticker":
            payload["animated"] = bool(content.get("animated"))
        media = MediaRef(
            provider_media_id=str(content["id"]) if content.get("id") else None,
            mime_type=_text_or_none(content.get("mime_type")),
            filename=_text_or_none(content.get("filename")),
            sha256=_text_or_none(content.get("sha256")),
            url=_text_or_none(content.get("url")),
        )
        fields = {"kind": message_kind, "text": _str(content.get("caption")), "media": media}
    elif kind == "location":
        location = _dict(raw.get("location"))
        keys = ("latitude", "longitude", "name", "address", "url")
        payload.update({k: location[k] for k in keys if k in location})
        fields = {"kind": MessageKind.LOCATION, "text": _str(location.get("name"))}
    elif kind == "contacts":
        contacts = _list(raw.get("contacts"))
        payload["contacts"] = contacts
        shown = [_dict(_dict(c).get("name")).get("formatted_name") for c in contacts]
        fields = {"kind": MessageKind.CONTACTS, "text": ", ".join(str(n) for n in shown if n)}
    elif kind == "button":
        button = _dict(raw.get("button"))
        payload.update({"button_id": button.get("payload"), "source": "quick_reply"})
        fields = {"kind": MessageKind.BUTTON, "text": _str(button.get("text"))}
    elif kind == "interactive" and raw.get("interactive"):
        fields = _interactive(_dict(raw.get("interactive")), payload)
    elif kind == "reaction":
        reaction = _dict(raw.get("reaction"))
        emoji = _str(reaction.get("emoji"))
        payload.update({"emoji": emoji, "removed": not emoji})
        reply_to = reaction.get("message_id")
        fields = {"kind": MessageKind.REACTION, "text": emoji}
    else:
        # "unsupported", "order", an interactive Meta could not read, or a type newer than us.
        payload["type"] = _dict(raw.get("unsupported")).get("type") or kind
        payload["errors"] = []
        if kind in raw and kind not in ("unsupported", "interactive"):
            payload[str(kind)] = raw[kind]
        fields["text"] = _str(_dict(raw.get(kind)).get("text")) if kind in raw else ""
    errors = _errors(raw) or value_errors
    if errors or "errors" in payload:
        payload["errors"] = [_code(e.get("code")) for e in errors]
        details = [text for text in map(_error_text, errors) if text]
        if details:
            payload["error_details"] = details

    return InboundMessage(
        external_id=str(raw["id"]),
        sender_id=sender,
        sent_at=at,
        sender_name=lead.name if lead else None,
        phone=f"+{wa_id}" if wa_id and wa_id.isdigit() else None,
        payload=payload,
        reply_to_external_id=str(reply_to) if reply_to else None,
        whatsapp_user_id=user_id,
        whatsapp_parent_user_id=lead.parent_user_id if lead else None,
        whatsapp_username=lead.username if lead else None,
        **fields,
    )


def _str(value: Any) -> str:
    """A text field as text; a missing or non-text value is empty."""
    return "" if value is None or isinstance(value, dict | list) else str(value)


def _interactive(interactive: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    sub = str(interactive.get("type", ""))
    reply = _dict(interactive.get(sub))
    if sub == "button_reply":
        payload.update({"button_id": reply.get("id"), "source": "reply_button"})
        return {"kind": MessageKind.BUTTON, "text": _str(reply.get("title"))}
    if sub == "list_reply":
        payload.update({"button_id": reply.get("id"), "source": "list"})
        if reply.get("description"):
            payload["description"] = reply["description"]
        return {"kind": MessageKind.INTERACTIVE, "text": _str(reply.get("title"))}
    # Flow completions (nfm_reply), call permission replies and the like: kept whole.
    payload.update({"source": sub, sub: reply})
    if sub == "nfm_reply" and isinstance(reply.get("response_json"), str):
        with contextlib.suppress(ValueError):  # not JSON: kept as the string Meta sent
            payload["response"] = json.loads(reply["response_json"])
    return {"kind": MessageKind.INTERACTIVE, "text": _str(reply.get("body"))}


def _preferences(value: dict[str, Any]) -> Iterator[InboundPreference]:
    for raw in map(_dict, _list(value.get("user_preferences"))):
        opted_out = _PREFERENCES.get(str(raw.get("value", "")).lower())
        if raw.get("category") != "marketing_messages" or opted_out is None:
            continue
        user_id = _text_or_none(raw.get("user_id"))
        try:
            yield InboundPreference(
                sender_id=_text_or_none(raw.get("wa_id")) or str(raw["user_id"]),
                opted_out=opted_out,
                at=_at(raw["timestamp"]),
                user_id=user_id,
            )
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            logger.warning("skipping a malformed whatsapp user preference: %r", error)
