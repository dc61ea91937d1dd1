"""WhatsApp's username era (business-scoped user ids) and other shapes the fixtures lack.

Payloads written after Meta's description of the 2026 identity change: a lead who turned on a
username has no phone in the webhook, only ``from_user_id`` / ``user_id`` / ``parent_user_id`` /
``profile.username``; statuses name them by ``recipient_user_id``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from channels.whatsapp import parse_webhook
from crm.messaging import (
    DeliveryStatus,
    InboundEdit,
    InboundMessage,
    InboundPreference,
    InboundStatus,
    MessageKind,
)

USER_ID = "US.13491208655302741918"
PARENT_ID = "US.ENT.11815799212886844830"
AT = 1767225600  # 2026-01-01 00:00 UTC


def body(*changes: dict[str, Any]) -> bytes:
    """A webhook body with one entry holding ``changes``."""
    return json.dumps(
        {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": list(changes)}]}
    ).encode()


def messages_change(**value: Any) -> dict[str, Any]:
    """A ``messages`` change whose value holds ``value``."""
    base = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "123"},
    }
    return {"field": "messages", "value": base | value}


USERNAME_CONTACT = {
    "profile": {"name": "Sheena Nelson", "username": "@sheena"},
    "user_id": USER_ID,
    "parent_user_id": PARENT_ID,
}


def test_a_message_with_only_a_user_id_is_kept_under_that_id() -> None:
    change = messages_change(
        contacts=[USERNAME_CONTACT],
        messages=[
            {
                "from_user_id": USER_ID,
                "id": "wamid.u1",
                "timestamp": AT,  # an integer, as real payloads sometimes have
                "type": "text",
                "text": {"body": "Hi, I saw your ad"},
            }
        ],
    )
    assert parse_webhook(body(change)) == [
        InboundMessage(
            external_id="wamid.u1",
            sender_id=USER_ID,
            sent_at=dt.datetime.fromtimestamp(AT, tz=dt.UTC),
            kind=MessageKind.TEXT,
            text="Hi, I saw your ad",
            sender_name="Sheena Nelson",
            phone=None,
            whatsapp_user_id=USER_ID,
            whatsapp_parent_user_id=PARENT_ID,
            whatsapp_username="sheena",
        )
    ]


def test_a_message_with_phone_and_user_id_keeps_both() -> None:
    contact = USERNAME_CONTACT | {"wa_id": "4915112345678"}
    change = messages_change(
        contacts=[contact],
        messages=[
            {
                "from": "4915112345678",
                "from_user_id": USER_ID,
                "id": "wamid.u2",
                "timestamp": str(AT),
                "type": "text",
                "text": {"body": "again"},
            }
        ],
    )
    [message] = parse_webhook(body(change))
    assert isinstance(message, InboundMessage)
    assert (message.sender_id, message.phone) == ("4915112345678", "+4915112345678")
    assert (message.whatsapp_user_id, message.whatsapp_username) == (USER_ID, "sheena")


def test_a_status_with_only_a_recipient_user_id_and_a_tracker() -> None:
    change = messages_change(
        statuses=[
            {
                "id": "wamid.out",
                "status": "delivered",
                "timestamp": AT,
                "recipient_user_id": USER_ID,
                "biz_opaque_callback_data": "crm:42",
            }
        ]
    )
    assert parse_webhook(body(change)) == [
        InboundStatus(
            external_id="wamid.out",
            status=DeliveryStatus.DELIVERED,
            at=dt.datetime.fromtimestamp(AT, tz=dt.UTC),
            recipient_user_id=USER_ID,
            tracker="crm:42",
        )
    ]


def test_status_errors_on_the_value_and_with_details_only() -> None:
    change = messages_change(
        statuses=[{"id": "wamid.f", "status": "failed", "timestamp": AT}],
        errors=[{"code": "131049", "error_data": {"details": "Healthy ecosystem engagement"}}],
    )
    [status] = parse_webhook(body(change))
    assert isinstance(status, InboundStatus)
    assert (status.error_code, status.error_title) == (131049, "Healthy ecosystem engagement")


def test_several_changes_in_one_entry_are_all_read() -> None:
    message = messages_change(
        contacts=[USERNAME_CONTACT],
        messages=[
            {
                "from_user_id": USER_ID,
                "id": "wamid.m",
                "timestamp": AT,
                "type": "reaction",
                "reaction": {"message_id": "wamid.out"},  # a removed reaction: no emoji at all
            }
        ],
    )
    status = messages_change(
        statuses=[{"id": "wamid.out", "status": "read", "timestamp": AT, "recipient_id": "1"}]
    )
    other = {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}}
    preference = {
        "field": "user_preferences",
        "value": {
            "contacts": [USERNAME_CONTACT],
            "user_preferences": [
                {
                    "user_id": USER_ID,
                    "category": "marketing_messages",
                    "value": "stop",
                    "timestamp": AT,
                }
            ],
        },
    }
    updates = parse_webhook(body(message, other, status, preference))
    assert [type(u) for u in updates] == [InboundMessage, InboundStatus, InboundPreference]
    reaction = updates[0]
    assert isinstance(reaction, InboundMessage) and reaction.kind is MessageKind.REACTION
    assert reaction.payload == {"emoji": "", "removed": True}
    assert updates[2] == InboundPreference(
        sender_id=USER_ID,
        opted_out=True,
        at=dt.datetime.fromtimestamp(AT, tz=dt.UTC),
        user_id=USER_ID,
    )


def test_edits_and_deletions_by_a_user_id_only_lead() -> None:
    change = messages_change(
        contacts=[USERNAME_CONTACT],
        messages=[
            {
                "from_user_id": USER_ID,
                "id": "wamid.e",
                "timestamp": AT,
                "type": "revoke",
                "revoke": {"original_message_id": "wamid.u1"},
            }
        ],
    )
    [deleted] = parse_webhook(body(change))
    assert isinstance(deleted, InboundEdit) and deleted.deleted
    assert deleted.sender_id == USER_ID


def test_odd_field_types_keep_the_message() -> None:
    # Fields the parser did not expect in that shape: the message is stored with what is read.
    change = messages_change(
        contacts={"not": "a list"},
        messages=[
            {
                "from": 4915112345678,  # a number, not a string
                "id": "wamid.odd",
                "timestamp": AT,
                "type": "text",
                "text": {"body": {"unexpected": "object"}},
                "context": None,
                "errors": "nope",
            },
            {
                "from_user_id": USER_ID,
                "id": "wamid.flow",
                "timestamp": AT,
                "type": "interactive",
                "interactive": {
                    "type": "nfm_reply",
                    "nfm_reply": {"response_json": "{not json", "body": None},
                },
            },
        ],
    )
    odd, flow = parse_webhook(body(change))
    assert isinstance(odd, InboundMessage) and odd.external_id == "wamid.odd"
    assert (odd.sender_id, odd.phone, odd.text) == ("4915112345678", "+4915112345678", "")
    assert isinstance(flow, InboundMessage) and flow.kind is MessageKind.INTERACTIVE
    assert flow.text == "" and "response" not in flow.payload
    assert flow.payload["nfm_reply"]["response_json"] == "{not json"
