"""The running service every operator-bot test plays against."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crm.settings import Settings
from tests.support.service import RunningService, running_service


@pytest.fixture
async def service(settings: Settings, tmp_path: Path) -> AsyncIterator[RunningService]:
    """The whole service on a loopback port, with the sandbox emulators and the operator bot."""
    # create_app quiets httpx; tests that read httpx's log lines may run after these.
    httpx_logger = logging.getLogger("httpx")
    level = httpx_logger.level
    try:
        async with running_service(settings, media_dir=tmp_path / "media") as running:
            yield running
    finally:
        httpx_logger.setLevel(level)
