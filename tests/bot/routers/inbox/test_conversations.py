"""``/inbox`` in the operator bot, end to end: the list, its pages, an opened conversation and a
reply from it that reaches the lead on WhatsApp."""

from __future__ import annotations

import base64
import html
import re
from typing import Any

from crm.models import Conversation, NotificationState, OperatorNotification, User
from tests.support.bot import (
    LEAD,
    buttons,
    count,
    invite_link,
    join,
    lead_received,
    lead_writes,
    next_message,
    onboard_owner,
    press,
    say,
    sent,
    whatsapp_connection,
)
from tests.support.polling import eventually
from tests.support.service import RunningService

OWNER = 6201
VIEWER = 6202
RU_OWNER = 6203
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
    )
).decode()


async def current(service: RunningService, chat_id: int, message_id: int) -> dict[str, Any]:
    (message,) = [m for m in await sent(service, chat_id) if m["message_id"] == message_id]
    return message


async def leads_write(service: RunningService, connection_id: int, n: int) -> None:
    """``n`` different leads write once each, in order; returns once all are stored."""
    for i in range(n):
        reply = await service.http.post(
            "/sandbox/whatsapp/inbound",
            json={
                "connection_id": str(connection_id),
                "from": f"49151000000{i:02d}",
                "name": f"Lead {i:02d}",
                "text": f"hello from lead {i}",
            },
        )
        assert reply.status_code == 200, reply.text

    async def stored() -> bool:
        return await Conversation.filter(unread_count__gt=0).count() == n

    await eventually(stored)

    # And announced: a notification arriving after /inbox would be mistaken for its answer.
    await eventually(lambda: notified(n))


async def notified(n: int) -> bool:
    """At least ``n`` lead notifications went out (their intents alone are not enough)."""
    sent_ones = OperatorNotification.filter(
        lead_message_id__isnull=False, state=NotificationState.SENT
    )
    return await sent_ones.count() >= n


async def test_inbox_pages_unread_conversations_newest_first(service: RunningService) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    await leads_write(service, await whatsapp_connection(owner.current_tenant_id or 0), 10)
    newest_first = [
        c.id
        for c in await Conversation.filter(tenant_id=owner.current_tenant_id).order_by(
            "-last_message_at", "-id"
        )
    ]

    before = await count(service, OWNER)
    await say(service, OWNER, "/inbox")
    listing = await next_message(service, OWNER, before, "10 conversations with unread messages")
    assert buttons(listing) == [*(f"io:{i}" for i in newest_first[:8]), "ib:1", "ib:2"]
    rows = listing["reply_markup"]["inline_keyboard"]
    assert rows[0][0]["text"] == "Lead 09 · WhatsApp · 1"
    assert [b["text"] for b in rows[-1]] == ["page 1/2", "▶️"]

    await press(service, OWNER, "ib:2", listing["message_id"])

    async def turned() -> bool:
        page = await current(service, OWNER, listing["message_id"])
        return buttons(page) == [*(f"io:{i}" for i in newest_first[8:]), "ib:1", "ib:2"]

    await eventually(turned)
    page = await current(service, OWNER, listing["message_id"])
    assert [b["text"] for b in page["reply_markup"]["inline_keyboard"][-1]] == ["◀️", "page 2/2"]
    assert page["reply_markup"]["inline_keyboard"][-2][0]["text"] == "Lead 00 · WhatsApp · 1"

    await press(service, OWNER, "ib:1", listing["message_id"])

    async def back() -> bool:
        page = await current(service, OWNER, listing["message_id"])
        return buttons(page)[:8] == [f"io:{i}" for i in newest_first[:8]]

    await eventually(back)


async def test_inbox_in_russian(service: RunningService) -> None:
    await say(service, RU_OWNER, "/start", first_name="Ольга", language_code="ru")

    async def registered() -> bool:
        user = await User.get_or_none(telegram_id=RU_OWNER)
        return user is not None and user.current_tenant_id is not None

    await eventually(registered)
    owner = await User.get(telegram_id=RU_OWNER)
    await leads_write(service, await whatsapp_connection(owner.current_tenant_id or 0), 9)
    before = await count(service, RU_OWNER)
    await say(service, RU_OWNER, "/inbox")
    listing = await next_message(service, RU_OWNER, before, "9 диалогов с непрочитанными")
    labels = [b["text"] for b in listing["reply_markup"]["inline_keyboard"][-1]]
    assert labels == ["стр. 1/2", "▶️"]
    before = await count(service, RU_OWNER)
    await press(service, RU_OWNER, buttons(listing)[0], listing["message_id"])
    opened = await next_message(service, RU_OWNER, before, "hello from lead 8")
    assert "Ответьте на это сообщение, чтобы написать лиду." in opened["text"]


async def test_opening_a_conversation_shows_it_marks_it_read_and_a_reply_reaches_the_lead(
    service: RunningService,
) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    connection_id = await whatsapp_connection(owner.current_tenant_id or 0)
    await lead_writes(service, connection_id, "Anna <script>", "hi <b>there</b> & more")
    reply = await service.http.post(
        "/sandbox/whatsapp/inbound",
        json={
            "connection_id": str(connection_id),
            "from": LEAD,
            "name": "Anna <script>",
            "type": "image",
            "media_base64": PNG,
            "mime_type": "image/png",
            "text": "my office",
        },
    )
    assert reply.status_code == 200, reply.text

    async def both_stored() -> bool:
        conversation = await Conversation.get_or_none(tenant_id=owner.current_tenant_id)
        return conversation is not None and conversation.unread_count == 2

    await eventually(both_stored)
    # Both announced: a notification arriving after the view would be mistaken for it.
    await eventually(lambda: notified(2))
    conversation = await Conversation.get(tenant_id=owner.current_tenant_id)

    before = await count(service, OWNER)
    await say(service, OWNER, "/inbox")
    listing = await next_message(service, OWNER, before, "1 conversation with unread messages")
    assert listing["reply_markup"]["inline_keyboard"][0][0]["text"] == (
        "Anna <script> · WhatsApp · 2"
    )

    before = await count(service, OWNER)
    await press(service, OWNER, f"io:{conversation.id}", listing["message_id"])
    opened = await next_message(service, OWNER, before, "via WhatsApp")
    text = opened["text"]
    assert opened["parse_mode"] == "HTML"
    assert "💬 <b>Anna &lt;script&gt;</b> via WhatsApp" in text
    escaped = html.escape("hi <b>there</b> & more")
    assert re.search(r"⬅️ <i>\d\d\.\d\d \d\d:\d\d</i> " + re.escape(escaped), text), text
    assert "[photo] my office" in text
    assert text.index("hi &lt;b&gt;") < text.index("[photo]")
    assert "Reply to this message to answer the lead." in text
    assert buttons(opened) == [
        f"cv:{act}:{conversation.id}" for act in ("r", "f", "d", "g", "a", "s", "c")
    ]

    async def read() -> bool:
        await conversation.refresh_from_db()
        return conversation.unread_count == 0

    await eventually(read)

    await say(service, OWNER, "Hello Anna, see you", reply_to_message_id=opened["message_id"])

    async def delivered() -> bool:
        return "Hello Anna, see you" in await lead_received(service)

    await eventually(delivered)

    # The outbound message shows in the conversation, and with nothing unread the list falls
    # back to the open conversations, saying so.
    before = await count(service, OWNER)
    await say(service, OWNER, "/inbox")
    listing = await next_message(service, OWNER, before, "Nothing unread. 1 open conversation")
    assert listing["reply_markup"]["inline_keyboard"][0][0]["text"] == (
        "Anna <script> · WhatsApp · 0"
    )
    before = await count(service, OWNER)
    await press(service, OWNER, f"io:{conversation.id}", listing["message_id"])
    opened = await next_message(service, OWNER, before, "via WhatsApp")
    assert "➡️ <i>" in opened["text"] and "Hello Anna, see you" in opened["text"]


async def test_a_viewer_opens_a_conversation_without_marking_it_read(
    service: RunningService,
) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    await join(service, VIEWER, "Victor", await invite_link(service, OWNER, "viewer"))
    await lead_writes(
        service, await whatsapp_connection(owner.current_tenant_id or 0), "Anna", "a question"
    )

    async def stored() -> bool:
        return await Conversation.filter(tenant_id=owner.current_tenant_id).exists()

    await eventually(stored)
    conversation = await Conversation.get(tenant_id=owner.current_tenant_id)

    before = await count(service, VIEWER)
    await say(service, VIEWER, "/inbox")
    listing = await next_message(service, VIEWER, before, "1 conversation with unread messages")
    before = await count(service, VIEWER)
    await press(service, VIEWER, f"io:{conversation.id}", listing["message_id"])
    opened = await next_message(service, VIEWER, before, "a question")
    assert "via WhatsApp" in opened["text"]

    before = await count(service, VIEWER)
    await say(service, VIEWER, "let me answer", reply_to_message_id=opened["message_id"])
    await next_message(service, VIEWER, before, "Viewers cannot send")
    await conversation.refresh_from_db()
    assert conversation.unread_count == 1
    assert await lead_received(service) == []


async def test_an_empty_inbox_says_so(service: RunningService) -> None:
    await onboard_owner(service, OWNER, "Olga")
    before = await count(service, OWNER)
    await say(service, OWNER, "/inbox")
    listing = await next_message(service, OWNER, before, "No open conversations")
    assert listing["reply_markup"] is None
