"""The draft routes (crm/api/ai/drafts.py): send, edit, reject, regenerate, access."""

from __future__ import annotations

from crm.models import DraftStatus, Message
from tests.support.ai import AiService, make_corpus
from tests.support.ai_api import API
from tests.support.ai_api import request_draft as _draft
from tests.support.workspace import Workspace


async def test_send_edit_reject_and_regenerate_are_recorded_and_reported(
    ai: AiService, workspace: Workspace
) -> None:
    corpus = await make_corpus(workspace)
    await ai.run_handlers()
    headers = workspace.headers
    first = await _draft(ai, workspace, corpus.anna)
    sent = await ai.http.post(f"{API}/drafts/{first['id']}/send", json={}, headers=headers)
    assert sent.json()["status"] == "sent"
    message = await Message.get(id=sent.json()["sent_message_id"])
    assert message.text == first["text"]
    again = await ai.http.post(f"{API}/drafts/{first['id']}/send", json={}, headers=headers)
    assert again.status_code == 409  # decided once, sent once
    second = await _draft(ai, workspace, corpus.anna)
    edited = await ai.http.post(
        f"{API}/drafts/{second['id']}/send", json={"text": "Corrected text"}, headers=headers
    )
    assert edited.json()["status"] == "edited"
    assert (await Message.get(id=edited.json()["sent_message_id"])).text == "Corrected text"
    third = await _draft(ai, workspace, corpus.maria)
    regenerated = await ai.http.post(f"{API}/drafts/{third['id']}/regenerate", headers=headers)
    assert regenerated.status_code == 201
    old = await ai.http.get(f"{API}/drafts/{third['id']}", headers=headers)
    assert old.json()["status"] == DraftStatus.REGENERATED.value
    rejected = await ai.http.post(
        f"{API}/drafts/{regenerated.json()['id']}/reject", headers=headers
    )
    assert rejected.json()["status"] == "rejected"
    metrics = (await ai.http.get(f"{API}/ai/metrics", headers=headers)).json()
    assert metrics["drafts"]["sent"] == 1
    assert metrics["drafts"]["edited"] == 1
    assert metrics["drafts"]["rejected"] == 1
    assert metrics["drafts"]["regenerated"] == 1
    assert metrics["rates"] == {"acceptance": 0.3333, "edit": 0.3333, "rejection": 0.3333}


async def test_a_viewer_cannot_draft_and_other_tenants_see_nothing(
    ai: AiService, workspace: Workspace, other_workspace: Workspace
) -> None:
    from crm.models import Role

    corpus = await make_corpus(workspace)
    await ai.run_handlers()
    _, viewer = await workspace.member(Role.VIEWER)
    refused = await ai.http.post(f"{API}/conversations/{corpus.anna}/drafts", headers=viewer)
    assert refused.status_code == 403
    foreign = await ai.http.post(
        f"{API}/conversations/{corpus.anna}/drafts", headers=other_workspace.headers
    )
    assert foreign.status_code == 404
    answer = await ai.http.post(
        f"{API}/ai/ask", json={"question": "Pro plan price"}, headers=other_workspace.headers
    )
    assert answer.status_code == 200
    assert answer.json()["citations"] == []
