"""A lead's Telegram message with a part aiogram's strict models reject is kept, minus that part.

Seen in real updates: an empty ``thumbnail`` object, a poll without a field newer Bot API
versions add. The message is stored with what parses, and its payload says what did not.
"""

from __future__ import annotations

import json
from typing import Any

from channels.telegram import TelegramAdapter
from crm.messaging import InboundMessage, MessageKind
from tests.support.telegram import LEAD, telegram_connection

ADAPTER = TelegramAdapter()
CONNECTION = telegram_connection(None)
LEAD_USER = {"id": LEAD, "is_bot": False, "first_name": "Anna"}
PRIVATE = {"id": LEAD, "type": "private", "first_name": "Anna"}


def only_message(update: dict[str, Any]) -> InboundMessage:
    """The one lead message a webhook body carries."""
    (item,) = ADAPTER.parse(CONNECTION, json.dumps(update).encode())
    assert isinstance(item, InboundMessage)
    return item


def message(**extra: Any) -> dict[str, Any]:
    """A private message from the lead."""
    return {"message_id": 5, "date": 1_700_000_000, "chat": PRIVATE, "from": LEAD_USER, **extra}


def test_a_document_with_an_empty_thumbnail_keeps_the_file_and_the_caption() -> None:
    document = {"file_id": "DOC", "file_unique_id": "U", "file_name": "offer.pdf", "thumbnail": {}}
    stored = only_message(
        {"update_id": 1, "message": message(caption="our offer", document=document)}
    )
    assert (stored.kind, stored.text) == (MessageKind.DOCUMENT, "our offer")
    assert stored.media is not None and stored.media.provider_media_id == "DOC"
    assert stored.media.filename == "offer.pdf"
    assert stored.payload["unparsed"] == ["document.thumbnail"]
    assert stored.payload["unparsed_raw"] == {"document.thumbnail": {}}


def test_a_poll_without_a_newer_field_is_kept_and_said_so() -> None:
    poll = {  # no total_voter_count / voter_count: the shape of another Bot API version
        "id": "p1",
        "question": "Which plan?",
        "options": [{"text": "Basic"}, {"text": "Pro"}],
        "is_closed": False,
        "is_anonymous": True,
        "type": "regular",
    }
    stored = only_message({"update_id": 2, "message": message(poll=poll)})
    assert stored.external_id == f"{LEAD}:5"
    assert stored.payload["unparsed"] == ["poll"]
    assert stored.payload["unparsed_raw"]["poll"]["question"] == "Which plan?"


def test_a_button_press_on_a_message_with_an_odd_part_is_kept() -> None:
    shown = {
        "message_id": 9,
        "date": 1_700_000_000,
        "chat": PRIVATE,
        "document": {"file_id": "F", "file_unique_id": "U", "thumbnail": {}},
    }
    query = {
        "id": "q1",
        "from": LEAD_USER,
        "chat_instance": "c",
        "data": "yes",
        "message": shown,
    }
    stored = only_message({"update_id": 3, "callback_query": query})
    assert (stored.kind, stored.text, stored.payload["button_id"]) == (
        MessageKind.BUTTON,
        "yes",
        "yes",
    )
    assert stored.reply_to_external_id == f"{LEAD}:9"
    assert stored.payload["unparsed"] == ["message.document.thumbnail"]
