"""The lead adapter sending through aiogram to the emulator over loopback HTTP."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import pytest

from channels.telegram import ALLOWED_UPDATES, TelegramAdapter
from crm.messaging import (
    Button,
    InboundMessage,
    MessageKind,
    OutboundKind,
    OutboundMessage,
    SendError,
)
from tests.support.telegram import (
    CONNECTION_ID,
    LEAD,
    OTHER_TOKEN,
    REP,
    WEBHOOK_SECRET,
    Sandbox,
    telegram_connection,
)


async def test_text_is_sent_as_plain_text(sandbox: Sandbox) -> None:
    await sandbox.lead_says("hi")
    # Markup-looking text from a lead or an agent must arrive verbatim, never parsed.
    text = "<b>Tom & Co</b> *50%* off_today [x](y)"
    result = await sandbox.adapter.send(
        sandbox.connection, OutboundMessage(to=str(LEAD), text=text)
    )

    rows = await sandbox.sent()
    assert [(r["text"], r["parse_mode"]) for r in rows] == [(text, None)]
    assert result.external_id == f"{LEAD}:{rows[0]['message_id']}"


async def test_buttons_and_reply(sandbox: Sandbox) -> None:
    asked = await sandbox.lead_says("Which plan?")
    message = OutboundMessage(
        to=str(LEAD),
        kind=OutboundKind.BUTTONS,
        text="Pick one",
        buttons=(Button("plan_basic", "Basic"), Button("plan_pro", "Pro")),
        reply_to_external_id=f"{LEAD}:{asked['message_id']}",
    )
    await sandbox.adapter.send(sandbox.connection, message)

    row = (await sandbox.sent())[0]
    assert row["reply_markup"] == {
        "inline_keyboard": [
            [{"text": "Basic", "callback_data": "plan_basic"}],
            [{"text": "Pro", "callback_data": "plan_pro"}],
        ]
    }
    assert row["reply_to_message_id"] == asked["message_id"]

    # The lead presses "Pro": parse turns the callback query into a button answer.
    await sandbox.lead_says("", callback_data="plan_pro")
    update = sandbox.emulator.updates(str(CONNECTION_ID))[-1]
    (press,) = sandbox.adapter.parse(sandbox.connection, json.dumps(update).encode())
    assert isinstance(press, InboundMessage)
    assert press.kind is MessageKind.BUTTON and press.text == "Pro"
    assert press.payload == {"button_id": "plan_pro"}
    assert press.reply_to_external_id == f"{LEAD}:{row['message_id']}"


async def test_reply_to_a_deleted_message_still_sends(sandbox: Sandbox) -> None:
    await sandbox.lead_says("hi")
    message = OutboundMessage(to=str(LEAD), text="answer", reply_to_external_id=f"{LEAD}:999")
    await sandbox.adapter.send(sandbox.connection, message)
    assert [r["text"] for r in await sandbox.sent()] == ["answer"]


async def test_media_from_path_and_url(sandbox: Sandbox, tmp_path: Path) -> None:
    await sandbox.lead_says("send the contract")
    contract = tmp_path / "stored-blob"
    contract.write_bytes(b"%PDF-1.7 contract")
    await sandbox.adapter.send(
        sandbox.connection,
        OutboundMessage(
            to=str(LEAD),
            kind=OutboundKind.DOCUMENT,
            text="Here it is",
            media_path=str(contract),
            filename="contract.pdf",
        ),
    )
    await sandbox.adapter.send(
        sandbox.connection,
        OutboundMessage(
            to=str(LEAD), kind=OutboundKind.IMAGE, media_url="https://cdn.example/p.jpg"
        ),
    )
    rows = await sandbox.sent()
    assert [r["method"] for r in rows] == ["sendDocument", "sendPhoto"]
    assert rows[0]["caption"] == "Here it is"
    assert rows[0]["media"]["file_name"] == "contract.pdf"
    assert rows[0]["media"]["file_size"] == len(b"%PDF-1.7 contract")

    with pytest.raises(SendError, match="needs media_path or media_url"):
        await sandbox.adapter.send(
            sandbox.connection, OutboundMessage(to=str(LEAD), kind=OutboundKind.VOICE)
        )


async def test_business_send_and_external_ids(sandbox: Sandbox) -> None:
    connected = await sandbox.http.post(
        "/sandbox/telegram/business_connections",
        json={"connection_id": str(CONNECTION_ID), "user_id": REP, "first_name": "Rita"},
    )
    bcid = connected.json()["business_connection_id"]
    said = await sandbox.lead_says("Hi Rita", business_connection_id=bcid)
    result = await sandbox.adapter.send(
        sandbox.connection,
        OutboundMessage(
            to=str(LEAD),
            text="Hi! Rita here.",
            business_connection_id=bcid,
            reply_to_external_id=f"{bcid}:{LEAD}:{said['message_id']}",
        ),
    )
    row = (await sandbox.sent())[0]
    assert row["business_connection_id"] == bcid
    assert row["reply_to_message_id"] == said["message_id"]
    assert result.external_id == f"{bcid}:{LEAD}:{row['message_id']}"


async def test_refusals_map_to_send_errors(sandbox: Sandbox) -> None:
    with pytest.raises(SendError) as unknown_chat:
        await sandbox.adapter.send(sandbox.connection, OutboundMessage(to="31337", text="x"))
    assert (unknown_chat.value.code, unknown_chat.value.retryable) == (400, False)
    assert "chat not found" in unknown_chat.value.title

    await sandbox.lead_says("hi")
    await sandbox.http.post(
        "/sandbox/telegram/blocks", json={"connection_id": str(CONNECTION_ID), "user_id": LEAD}
    )
    with pytest.raises(SendError) as blocked:
        await sandbox.adapter.send(sandbox.connection, OutboundMessage(to=str(LEAD), text="x"))
    assert (blocked.value.code, blocked.value.retryable) == (403, False)

    with pytest.raises(SendError, match="4096"):
        await sandbox.adapter.send(
            sandbox.connection, OutboundMessage(to=str(LEAD), text="x" * 4097)
        )
    with pytest.raises(SendError, match="1-64 bytes"):
        await sandbox.adapter.send(
            sandbox.connection,
            OutboundMessage(to=str(LEAD), text="x", buttons=(Button("y" * 65, "Y"),)),
        )
    with pytest.raises(SendError, match="not a Telegram chat id"):
        await sandbox.adapter.send(sandbox.connection, OutboundMessage(to="@lead", text="x"))
    with pytest.raises(SendError, match="template"):
        await sandbox.adapter.send(
            sandbox.connection,
            OutboundMessage(to=str(LEAD), kind=OutboundKind.TEMPLATE, template_name="hello"),
        )


async def test_unknown_token_is_401(sandbox: Sandbox) -> None:
    stranger = dataclasses.replace(
        sandbox.connection, credentials={"token": OTHER_TOKEN, "webhook_secret": "x"}
    )
    with pytest.raises(SendError) as caught:
        await sandbox.adapter.send(stranger, OutboundMessage(to=str(LEAD), text="x"))
    assert (caught.value.code, caught.value.retryable) == (401, False)


async def test_429_is_waited_out_and_sent_exactly_once(sandbox: Sandbox) -> None:
    await sandbox.lead_says("hi")
    await sandbox.http.post(
        "/sandbox/telegram/faults", json={"kind": "rate_limit", "count": 1, "retry_after": 1}
    )
    await sandbox.adapter.send(sandbox.connection, OutboundMessage(to=str(LEAD), text="once"))
    assert [r["text"] for r in await sandbox.sent()] == ["once"]


async def test_429_beyond_the_retry_budget_is_a_retryable_send_error(sandbox: Sandbox) -> None:
    await sandbox.lead_says("hi")
    # Longer than the middleware waits in-process: it goes back to the caller's queue.
    await sandbox.http.post(
        "/sandbox/telegram/faults", json={"kind": "rate_limit", "count": 1, "retry_after": 120}
    )
    with pytest.raises(SendError) as caught:
        await sandbox.adapter.send(sandbox.connection, OutboundMessage(to=str(LEAD), text="x"))
    assert (caught.value.code, caught.value.retryable, caught.value.retry_after) == (
        429,
        True,
        120.0,
    )
    assert await sandbox.sent() == []


async def test_5xx_is_retryable_and_nothing_is_sent(sandbox: Sandbox) -> None:
    await sandbox.lead_says("hi")
    await sandbox.http.post("/sandbox/telegram/faults", json={"kind": "server_error", "count": 1})
    with pytest.raises(SendError) as caught:
        await sandbox.adapter.send(sandbox.connection, OutboundMessage(to=str(LEAD), text="x"))
    assert caught.value.retryable is True and caught.value.code == 500
    # The middleware did not retry a 5xx on its own: nothing reached the chat.
    assert await sandbox.sent() == []
    # The caller's retry then succeeds.
    await sandbox.adapter.send(sandbox.connection, OutboundMessage(to=str(LEAD), text="x"))
    assert len(await sandbox.sent()) == 1


async def test_unreachable_api_is_retryable() -> None:
    adapter = TelegramAdapter(request_timeout=2)
    connection = telegram_connection("http://127.0.0.1:9/sandbox/telegram")
    try:
        with pytest.raises(SendError) as caught:
            await adapter.send(connection, OutboundMessage(to=str(LEAD), text="x"))
    finally:
        await adapter.close()
    assert caught.value.retryable is True and caught.value.code is None


async def test_download_media(sandbox: Sandbox) -> None:
    photo = b"\xff\xd8\xff\xe0lead-photo"
    await sandbox.lead_says("look", photo_base64=base64.b64encode(photo).decode())
    update = sandbox.emulator.updates(str(CONNECTION_ID))[-1]
    (message,) = sandbox.adapter.parse(sandbox.connection, json.dumps(update).encode())
    assert isinstance(message, InboundMessage) and message.media is not None
    assert message.kind is MessageKind.IMAGE and message.text == "look"
    data = await sandbox.adapter.download_media(sandbox.connection, message.media)
    assert data == photo


async def test_register_webhook(sandbox: Sandbox) -> None:
    url = f"{sandbox.base_url}/webhooks/telegram/{CONNECTION_ID}"
    await sandbox.adapter.register_webhook(sandbox.connection, url)
    state = sandbox.emulator.state(str(CONNECTION_ID))
    assert state["webhook"]["url"] == url and state["webhook"]["has_secret"]
    assert set(state["webhook"]["allowed_updates"]) == set(ALLOWED_UPDATES)
    assert "business_message" in ALLOWED_UPDATES

    # The emulator now pushes to our view, which checks the secret and enqueues.
    said = await sandbox.lead_says("over the webhook")
    await sandbox.emulator.drain()
    assert len(sandbox.ingest.enqueued) == 1
    connection_id, body = sandbox.ingest.enqueued[0]
    assert connection_id == CONNECTION_ID
    assert sandbox.adapter.update_id_of(body) == said["update_id"]
    (message,) = sandbox.adapter.parse(sandbox.connection, body)
    assert isinstance(message, InboundMessage) and message.text == "over the webhook"
    assert sandbox.connection.credentials["webhook_secret"] == WEBHOOK_SECRET


async def test_bots_are_cached_per_connection_and_token(sandbox: Sandbox) -> None:
    first = sandbox.adapter.bot_for(sandbox.connection)
    assert sandbox.adapter.bot_for(sandbox.connection) is first
    rotated = dataclasses.replace(
        sandbox.connection, credentials={"token": OTHER_TOKEN, "webhook_secret": "x"}
    )
    second = sandbox.adapter.bot_for(rotated)
    assert second is not first and second.id == 987654321
    with pytest.raises(SendError, match="no bot token"):
        sandbox.adapter.bot_for(dataclasses.replace(sandbox.connection, credentials={}))
    with pytest.raises(SendError, match="malformed"):
        sandbox.adapter.bot_for(
            dataclasses.replace(sandbox.connection, credentials={"token": "not-a-token"})
        )
