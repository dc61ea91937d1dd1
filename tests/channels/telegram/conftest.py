"""Telegram channel fixtures: the emulator and our webhook view on one real loopback server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from channels.telegram import TelegramAdapter
from channels.telegram.webhook import router as webhook_router
from sandbox.telegram import TelegramEmulator
from telegram_transport.limits import RateLimits
from tests.support.servers import serve
from tests.support.telegram import CONNECTION_ID, TOKEN, Ingest, Sandbox, telegram_connection


@pytest.fixture(autouse=True)
def clean_database() -> None:
    """These tests need no database (overrides the suite's autouse fixture)."""


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """The emulator (one lead bot registered) and our webhook view, served on loopback."""
    emulator = TelegramEmulator(webhook_retry_delays=(0.01, 0.02))
    ingest = Ingest()
    app = FastAPI()
    app.include_router(emulator.router)
    app.state.webhooks = ingest.runtime()
    app.include_router(webhook_router)
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
