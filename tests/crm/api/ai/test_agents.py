"""The agents routes (crm/api/ai/agents.py): creation, defaults, validation, roles."""

from __future__ import annotations

from typing import Any

from crm.models import Role
from tests.support.ai import AiService
from tests.support.ai_api import API, make_agent
from tests.support.workspace import Workspace


async def test_agents_are_created_with_their_kinds_defaults_and_validated_by_field(
    ai: AiService, workspace: Workspace
) -> None:
    agent = await make_agent(ai, workspace)
    assert "send_message" in agent["tools"]
    assert agent["guardrails"]["autonomous"] is False  # approval by default
    assert "{agent_name}" in agent["prompt_template"]
    qualifier = await make_agent(ai, workspace, name="Quinn", kind="qualification")
    assert "send_message" not in qualifier["tools"]

    async def refused(body: dict[str, Any], status: int = 422) -> str:
        reply = await ai.http.post(
            f"{API}/agents", json={"name": "X", "kind": "sdr", **body}, headers=workspace.headers
        )
        assert reply.status_code == status, reply.text
        return str(reply.json()["errors"][0]["field"])

    assert await refused({"tools": ["send_message", "rm_rf"]}) == "tools"
    assert await refused({"guardrails": {"max_runs_per_hour": 0}}) == "guardrails.max_runs_per_hour"
    assert await refused({"guardrails": {"autonomus": True}}) == "guardrails.autonomus"
    assert await refused({"triggers": ["every_minute"]}) == "triggers"
    assert await refused({"kind": "closer"}) == "kind"
    duplicate = await ai.http.post(
        f"{API}/agents", json={"name": "Sam", "kind": "sdr"}, headers=workspace.headers
    )
    assert duplicate.status_code == 409

    patched = await ai.http.patch(
        f"{API}/agents/{agent['id']}",
        json={"guardrails": {"max_messages_per_hour": 5}, "triggers": ["lead_message"]},
        headers=workspace.headers,
    )
    assert patched.status_code == 200, patched.text
    guard = patched.json()["guardrails"]
    assert guard["max_messages_per_hour"] == 5
    assert guard["max_runs_per_hour"] == 30  # merged over what was stored, not replaced
    assert patched.json()["triggers"] == ["lead_message"]
    listed = await ai.http.get(f"{API}/agents", headers=workspace.headers)
    assert [a["name"] for a in listed.json()["items"]] == ["Sam", "Quinn"]

    _, rep_headers = await workspace.member(Role.BIDI)
    forbidden = await ai.http.post(
        f"{API}/agents", json={"name": "Rogue", "kind": "sdr"}, headers=rep_headers
    )
    assert forbidden.status_code == 403
