"""Telegram channel fixtures: the emulator and our webhook view on one real loopback server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from channels.sandbox.telegram import TelegramEmulator
from channels.telegram import TelegramAdapter, build_router
from crm.messaging import ConnectionInfo
from telegram_transport.limits import RateLimits
from tests.channels.servers import serve
from tests.channels.telegram.support import (
    CONNECTION_ID,
    LEAD,
    TOKEN,
    Ingest,
    telegram_connection,
)


@pytest.fixture(autouse=True)
def clean_database() -> None:
    """These tests need no database (overrides the suite's autouse fixture)."""


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


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """The emulator (one lead bot registered) and our webhook view, served on loopback."""
    emulator = TelegramEmulator(webhook_retry_delays=(0.01, 0.02))
    ingest = Ingest()
    app = FastAPI()
    app.include_router(emulator.router)
    app.include_router(build_router(ingest.runtime()))
    # Short windows keep the suite fast; test_limits checks the real ones.
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
