"""Operator replies from Telegram: files to the lead, and delivery ticks on the confirmation.

The real service with the sandbox emulators: the operator replies to a notification in the
Telegram emulator, the lead's side is read from the WhatsApp emulator's outbox, and WhatsApp
receipts come from the emulator or, where a test needs a given order, as signed webhooks.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from bot import webhook as operator_webhook
from bot.operator_bot import ALLOWED_UPDATES as OPERATOR_UPDATES
from crm.messaging import DeliveryStatus, MessageKind
from crm.models import (
    Conversation,
    ConversationStatus,
    Direction,
    Draft,
    DraftStatus,
    Message,
    NotificationState,
    OperatorNotification,
)
from sandbox.whatsapp import WhatsAppEmulator, sign_body
from tests.support.bot import (
    LEAD,
    arrived_with,
    buttons,
    invite_link,
    join,
    lead_sends,
    lead_writes,
    lead_wrote,
    onboard_in_russian,
    onboard_owner,
    press,
    say,
    sent,
    wait_for,
    whatsapp_connection,
)
from tests.support.polling import eventually
from tests.support.service import RunningService

OWNER = 5201
VIEWER = 5202

JPEG = b"\xff\xd8\xff\xe0" + b"operator-photo" * 40
OGG = b"OggS\x00\x02" + b"voice-note" * 40
PDF = b"%PDF-1.4\n" + b"price list " * 40


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def confirmation_of(
    service: RunningService, chat_id: int, reply_id: int, expected: str
) -> dict[str, Any]:
    """The bot's confirmation of the operator's message ``reply_id``, once it says ``expected``."""
    found: list[dict[str, Any]] = []

    async def says() -> bool:
        found[:] = [
            m for m in await sent(service, chat_id) if m.get("reply_to_message_id") == reply_id
        ]
        return bool(found) and found[-1].get("text") == expected

    try:
        await eventually(says, within=15)
    except AssertionError:
        raise AssertionError(f"confirmation is {found!r}, not {expected!r}") from None
    assert len(found) == 1, found
    return found[0]


async def outbox(service: RunningService) -> list[dict[str, Any]]:
    reply = await service.http.get("/sandbox/whatsapp/outbox", params={"to": LEAD})
    assert reply.status_code == 200, reply.text
    return list(reply.json())


async def lead_got(service: RunningService, count: int = 1) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []

    async def enough() -> bool:
        entries[:] = await outbox(service)
        return len(entries) >= count

    await eventually(enough)
    return entries


def emulator(service: RunningService) -> WhatsAppEmulator:
    whatsapp = service.app.state.channels.whatsapp_emulator
    assert isinstance(whatsapp, WhatsAppEmulator)
    return whatsapp


async def push_whatsapp(service: RunningService, connection_id: int, *values: Any) -> None:
    """A signed WhatsApp webhook with one ``messages`` change per value, in this order."""
    connection = emulator(service).connections[str(connection_id)]
    metadata = {
        "display_phone_number": connection.display_phone_number,
        "phone_number_id": connection.phone_id,
    }
    body = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": connection.waba_id,
                    "changes": [
                        {
                            "field": "messages",
                            "value": {"messaging_product": "whatsapp", "metadata": metadata}
                            | value,
                        }
                        for value in values
                    ],
                }
            ],
        }
    ).encode()
    reply = await service.http.post(
        f"/webhooks/whatsapp/{connection_id}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign_body(connection.app_secret, body),
        },
    )
    assert reply.status_code == 200, reply.text


def receipt(wamid: str, status: str) -> dict[str, Any]:
    return {
        "statuses": [
            {
                "id": wamid,
                "status": status,
                "timestamp": str(int(time.time())),
                "recipient_id": LEAD,
            }
        ]
    }


def lead_text(wamid: str, text: str) -> dict[str, Any]:
    return {
        "contacts": [{"profile": {"name": "Anna"}, "wa_id": LEAD}],
        "messages": [
            {
                "from": LEAD,
                "id": wamid,
                "timestamp": str(int(time.time())),
                "type": "text",
                "text": {"body": text},
            }
        ],
    }


async def outgoing() -> list[Message]:
    return list(await Message.filter(direction=Direction.OUT).order_by("id"))


# ---- files -----------------------------------------------------------------------------------


async def test_a_photo_reply_reaches_the_lead_as_an_image(
    service: RunningService, tmp_path: Path
) -> None:
    await onboard_owner(service, OWNER, "Olga")
    notification = await lead_wrote(service, OWNER)

    reply = await say(
        service,
        OWNER,
        "Here is the plan",
        photo_base64=b64(JPEG),
        reply_to_message_id=notification,
    )

    (entry,) = await lead_got(service)
    assert entry["type"] == "image"
    assert entry["text"] == "Here is the plan"
    assert entry["media"]["mime_type"] == "image/jpeg"
    assert entry["media"]["size"] == len(JPEG)
    # The emulator reads receipts back: sent, delivered, read; the confirmation follows.
    confirmation = await confirmation_of(service, OWNER, reply["message_id"], "✓✓ Read")
    assert confirmation["edited"] is True
    (message,) = await outgoing()
    assert message.kind is MessageKind.IMAGE and message.text == "Here is the plan"
    media = dict(message.media or {})
    assert media["mime_type"] == "image/jpeg"
    stored = tmp_path / "media" / str(media["key"])
    assert stored.read_bytes() == JPEG


async def test_a_voice_reply_reaches_the_lead_as_a_voice_message(service: RunningService) -> None:
    await onboard_owner(service, OWNER, "Olga")
    notification = await lead_wrote(service, OWNER)

    await say(
        service,
        OWNER,
        "",
        voice_base64=b64(OGG),
        mime_type="audio/ogg",
        reply_to_message_id=notification,
    )

    (entry,) = await lead_got(service)
    assert entry["type"] == "audio"
    assert entry["payload"]["audio"].get("voice") is True
    assert entry["media"]["mime_type"] == "audio/ogg"
    assert entry["media"]["size"] == len(OGG)
    (message,) = await outgoing()
    assert message.kind is MessageKind.VOICE


async def test_a_document_reply_keeps_its_name(service: RunningService) -> None:
    await onboard_owner(service, OWNER, "Olga")
    notification = await lead_wrote(service, OWNER)

    await say(
        service,
        OWNER,
        "Prices attached",
        document_base64=b64(PDF),
        filename="price-list.pdf",
        mime_type="application/pdf",
        reply_to_message_id=notification,
    )

    (entry,) = await lead_got(service)
    assert entry["type"] == "document"
    assert entry["media"]["filename"] == "price-list.pdf"
    assert entry["media"]["mime_type"] == "application/pdf"
    assert entry["text"] == "Prices attached"


async def test_a_viewer_cannot_send_a_file(service: RunningService, tmp_path: Path) -> None:
    await onboard_owner(service, OWNER, "Olga")
    await join(service, VIEWER, "Victor", await invite_link(service, OWNER, "viewer"))
    await lead_wrote(service, OWNER)
    for_viewer = await wait_for(service, VIEWER, "Can you send the plan?")

    await say(
        service,
        VIEWER,
        "from a viewer",
        photo_base64=b64(JPEG),
        reply_to_message_id=for_viewer["message_id"],
    )

    await wait_for(service, VIEWER, "Viewers cannot send messages")
    assert await outgoing() == []
    media_dir = tmp_path / "media"
    assert not media_dir.exists() or not [p for p in media_dir.rglob("*") if p.is_file()]
    assert await outbox(service) == []


async def test_unsupported_and_too_large_files_are_refused(
    service: RunningService, tmp_path: Path
) -> None:
    await onboard_owner(service, OWNER, "Olga")
    notification = await lead_wrote(service, OWNER)

    await say(
        service,
        OWNER,
        "",
        sticker_base64=b64(b"RIFF-webp"),
        reply_to_message_id=notification,
    )
    await wait_for(service, OWNER, "This cannot be sent to the lead")

    # WhatsApp takes images of at most 5 MB.
    big = b"\xff\xd8" + b"\x00" * (5 * 1024 * 1024)
    await say(service, OWNER, "", photo_base64=b64(big), reply_to_message_id=notification)
    await wait_for(service, OWNER, "The file is too large to send to the lead: at most 5 MB.")

    assert await outgoing() == []
    media_dir = tmp_path / "media"
    assert not media_dir.exists() or not [p for p in media_dir.rglob("*") if p.is_file()]


async def test_a_file_that_answers_no_notification_is_explained(service: RunningService) -> None:
    await onboard_owner(service, OWNER, "Olga")
    await say(service, OWNER, "", photo_base64=b64(JPEG))
    await wait_for(service, OWNER, "To answer a lead, reply to their notification.")


async def test_refusals_and_ticks_in_russian(service: RunningService) -> None:
    await onboard_in_russian(service, OWNER)
    notification = await lead_wrote(service, OWNER)

    await say(service, OWNER, "", sticker_base64=b64(b"RIFF"), reply_to_message_id=notification)
    refused = await arrived_with(service, OWNER, "Это нельзя отправить лиду")
    assert "фото" in refused["text"]

    reply = await say(service, OWNER, "Добрый день", reply_to_message_id=notification)
    await confirmation_of(service, OWNER, reply["message_id"], "✓✓ Прочитано")


# ---- delivery ticks --------------------------------------------------------------------------


async def test_ticks_move_through_delivered_and_read_and_never_back(
    service: RunningService,
) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    connection_id = await whatsapp_connection(owner.current_tenant_id or 0)
    switched = await service.http.post("/sandbox/whatsapp/delivery", json={"auto_read": False})
    assert switched.status_code == 200
    notification = await lead_wrote(service, OWNER)

    reply = await say(service, OWNER, "On its way", reply_to_message_id=notification)

    delivered = await confirmation_of(service, OWNER, reply["message_id"], "✓✓ Delivered")
    (entry,) = await lead_got(service)
    (message,) = await outgoing()
    assert message.status is DeliveryStatus.DELIVERED
    row = await OperatorNotification.get(lead_message_id=message.id)
    assert (row.chat_id, row.telegram_message_id) == (OWNER, delivered["message_id"])

    await push_whatsapp(service, connection_id, receipt(entry["id"], "read"))
    read = await confirmation_of(service, OWNER, reply["message_id"], "✓✓ Read")
    assert read["message_id"] == delivered["message_id"]

    # A late "delivered", then (in the same webhook, so handled after it) a new lead message.
    await push_whatsapp(
        service,
        connection_id,
        receipt(entry["id"], "delivered"),
        lead_text("wamid.after-the-late-receipt", "one more thing"),
    )
    await wait_for(service, OWNER, "one more thing")
    await message.refresh_from_db()
    assert message.status is DeliveryStatus.READ
    await confirmation_of(service, OWNER, reply["message_id"], "✓✓ Read")

    # A reply to the confirmation answers the same lead.
    await say(service, OWNER, "And a follow-up", reply_to_message_id=read["message_id"])
    await lead_got(service, 2)


async def test_a_failed_send_shows_the_reason_on_the_confirmation(
    service: RunningService,
) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    connection_id = await whatsapp_connection(owner.current_tenant_id or 0)
    notification = await lead_wrote(service, OWNER)
    # WhatsApp's own clock says the window closed: the send is refused for good.
    emulator(service).set_last_inbound(str(connection_id), LEAD, None)

    reply = await say(service, OWNER, "Too late?", reply_to_message_id=notification)

    failed = await confirmation_of(
        service, OWNER, reply["message_id"], "⚠️ Not delivered: Re-engagement message"
    )
    assert failed["parse_mode"] == "HTML"
    (message,) = await outgoing()
    assert message.status is DeliveryStatus.FAILED
    # No separate failure message for a reply sent from Telegram.
    texts = [m.get("text") or "" for m in await sent(service, OWNER)]
    assert not [t for t in texts if "was not delivered" in t]


async def test_a_failed_message_sent_from_the_api_is_still_told_apart(
    service: RunningService,
) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    connection_id = await whatsapp_connection(owner.current_tenant_id or 0)
    await lead_wrote(service, OWNER)
    emulator(service).set_last_inbound(str(connection_id), LEAD, None)
    welcome = (await sent(service, OWNER))[0]["text"]
    token = welcome.split("/sandbox?signin=", 1)[1].split()[0]
    key = (await service.http.post("/sandbox/session", json={"token": token})).json()["api_key"]
    conversation_id = (await Message.get(direction=Direction.IN)).conversation_id

    posted = await service.http.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"text": "From the API"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert posted.status_code == 202, posted.text

    told = await wait_for(service, OWNER, "was not delivered")
    assert told["text"] == ("⚠️ Your message to Anna was not delivered: Re-engagement message")


# ---- which lead a reply answers --------------------------------------------------------------

MALLORY = "4915177777777"


async def lead_outbox(service: RunningService, phone: str) -> list[str]:
    reply = await service.http.get("/sandbox/whatsapp/outbox", params={"to": phone})
    assert reply.status_code == 200, reply.text
    return [entry.get("text") for entry in reply.json()]


async def telegram_forgets_its_chats(service: RunningService) -> None:
    """The Bot API restarts without its chats (the emulator's reset): message ids start over.

    The operator bot's webhook is set again, as the service does at start.
    """
    reset = await service.http.post("/sandbox/telegram/reset", json={"keep_bots": True})
    assert reset.status_code == 200, reset.text
    runtime = service.app.state.operator.bot
    telegram = service.app.state.channels.telegram_emulator
    telegram.set_webhook(
        runtime.config.token,
        f"{service.base_url}{operator_webhook.PATH}",
        runtime.webhook_secret,
        list(OPERATOR_UPDATES),
    )


async def test_a_reply_answers_the_newest_notification_with_its_message_id(
    service: RunningService,
) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    connection_id = await whatsapp_connection(owner.current_tenant_id or 0)
    await lead_writes(service, connection_id, "Bob", "Bob here")
    bob = await wait_for(service, OWNER, "Bob here")
    assert bob["message_id"] >= 3

    await telegram_forgets_its_chats(service)
    # The operator writes again, so that the next notification takes Bob's old message id.
    await say(service, OWNER, "/help", message_id=bob["message_id"] - 2)
    (answer,) = await sent(service, OWNER)
    assert answer["message_id"] == bob["message_id"] - 1
    await lead_sends(
        service, connection_id, name="Mallory", text="Mallory here", **{"from": MALLORY}
    )
    mallory = await wait_for(service, OWNER, "Mallory here")
    assert mallory["message_id"] == bob["message_id"]

    await say(service, OWNER, "Hello Mallory", reply_to_message_id=mallory["message_id"])

    async def answered() -> bool:
        return await lead_outbox(service, MALLORY) == ["Hello Mallory"]

    await eventually(answered)
    assert await lead_outbox(service, LEAD) == []


async def test_a_notification_that_cannot_be_delivered_is_logged_with_the_reason(
    service: RunningService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.senders.notifications")
    owner = await onboard_owner(service, OWNER, "Olga")
    blocked = await service.http.post(
        "/sandbox/telegram/blocks", json={"connection_id": "operator", "user_id": OWNER}
    )
    assert blocked.status_code == 200, blocked.text

    await lead_writes(service, await whatsapp_connection(owner.current_tenant_id or 0), "A", "hi")

    async def failed() -> bool:
        return await OperatorNotification.exists(state=NotificationState.FAILED)

    await eventually(failed)
    message = await Message.get(direction=Direction.IN)
    row = await OperatorNotification.get(lead_message_id=message.id)
    assert row.user_id == owner.id and row.telegram_message_id is None
    assert "blocked by the user" in (row.error or "")
    logged = [r.getMessage() for r in caplog.records if r.name == "bot.senders.notifications"]
    assert any(
        f"operator {owner.id} (chat {OWNER}) not notified of lead message {message.id}" in line
        and "blocked by the user" in line
        for line in logged
    ), logged


async def test_a_reply_to_a_notification_wins_over_an_open_draft_edit(
    service: RunningService,
) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    connection_id = await whatsapp_connection(owner.current_tenant_id or 0)
    await lead_writes(service, connection_id, "Anna", "Can you send the plan?")
    anna = await wait_for(service, OWNER, "Can you send the plan?")
    await lead_sends(
        service, connection_id, name="Mallory", text="What is the price?", **{"from": MALLORY}
    )
    mallory = await wait_for(service, OWNER, "What is the price?")
    anna_conversation = (await Message.get(text="Can you send the plan?")).conversation_id

    # A draft for Anna, and its Edit dialogue open.
    await press(service, OWNER, f"cv:f:{anna_conversation}", anna["message_id"])
    card = await wait_for(service, OWNER, "Draft")
    edit = next(data for data in buttons(card) if data.startswith("df:e:"))
    await press(service, OWNER, edit, card["message_id"])
    await wait_for(service, OWNER, "Send the corrected text as a reply")

    # The operator answers Mallory's notification meanwhile: Mallory gets it, not the draft.
    await say(service, OWNER, "It is 49 EUR.", reply_to_message_id=mallory["message_id"])

    async def answered() -> bool:
        return await lead_outbox(service, MALLORY) == ["It is 49 EUR."]

    await eventually(answered)
    assert await lead_outbox(service, LEAD) == []
    draft = await Draft.get(id=int(edit.rsplit(":", 1)[1]))
    assert draft.status is DraftStatus.PENDING


# ---- buttons by role and state ---------------------------------------------------------------


async def current(service: RunningService, chat_id: int, message_id: int) -> dict[str, Any]:
    """A bot message as it stands now (edits applied)."""
    (message,) = [m for m in await sent(service, chat_id) if m["message_id"] == message_id]
    return message


async def test_a_viewer_gets_only_the_buttons_a_viewer_can_use(service: RunningService) -> None:
    await onboard_owner(service, OWNER, "Olga")
    await join(service, VIEWER, "Victor", await invite_link(service, OWNER, "viewer"))
    await lead_wrote(service, OWNER)
    for_viewer = await wait_for(service, VIEWER, "Can you send the plan?")
    for_owner = await wait_for(service, OWNER, "Can you send the plan?")
    conversation_id = (await Message.get(direction=Direction.IN)).conversation_id

    assert buttons(for_viewer) == [f"cv:d:{conversation_id}"]
    assert buttons(for_owner) == [
        f"cv:{act}:{conversation_id}" for act in ("r", "f", "d", "g", "a", "s", "c")
    ]


async def test_assign_snooze_and_close_show_on_the_notification_and_it_reopens(
    service: RunningService,
) -> None:
    await onboard_owner(service, OWNER, "Olga")
    notification = await lead_wrote(service, OWNER)
    conversation_id = (await Message.get(direction=Direction.IN)).conversation_id

    def first_row(message: dict[str, Any]) -> str:
        return str(message["reply_markup"]["inline_keyboard"][0][0]["text"])

    await press(service, OWNER, f"cv:a:{conversation_id}", notification)

    async def shows(text: str) -> bool:
        return first_row(await current(service, OWNER, notification)) == text

    await eventually(lambda: shows("🙋 you"))
    assigned = await current(service, OWNER, notification)
    assert f"cv:a:{conversation_id}" not in buttons(assigned)

    await press(service, OWNER, f"cv:s:{conversation_id}", notification)

    async def snoozed() -> bool:
        row = first_row(await current(service, OWNER, notification))
        return row.startswith("⏰ until ") and row.endswith(" · 🙋 you")

    await eventually(snoozed)

    await press(service, OWNER, f"cv:c:{conversation_id}", notification)
    await eventually(lambda: shows("✅ Closed · 🙋 you"))
    closed = await current(service, OWNER, notification)
    assert f"cv:o:{conversation_id}" in buttons(closed)
    assert f"cv:c:{conversation_id}" not in buttons(closed)
    assert (await Conversation.get(id=conversation_id)).status is ConversationStatus.CLOSED

    await press(service, OWNER, f"cv:o:{conversation_id}", notification)
    await eventually(lambda: shows("🙋 you"))
    reopened = await current(service, OWNER, notification)
    assert f"cv:c:{conversation_id}" in buttons(reopened)
    assert (await Conversation.get(id=conversation_id)).status is ConversationStatus.OPEN
