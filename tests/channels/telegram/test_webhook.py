"""The webhook view: the secret header decides, and only a verified body is enqueued."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from channels.telegram.webhook import SECRET_HEADER
from channels.telegram.webhook import router as webhook_router
from crm.messaging import (
    Button,
    ChannelKind,
    InboundMessage,
    MessageKind,
    OutboundKind,
    OutboundMessage,
)
from tests.support.telegram import (
    CONNECTION_ID,
    LEAD,
    WEBHOOK_SECRET,
    Ingest,
    Sandbox,
    telegram_connection,
)

UPDATE = {
    "update_id": 10,
    "message": {
        "message_id": 1,
        "date": 1_700_000_000,
        "chat": {"id": LEAD, "type": "private", "first_name": "Anna"},
        "from": {"id": LEAD, "is_bot": False, "first_name": "Anna"},
        "text": "hi",
    },
}
BODY = json.dumps(UPDATE).encode()
URL = f"/webhooks/telegram/{CONNECTION_ID}"


@pytest.fixture
def ingest() -> Ingest:
    ingest = Ingest()
    ingest.connections[CONNECTION_ID] = telegram_connection(None)
    whatsapp = dataclasses.replace(telegram_connection(None), id=8, kind=ChannelKind.WHATSAPP)
    ingest.connections[8] = whatsapp
    return ingest


@pytest.fixture
async def client(ingest: Ingest) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.webhooks = ingest.runtime()
    app.include_router(webhook_router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as http:
        yield http


async def test_missing_secret_is_401_and_nothing_enqueued(
    client: httpx.AsyncClient, ingest: Ingest
) -> None:
    response = await client.post(URL, content=BODY)
    assert response.status_code == 401
    assert ingest.enqueued == []


@pytest.mark.parametrize("secret", ["wrong", WEBHOOK_SECRET + "x", "ünïcode"])
async def test_wrong_secret_is_403_and_nothing_enqueued(
    client: httpx.AsyncClient, ingest: Ingest, secret: str
) -> None:
    headers = {SECRET_HEADER: secret.encode()}
    response = await client.post(URL, content=BODY, headers=headers)
    assert response.status_code == 403
    assert ingest.enqueued == []


async def test_unknown_or_other_channel_connection_is_404(
    client: httpx.AsyncClient, ingest: Ingest
) -> None:
    headers = {SECRET_HEADER: WEBHOOK_SECRET}
    assert (
        await client.post("/webhooks/telegram/999", content=BODY, headers=headers)
    ).status_code == 404
    assert (
        await client.post("/webhooks/telegram/8", content=BODY, headers=headers)
    ).status_code == 404
    assert ingest.enqueued == []


async def test_connection_without_a_secret_accepts_nothing(
    client: httpx.AsyncClient, ingest: Ingest
) -> None:
    ingest.connections[CONNECTION_ID] = telegram_connection(None, secret="")
    response = await client.post(URL, content=BODY, headers={SECRET_HEADER: "anything"})
    assert response.status_code == 403
    assert ingest.enqueued == []


async def test_right_secret_enqueues_the_raw_body(
    client: httpx.AsyncClient, ingest: Ingest
) -> None:
    response = await client.post(URL, content=BODY, headers={SECRET_HEADER: WEBHOOK_SECRET})
    assert response.status_code == 200
    assert ingest.enqueued == [(CONNECTION_ID, BODY)]


async def test_button_press_is_answered_in_the_webhook_reply(
    client: httpx.AsyncClient, ingest: Ingest
) -> None:
    press = {
        "update_id": 11,
        "callback_query": {
            "id": "4242",
            "from": UPDATE["message"]["from"],  # type: ignore[index]
            "chat_instance": "c",
            "data": "yes",
        },
    }
    body = json.dumps(press).encode()
    response = await client.post(URL, content=body, headers={SECRET_HEADER: WEBHOOK_SECRET})
    assert response.json() == {"method": "answerCallbackQuery", "callback_query_id": "4242"}
    assert ingest.enqueued == [(CONNECTION_ID, body)]


async def test_end_to_end_through_the_emulator(sandbox: Sandbox) -> None:
    """The emulator pushes real updates to our view over HTTP; the worker side parses them."""
    url = f"{sandbox.base_url}/webhooks/telegram/{CONNECTION_ID}"
    await sandbox.adapter.register_webhook(sandbox.connection, url)
    await sandbox.lead_says("hi")
    await sandbox.adapter.send(
        sandbox.connection,
        OutboundMessage(
            to=str(LEAD),
            kind=OutboundKind.BUTTONS,
            text="Talk now?",
            buttons=(Button("yes", "Yes"), Button("no", "No")),
        ),
    )
    await sandbox.http.post("/sandbox/telegram/delivery", json={"duplicates": 1})
    await sandbox.lead_says("", callback_data="yes")
    await sandbox.emulator.drain()

    bodies = [body for _, body in sandbox.ingest.enqueued]
    # Every push arrives (duplicates included); dedupe is update_id's job downstream.
    ids = [sandbox.adapter.update_id_of(body) for body in bodies]
    assert len(ids) == 3 and len(set(ids)) == 2
    parsed = [item for body in bodies for item in sandbox.adapter.parse(sandbox.connection, body)]
    assert [(m.kind, m.text) for m in parsed if isinstance(m, InboundMessage)] == [
        (MessageKind.TEXT, "hi"),
        (MessageKind.BUTTON, "Yes"),
        (MessageKind.BUTTON, "Yes"),
    ]
    # Our webhook reply answered the button press: the lead's spinner stops.
    answers = sandbox.emulator.callback_answers(str(CONNECTION_ID))
    assert [a["data"] for a in answers] == ["yes"]
