"""The AI settings routes (crm/api/ai/settings.py): the key kept secret, fields validated."""

from __future__ import annotations

from crm.models import Event
from sandbox.model import SandboxModel
from tests.support.ai import MODEL_KEY as KEY
from tests.support.ai import AiService, configure_model
from tests.support.ai_api import API
from tests.support.workspace import Workspace


async def test_settings_keep_the_key_secret_and_validate_fields(
    ai: AiService, workspace: Workspace, model_base: tuple[str, SandboxModel]
) -> None:
    await configure_model(ai, workspace, model_base[0])
    shown = await ai.http.get(f"{API}/ai/settings", headers=workspace.headers)
    assert shown.json()["model"] == "openai/sandbox-chat"
    assert KEY not in shown.text
    audit = await Event.filter(type="ai.settings_updated").first()
    assert audit is not None and KEY not in str(audit.after)
    bad = await ai.http.patch(
        f"{API}/ai/settings", json={"api_base": "ftp://x"}, headers=workspace.headers
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "api_base"
    rules = await ai.http.patch(
        f"{API}/ai/settings", json={"intent_rules": {"bored": "Lost"}}, headers=workspace.headers
    )
    assert rules.status_code == 422
    assert rules.json()["errors"][0]["field"] == "intent_rules"
