"""Lead notifications in the operator bot: media as media, long texts split, through the emulator.

The service runs for real (aiogram, pywa, the sandbox WhatsApp and Telegram emulators on
loopback); the lead writes on WhatsApp and the operator's chat is read back from
``/sandbox/telegram/sent``.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from tortoise import connections

from bot.i18n import build_i18n, rendering
from bot.senders.delivery import delivery_text
from bot.senders.notification_content import (
    CAPTION_LIMIT,
    attachment_of,
    render_notification,
    telegram_length,
)
from crm.infrastructure.media_store import LocalMediaStore, stored_bytes
from crm.messaging import DeliveryStatus
from crm.models import (
    Conversation,
    Direction,
    Event,
    Message,
    NotificationState,
    OperatorNotification,
    User,
)
from crm.services.inbox import operator_notifications
from tests.support.bot import (
    arrived,
    arrived_with,
    buttons,
    invite_link,
    join,
    lead_received,
    lead_sends,
    onboard_in_russian,
    onboard_owner,
    say,
    sent,
    whatsapp_connection,
)
from tests.support.polling import eventually
from tests.support.service import RunningService

OWNER = 5101
MEMBER = 5102
RU_OWNER = 5103

JPEG = b"\xff\xd8\xff\xe0" + b"sandbox-photo" * 50
PDF = b"%PDF-1.4\n" + b"sandbox offer " * 40
ENTITY = re.compile(r"&(?:[a-zA-Z]+|#[0-9]+|#x[0-9a-fA-F]+);")


async def notification_row(user_id: int, message_id: int) -> OperatorNotification:
    """The notification row of a lead message for a Telegram user."""
    user = await User.get(telegram_id=user_id)
    return await OperatorNotification.get(user_id=user.id, lead_message_id=message_id)


async def only_lead_message() -> Message:
    return await Message.get(direction=Direction.IN)


# ---- rendering -------------------------------------------------------------------------------


@pytest.fixture
def english() -> Iterator[None]:
    with rendering(build_i18n(), "en"):
        yield


def test_a_long_lead_text_is_no_longer_cut(english: None) -> None:
    text = "x" * 9000
    rendered = render_notification(
        lead_name="Anna", channel="whatsapp", deal=None, kind="text", text=text
    )
    assert text in rendered and "…" not in rendered


def test_a_caption_has_no_label_and_no_placeholder(english: None) -> None:
    with_caption = render_notification(
        lead_name="A <b>",
        channel="whatsapp",
        deal=None,
        kind="image",
        text="see <this>",
        attached=True,
    )
    assert with_caption == "💬 <b>A &lt;b&gt;</b> via WhatsApp\n\nsee &lt;this&gt;"
    bare = render_notification(
        lead_name="A", channel="telegram", deal=None, kind="image", text="", attached=True
    )
    assert bare == "💬 <b>A</b> via Telegram"
    label = render_notification(
        lead_name="A", channel="telegram", deal=None, kind="image", text="hi"
    )
    assert label.endswith("[photo] hi")


def test_which_media_go_as_media() -> None:
    small = attachment_of("image", {"filename": "a.jpg"}, b"x")
    assert small is not None and (small.send_as, small.filename) == ("photo", "a.jpg")
    big_photo = attachment_of("image", {}, b"x" * (10 * 1024 * 1024 + 1))
    assert big_photo is not None and big_photo.send_as == "document"
    assert attachment_of("video", {}, b"x" * (50 * 1024 * 1024 + 1)) is None
    assert attachment_of("sticker", {}, b"x") is None
    assert attachment_of("image", {}, None) is None  # not downloaded (yet): a label instead
    voice = attachment_of("voice", None, b"x")
    assert voice is not None and (voice.send_as, voice.filename) == ("voice", "voice.ogg")


async def test_stored_bytes_of_media_that_was_not_stored(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path)
    assert await stored_bytes(store, None) is None
    assert await stored_bytes(store, {"error": "download failed"}) is None
    assert await stored_bytes(store, {"key": "t1/2020-01/gone.jpg"}) is None
    assert await stored_bytes(store, {"key": "../../etc/passwd"}) is None
    key = await store.put(1, "a.jpg", b"abc")
    assert await stored_bytes(store, {"key": key}) == b"abc"


def test_delivery_texts(english: None) -> None:
    assert delivery_text(DeliveryStatus.QUEUED, None) == "Sent ✓"
    assert delivery_text(DeliveryStatus.DELIVERED, None) == "✓✓ Delivered"
    assert delivery_text(DeliveryStatus.READ, None) == "✓✓ Read"
    assert delivery_text(DeliveryStatus.FAILED, "<bad>") == "⚠️ Not delivered: &lt;bad&gt;"
    assert delivery_text(DeliveryStatus.FAILED, None) == "⚠️ Not delivered: unknown error"


# ---- through the emulator --------------------------------------------------------------------


async def test_a_lead_photo_reaches_two_members_from_one_upload(service: RunningService) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    await join(service, MEMBER, "Max", await invite_link(service, OWNER, "bidi"))
    connection_id = await whatsapp_connection(owner.current_tenant_id or 0)

    await lead_sends(
        service,
        connection_id,
        type="image",
        data=JPEG,
        mime_type="image/jpeg",
        text="our <shop> & sign",
    )

    (photo,) = await arrived(service, OWNER, 1, method="sendPhoto")
    (for_member,) = await arrived(service, MEMBER, 1, method="sendPhoto")
    assert photo["parse_mode"] == "HTML"
    assert photo["caption"] == "💬 <b>Anna</b> via WhatsApp\n\nour &lt;shop&gt; &amp; sign"
    conversation = await Conversation.get(tenant_id=owner.current_tenant_id)
    assert buttons(photo)[0] == f"cv:r:{conversation.id}" and len(buttons(photo)) == 7
    assert buttons(for_member) == buttons(photo)
    # One upload: the second member got the photo by the file id of the first send.
    assert photo["media"]["file_id"] == for_member["media"]["file_id"]
    assert photo["media"]["file_size"] == len(JPEG)
    # No text notification besides, and no forward.
    methods = {m["method"] for m in await sent(service, OWNER)}
    assert "forwardMessage" not in methods
    assert not [
        m for m in await sent(service, OWNER) if "our &lt;shop&gt;" in (m.get("text") or "")
    ]

    lead_message = await only_lead_message()
    row = await notification_row(OWNER, lead_message.id)
    assert (row.chat_id, row.telegram_message_id) == (OWNER, photo["message_id"])

    # Replying to the photo answers the lead.
    await say(service, OWNER, "Lovely shop!", reply_to_message_id=photo["message_id"])

    async def delivered() -> bool:
        return "Lovely shop!" in await lead_received(service)

    await eventually(delivered)


async def test_a_lead_document_arrives_as_a_document(service: RunningService) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    connection_id = await whatsapp_connection(owner.current_tenant_id or 0)

    await lead_sends(
        service,
        connection_id,
        type="document",
        data=PDF,
        mime_type="application/pdf",
        filename="offer.pdf",
        text="the offer",
    )

    (document,) = await arrived(service, OWNER, 1, method="sendDocument")
    assert document["media"]["kind"] == "document"
    assert document["media"]["file_name"] == "offer.pdf"
    assert document["media"]["file_size"] == len(PDF)
    assert document["caption"].endswith("\n\nthe offer")
    assert len(buttons(document)) == 7
    row = await notification_row(OWNER, (await only_lead_message()).id)
    assert row.telegram_message_id == document["message_id"]


async def test_a_sticker_is_still_a_label(service: RunningService) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    connection_id = await whatsapp_connection(owner.current_tenant_id or 0)
    await lead_sends(
        service, connection_id, type="sticker", data=b"RIFF-webp", mime_type="image/webp"
    )
    label = await arrived_with(service, OWNER, "[sticker]")
    assert label["method"] == "sendMessage" and len(buttons(label)) == 7


async def test_a_caption_too_long_comes_after_the_media(service: RunningService) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    connection_id = await whatsapp_connection(owner.current_tenant_id or 0)
    caption = "A long description of the part. " * 40  # ~1300 characters

    await lead_sends(
        service, connection_id, type="image", data=JPEG, mime_type="image/jpeg", text=caption
    )

    text = await arrived_with(service, OWNER, "A long description")
    (photo,) = await arrived(service, OWNER, 1, method="sendPhoto")
    assert photo["caption"] is None and buttons(photo) == []
    assert photo["message_id"] < text["message_id"]
    assert text["method"] == "sendMessage" and len(buttons(text)) == 7
    assert text["text"] == "💬 <b>Anna</b> via WhatsApp\n\n" + html.escape(caption)
    assert telegram_length(text["text"]) > CAPTION_LIMIT
    row = await notification_row(OWNER, (await only_lead_message()).id)
    assert row.telegram_message_id == text["message_id"]
    # The photo answers the lead too.
    assert await OperatorNotification.exists(telegram_message_id=photo["message_id"], chat_id=OWNER)


async def test_a_6000_character_message_is_split_with_the_buttons_last(
    service: RunningService,
) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    connection_id = await whatsapp_connection(owner.current_tenant_id or 0)
    text = ('Tom & Jerry <3 "quotes" and words ' * 200)[:6000]
    assert len(text) == 6000

    await lead_sends(service, connection_id, text=text)

    first = await arrived_with(service, OWNER, "via WhatsApp")
    parts = [m for m in await sent(service, OWNER) if m["message_id"] >= first["message_id"]]

    async def all_parts() -> bool:
        parts[:] = [m for m in await sent(service, OWNER) if m["message_id"] >= first["message_id"]]
        return bool(parts) and bool(buttons(parts[-1]))

    await eventually(all_parts)
    assert len(parts) >= 2  # 6000 characters, more once escaped: over one message's 4096
    assert all(telegram_length(p["text"]) <= 4096 for p in parts)
    assert [bool(buttons(p)) for p in parts] == [False] * (len(parts) - 1) + [True]
    for part in parts:
        # Every '&' starts a whole entity: none was cut in two.
        assert "&" not in ENTITY.sub("", part["text"]), part["text"][-20:]
        assert part["parse_mode"] == "HTML"
    header = "💬 <b>Anna</b> via WhatsApp\n\n"
    assert parts[0]["text"].startswith(header)
    joined = "".join(p["text"] for p in parts).removeprefix(header)
    assert html.unescape(joined) == text

    row = await notification_row(OWNER, (await only_lead_message()).id)
    assert row.telegram_message_id == parts[-1]["message_id"]
    await say(service, OWNER, "Got it all", reply_to_message_id=parts[-1]["message_id"])

    async def delivered() -> bool:
        return "Got it all" in await lead_received(service)

    await eventually(delivered)


async def test_a_russian_operator_gets_the_photo_captioned_in_russian(
    service: RunningService,
) -> None:
    owner = await onboard_in_russian(service, RU_OWNER)
    connection_id = await whatsapp_connection(owner.current_tenant_id or 0)
    await lead_sends(service, connection_id, type="image", data=JPEG, mime_type="image/jpeg")
    (photo,) = await arrived(service, RU_OWNER, 1, method="sendPhoto")
    assert photo["caption"] == "💬 <b>Anna</b> через WhatsApp"


# ---- at most once ----------------------------------------------------------------------------


async def test_a_redelivered_event_does_not_notify_again(
    service: RunningService, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    # The worker dies after Telegram took the notification, before recording its message id.
    died: list[int] = []

    async def worker_killed(notification: OperatorNotification, telegram_message_id: int) -> None:
        died.append(telegram_message_id)
        raise RuntimeError("worker killed between the send and the commit of its record")

    monkeypatch.setattr(operator_notifications, "record_sent", worker_killed)
    await lead_sends(service, await whatsapp_connection(owner.current_tenant_id or 0), text="ping")
    await arrived_with(service, OWNER, "ping")

    async def killed() -> bool:
        return bool(died)

    await eventually(killed)
    monkeypatch.undo()  # the next worker is healthy

    # The event is delivered again: the handler runs once more for it.
    message = await only_lead_message()
    event = await Event.get(type="message.received", entity_id=message.id)
    notifier = service.app.state.operator.bot.notifier
    with caplog.at_level(logging.WARNING, logger="crm.services.inbox.lead_recipients"):
        await notifier.message_received(event, connections.get("default"))

    pings = [m for m in await sent(service, OWNER) if "ping" in (m.get("text") or "")]
    assert len(pings) == 1, pings
    row = await notification_row(OWNER, message.id)
    # Told apart from a notification whose record committed: its send was never confirmed.
    assert row.state is NotificationState.PENDING and row.telegram_message_id is None
    assert "never confirmed" in caplog.text and "not sent again" in caplog.text
