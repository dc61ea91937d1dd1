"""Telegram channel fixtures: the emulator and our webhook view on one real loopback server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.telegram import Sandbox, telegram_sandbox


@pytest.fixture(autouse=True)
def clean_database() -> None:
    """These tests need no database (overrides the suite's autouse fixture)."""


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """The Telegram emulator (one lead bot registered) and our webhook view, on loopback."""
    async with telegram_sandbox() as running:
        yield running
