"""Telegram channel tests' pieces: ids, a connection, a recording ingest, the sandbox wiring."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from fastapi import FastAPI

from channels.base import WebhookRuntime
from channels.telegram import TelegramAdapter
from channels.telegram.webhook import router as webhook_router
from crm.messaging import ChannelKind, ConnectionInfo
from sandbox.telegram import TelegramEmulator
from telegram_transport.limits import RateLimits
from tests.support.servers import serve

TOKEN = "123456789:AAE-sandbox_lead-token-0123456789abcdef"
OTHER_TOKEN = "987654321:AAF-another_bot-token-0123456789abcdef"
WEBHOOK_SECRET = "lead-bot_webhook-secret"
CONNECTION_ID = 7
LEAD = 555001
OTHER_LEAD = 555002
REP = 777001


def telegram_connection(
    api_base: str | None,
    *,
    connection_id: int = CONNECTION_ID,
    token: str = TOKEN,
    secret: str = WEBHOOK_SECRET,
) -> ConnectionInfo:
    """A Telegram lead-bot connection as the adapter sees it."""
    settings = {"api_base": api_base} if api_base else {}
    return ConnectionInfo(
        id=connection_id,
        tenant_id=1,
        kind=ChannelKind.TELEGRAM,
        settings=settings,
        credentials={"token": token, "webhook_secret": secret},
        sandbox=True,
    )


def sandbox_bot(base_url: str, token: str = TOKEN) -> Bot:
    """A plain aiogram Bot talking to the emulator served at ``base_url``."""
    api = TelegramAPIServer.from_base(f"{base_url}/sandbox/telegram")
    return Bot(token=token, session=AiohttpSession(api=api))


@dataclass
class Ingest:
    """A ``WebhookRuntime`` that records what the webhook view enqueues."""

    connections: dict[int, ConnectionInfo] = field(default_factory=dict)
    enqueued: list[tuple[int, bytes]] = field(default_factory=list)

    def runtime(self) -> WebhookRuntime:
        """The runtime to build the webhook router with."""

        async def load(connection_id: int) -> ConnectionInfo | None:
            return self.connections.get(connection_id)

        async def enqueue(connection_id: int, body: bytes) -> None:
            self.enqueued.append((connection_id, body))

        return WebhookRuntime(load_connection=load, enqueue_ingest=enqueue)


@dataclass
class Sandbox:
    """Everything a lead-channel test touches."""

    emulator: TelegramEmulator
    base_url: str
    http: httpx.AsyncClient
    adapter: TelegramAdapter
    connection: ConnectionInfo
    ingest: Ingest

    async def lead_says(self, text: str, **extra: Any) -> dict[str, Any]:
        """Play the lead through the control API; returns its answer."""
        payload = {"connection_id": str(CONNECTION_ID), "from_user_id": LEAD, "text": text}
        payload.update(extra)
        response = await self.http.post("/sandbox/telegram/updates", json=payload)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def sent(self, chat_id: int = LEAD) -> list[dict[str, Any]]:
        """What the bot sent to ``chat_id``, as the control API shows it."""
        response = await self.http.get(
            "/sandbox/telegram/sent",
            params={"connection_id": str(CONNECTION_ID), "chat_id": chat_id},
        )
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()
        return rows


@contextlib.asynccontextmanager
async def telegram_sandbox() -> AsyncIterator[Sandbox]:
    """The emulator (one lead bot registered) and our webhook view, served on loopback."""
    emulator = TelegramEmulator(webhook_retry_delays=(0.01, 0.02))
    ingest = Ingest()
    app = FastAPI()
    app.include_router(emulator.router)
    app.state.webhooks = ingest.runtime()
    app.include_router(webhook_router)
    # Short windows keep the suite fast; tests/telegram_transport/test_limits checks the real ones.
    adapter = TelegramAdapter(
        limits=RateLimits(bot_window=0.01, private_window=0.01, group_window=0.01)
    )
    async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        emulator.register_bot(str(CONNECTION_ID), TOKEN, "acme_leads_bot")
        connection = telegram_connection(f"{base_url}/sandbox/telegram")
        ingest.connections[CONNECTION_ID] = connection
        try:
            yield Sandbox(emulator, base_url, http, adapter, connection, ingest)
        finally:
            await adapter.close()
            await emulator.aclose()
