"""Fixtures of the AI tests: the service app with its assistant, the sandbox model on loopback.

Conftest modules import them (tests/agents, tests/crm/api/ai).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from agents.assistant import Assistant
from crm.app import create_app
from crm.settings import Settings
from crm.tasks.handlers import HandlerRegistry
from sandbox.model import SandboxModel, create_model_app
from tests.support.ai import AiService
from tests.support.servers import serve


@pytest.fixture
async def ai(settings: Settings) -> AsyncIterator[AiService]:
    """The service's app and assistant; the AI handlers run when the test says so."""
    app = create_app(settings, manage_db=False, run_backbone=False)
    assistant: Assistant = app.state.assistant
    handlers = HandlerRegistry()
    assistant.install(handlers)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as http:
        yield AiService(app, assistant, http, handlers)


@pytest.fixture
async def model_base() -> AsyncIterator[tuple[str, SandboxModel]]:
    """The OpenAI-compatible sandbox model on a loopback port."""
    model = SandboxModel()
    async with serve(create_model_app(model)) as base:
        yield f"{base}/sandbox/llm/v1", model
