"""WhatsApp channel fixtures: the emulator and our webhook views on one real loopback server."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from channels.whatsapp import WhatsAppAdapter
from channels.whatsapp.webhook import router as webhook_router
from sandbox.whatsapp import WhatsAppEmulator
from tests.support.servers import serve
from tests.support.whatsapp import (
    APP_SECRET,
    CONNECTION_ID,
    PHONE_ID,
    TOKEN,
    Ingest,
    Sandbox,
    whatsapp_connection,
)


@pytest.fixture(autouse=True)
def clean_database() -> None:
    """These tests need no database (overrides the suite's autouse fixture)."""


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """One uvicorn server on loopback serving the emulator and our WhatsApp webhook router."""
    emulator = WhatsAppEmulator(retry_backoff=0.01, rng=random.Random(11))
    ingest = Ingest()
    app = FastAPI()
    app.include_router(emulator.router)
    app.state.webhooks = ingest.runtime()
    app.include_router(webhook_router)
    adapter = WhatsAppAdapter(timeout=10)
    async with serve(app) as base_url:
        connection = whatsapp_connection(f"{base_url}/sandbox/graph")
        ingest.connections[CONNECTION_ID] = connection
        emulator.register_connection(
            str(CONNECTION_ID),
            PHONE_ID,
            TOKEN,
            APP_SECRET,
            f"{base_url}/webhooks/whatsapp/{CONNECTION_ID}",
            waba_id="102290129340398",
        )
        try:
            yield Sandbox(emulator, adapter, connection, ingest, base_url)
        finally:
            await adapter.close()
            await emulator.aclose()
