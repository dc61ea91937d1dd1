"""Updates to inbox records: real updates built by the emulator, plus hand-made edge cases."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest

from channels.telegram import TelegramAdapter
from channels.telegram.parse import phone_e164, split_external_id
from crm.messaging import (
    BusinessConnectionUpdate,
    InboundEdit,
    InboundMessage,
    InboundUpdate,
    MessageKind,
)
from sandbox.telegram import TelegramEmulator
from tests.support.telegram import LEAD, REP, TOKEN, telegram_connection

CONN = "7"
ADAPTER = TelegramAdapter()
CONNECTION = telegram_connection(None)


def parse(update: dict[str, Any]) -> list[InboundUpdate]:
    return ADAPTER.parse(CONNECTION, json.dumps(update).encode())


def only(update: dict[str, Any]) -> InboundUpdate:
    (item,) = parse(update)
    return item


@pytest.fixture
def emulator() -> TelegramEmulator:
    emulator = TelegramEmulator()
    emulator.register_bot(CONN, TOKEN)
    return emulator


async def said(emulator: TelegramEmulator, **payload: Any) -> dict[str, Any]:
    """Post a user update through the emulator and return the Update it built."""
    await emulator.post_update({"connection_id": CONN, "from_user_id": LEAD, **payload})
    return emulator.updates(CONN)[-1]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_text_message(emulator: TelegramEmulator) -> None:
    update = await said(
        emulator,
        text="Hello there",
        first_name="Anna",
        last_name="Klein",
        username="Anna_K",
        language_code="de",
    )
    message = only(update)
    assert isinstance(message, InboundMessage)
    assert message.kind is MessageKind.TEXT and message.text == "Hello there"
    assert message.external_id == f"{LEAD}:{update['message']['message_id']}"
    assert message.sender_id == str(LEAD) and message.sender_name == "Anna Klein"
    assert message.telegram_username == "anna_k" and message.language_code == "de"
    assert message.sent_at.tzinfo is not None
    assert abs(message.sent_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert ADAPTER.update_id_of(json.dumps(update).encode()) == update["update_id"]


async def test_reply_and_media_kinds(emulator: TelegramEmulator) -> None:
    first = await said(emulator, text="first")
    reply = only(
        await said(emulator, text="second", reply_to_message_id=first["message"]["message_id"])
    )
    assert isinstance(reply, InboundMessage)
    assert reply.reply_to_external_id == f"{LEAD}:{first['message']['message_id']}"

    photo = only(await said(emulator, text="my shop", photo_base64=b64(b"jpeg")))
    assert isinstance(photo, InboundMessage) and photo.media is not None
    assert (photo.kind, photo.text, photo.media.mime_type) == (
        MessageKind.IMAGE,
        "my shop",
        "image/jpeg",
    )
    update = emulator.updates(CONN)[-1]
    largest = update["message"]["photo"][-1]["file_id"]
    assert photo.media.provider_media_id == largest

    doc = only(await said(emulator, document_base64=b64(b"%PDF"), filename="offer.pdf", text="see"))
    assert isinstance(doc, InboundMessage) and doc.media is not None
    assert (doc.kind, doc.media.filename, doc.media.mime_type) == (
        MessageKind.DOCUMENT,
        "offer.pdf",
        "application/pdf",
    )

    expected = {
        "voice": (MessageKind.VOICE, "audio/ogg"),
        "audio": (MessageKind.AUDIO, "audio/mpeg"),
        "video": (MessageKind.VIDEO, "video/mp4"),
        "sticker": (MessageKind.STICKER, "image/webp"),
    }
    names = {"voice": "v.ogg", "audio": "a.mp3", "video": "v.mp4", "sticker": None}
    for kind, (message_kind, mime) in expected.items():
        payload: dict[str, Any] = {f"{kind}_base64": b64(b"bytes")}
        if names[kind]:
            payload["filename"] = names[kind]
        item = only(await said(emulator, **payload))
        assert isinstance(item, InboundMessage) and item.media is not None, kind
        assert (item.kind, item.media.mime_type) == (message_kind, mime), kind


async def test_contact_location_and_phone(emulator: TelegramEmulator) -> None:
    own = only(await said(emulator, contact={"phone_number": "49 151 2345-6789"}))
    assert isinstance(own, InboundMessage) and own.kind is MessageKind.CONTACTS
    assert own.phone == "+4915123456789"
    assert own.payload["contacts"][0]["phone"] == "+4915123456789"

    # A contact card of somebody else is not the lead's own number.
    other = only(
        await said(
            emulator, contact={"phone_number": "+15551234567", "first_name": "Bob", "user_id": 42}
        )
    )
    assert isinstance(other, InboundMessage) and other.phone is None
    assert other.payload["contacts"][0]["phone"] == "+15551234567"

    place = only(await said(emulator, location={"latitude": 52.52, "longitude": 13.4}))
    assert isinstance(place, InboundMessage) and place.kind is MessageKind.LOCATION
    assert place.payload == {"latitude": 52.52, "longitude": 13.4}


async def test_edits(emulator: TelegramEmulator) -> None:
    first = await said(emulator, text="helo")
    edited = await said(
        emulator, text="hello", edit=True, message_id=first["message"]["message_id"]
    )
    edit = only(edited)
    assert isinstance(edit, InboundEdit)
    assert (edit.external_id, edit.text, edit.deleted) == (
        f"{LEAD}:{first['message']['message_id']}",
        "hello",
        False,
    )
    assert edit.at.tzinfo is not None


async def test_business_connection_message_edit_and_deletion(emulator: TelegramEmulator) -> None:
    await emulator.connect_business(
        {"connection_id": CONN, "user_id": REP, "first_name": "Rita", "last_name": "Rep"}
    )
    connected = only(emulator.updates(CONN)[-1])
    assert isinstance(connected, BusinessConnectionUpdate)
    assert (connected.rep_telegram_id, connected.rep_name, connected.enabled) == (
        REP,
        "Rita Rep",
        True,
    )
    assert connected.can_reply is True
    bcid = connected.business_connection_id

    update = await said(emulator, text="Hi Rita", business_connection_id=bcid)
    message = only(update)
    message_id = update["business_message"]["message_id"]
    assert isinstance(message, InboundMessage)
    assert message.business_connection_id == bcid
    assert message.external_id == f"{bcid}:{LEAD}:{message_id}"
    assert split_external_id(message.external_id) == (bcid, LEAD, message_id)

    edit = only(
        await said(
            emulator,
            text="Hi Rita!",
            business_connection_id=bcid,
            edit=True,
            message_id=message_id,
        )
    )
    assert isinstance(edit, InboundEdit) and edit.external_id == message.external_id
    assert edit.business_connection_id == bcid

    gone = parse(
        await said(emulator, business_connection_id=bcid, delete_message_ids=[message_id, 99])
    )
    assert [(g.external_id, g.deleted) for g in gone if isinstance(g, InboundEdit)] == [
        (message.external_id, True),
        (f"{bcid}:{LEAD}:99", True),
    ]

    # The rep writing to the lead from their own account is not lead input.
    rep_message = await emulator.post_update(
        {
            "connection_id": CONN,
            "from_user_id": REP,
            "chat_id": LEAD,
            "text": "Sure!",
            "business_connection_id": bcid,
        }
    )
    assert rep_message["message_id"]
    assert parse(emulator.updates(CONN)[-1]) == []

    await emulator.connect_business(
        {
            "connection_id": CONN,
            "user_id": REP,
            "business_connection_id": bcid,
            "enabled": False,
            "can_reply": False,
        }
    )
    disconnected = only(emulator.updates(CONN)[-1])
    assert isinstance(disconnected, BusinessConnectionUpdate)
    assert (disconnected.enabled, disconnected.can_reply) == (False, False)


def test_legacy_business_connection_can_reply_flag() -> None:
    update = {
        "update_id": 3,
        "business_connection": {
            "id": "legacy",
            "user": {"id": REP, "is_bot": False, "first_name": "Rita"},
            "user_chat_id": REP,
            "date": 1_700_000_000,
            "can_reply": True,
            "is_enabled": True,
        },
    }
    item = only(update)
    assert isinstance(item, BusinessConnectionUpdate) and item.can_reply is True
    assert item.at == dt.datetime.fromtimestamp(1_700_000_000, dt.UTC)


def _message(chat: dict[str, Any], sender: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"message_id": 5, "date": 1_700_000_000, "chat": chat, "from": sender, **extra}


LEAD_USER = {"id": LEAD, "is_bot": False, "first_name": "Anna"}
PRIVATE = {"id": LEAD, "type": "private", "first_name": "Anna"}


@pytest.mark.parametrize(
    "update",
    [
        # a group message: the lead channel serves private chats
        {
            "update_id": 1,
            "message": _message({"id": -100, "type": "group", "title": "G"}, LEAD_USER, text="x"),
        },
        # another bot writing
        {
            "update_id": 2,
            "message": _message(
                {"id": 99, "type": "private", "first_name": "B"},
                {"id": 99, "is_bot": True, "first_name": "B"},
                text="x",
            ),
        },
        # a channel post
        {
            "update_id": 3,
            "channel_post": {
                "message_id": 1,
                "date": 1_700_000_000,
                "chat": {"id": -1009, "type": "channel", "title": "News"},
                "text": "x",
            },
        },
        # kinds the inbox does not use
        {"update_id": 4, "poll": {"id": "p"}},
        {"update_id": 5, "some_future_kind": {"x": 1}},
    ],
)
def test_ignored_updates(update: dict[str, Any]) -> None:
    assert parse(update) == []


def test_unsupported_content_and_venue() -> None:
    dice = {"emoji": "🎲", "value": 3}
    rolled = only({"update_id": 1, "message": _message(PRIVATE, LEAD_USER, dice=dice)})
    assert isinstance(rolled, InboundMessage) and rolled.kind is MessageKind.UNSUPPORTED

    # A part aiogram cannot read (here a dice without its value) keeps the message itself.
    odd = {"update_id": 2, "message": _message(PRIVATE, LEAD_USER, caption="hi", dice={})}
    salvaged = only(odd)
    assert isinstance(salvaged, InboundMessage)
    assert (salvaged.kind, salvaged.text) == (MessageKind.UNSUPPORTED, "hi")

    venue = {
        "location": {"latitude": 1.5, "longitude": 2.5},
        "title": "Office",
        "address": "Main St 1",
    }
    place = only(
        {
            "update_id": 3,
            "message": _message(PRIVATE, LEAD_USER, venue=venue, location=venue["location"]),
        }
    )
    assert isinstance(place, InboundMessage) and place.payload["name"] == "Office"


def test_malformed_bodies_are_skipped_without_raising() -> None:
    assert ADAPTER.parse(CONNECTION, b"not json") == []
    assert ADAPTER.parse(CONNECTION, b'{"update_id": 1, "message": {"chat": 5}}') == []
    assert ADAPTER.parse(CONNECTION, b"[1, 2]") == []
    assert ADAPTER.update_id_of(b"nope") is None
    assert ADAPTER.update_id_of(b'{"update_id": "7"}') is None


def test_get_updates_batches_are_parsed_too() -> None:
    updates = [
        {"update_id": i, "message": _message(PRIVATE, LEAD_USER, text=f"m{i}")} for i in (1, 2)
    ]
    batch = ADAPTER.parse(CONNECTION, json.dumps({"ok": True, "result": updates}).encode())
    assert [m.text for m in batch if isinstance(m, InboundMessage)] == ["m1", "m2"]


def test_phone_normalization() -> None:
    assert phone_e164("+1 (555) 123-4567") == "+15551234567"
    assert phone_e164("79001234567") == "+79001234567"
    assert phone_e164("") is None


def test_external_id_parsing() -> None:
    assert split_external_id("555:12") == (None, 555, 12)
    assert split_external_id("-100123:4") == (None, -100123, 4)
    assert split_external_id("bc:x:y:555:12") == ("bc:x:y", 555, 12)
    assert split_external_id("cbq:123") is None
    assert split_external_id("garbage") is None
