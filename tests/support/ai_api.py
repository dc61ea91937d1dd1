"""Calls of the AI REST API that tests of the agents and of the AI routes share."""

from __future__ import annotations

from typing import Any

from tests.support.ai import AiService
from tests.support.workspace import Workspace

API = "/api/v1"


async def make_agent(ai: AiService, ws: Workspace, **body: Any) -> dict[str, Any]:
    """Create an agent (Sam, an SDR, unless ``body`` says otherwise) and return it."""
    reply = await ai.http.post(
        f"{API}/agents", json={"name": "Sam", "kind": "sdr", **body}, headers=ws.headers
    )
    assert reply.status_code == 201, reply.text
    return reply.json()


async def request_draft(ai: AiService, ws: Workspace, conversation_id: int) -> dict[str, Any]:
    """Ask for a reply draft of a conversation and return it."""
    reply = await ai.http.post(f"{API}/conversations/{conversation_id}/drafts", headers=ws.headers)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())
