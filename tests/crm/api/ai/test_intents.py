"""The intent routes (crm/api/ai/intents.py): classify and correct."""

from __future__ import annotations

from tests.support.ai import AiService, lead_writes, make_corpus
from tests.support.ai_api import API
from tests.support.workspace import Workspace


async def test_classify_api_and_corrections_teach_the_workspace(
    ai: AiService, workspace: Workspace
) -> None:
    headers = workspace.headers
    for text, intent in [
        ("I'm out of the office until Monday", "out_of_office"),
        ("Не интересно, спасибо", "not_interested"),
        ("Давайте созвонимся в четверг", "meeting_request"),
    ]:
        reply = await ai.http.post(f"{API}/ai/classify", json={"text": text}, headers=headers)
        assert reply.status_code == 200, reply.text
        assert reply.json()["intent"] == intent, text
        assert 0 < reply.json()["confidence"] <= 1
    corpus = await make_corpus(workspace)
    _, odd = await lead_writes(
        corpus.connection, "wamid.k1", "4915100000301", "Kim", "bananas bananas bananas"
    )
    await ai.run_handlers()
    fixed = await ai.http.put(
        f"{API}/messages/{odd}/intent", json={"intent": "wrong_person"}, headers=headers
    )
    assert fixed.status_code == 200, fixed.text
    again = await ai.http.post(
        f"{API}/ai/classify", json={"text": "bananas bananas bananas"}, headers=headers
    )
    assert again.json()["intent"] == "wrong_person"
    bad = await ai.http.put(
        f"{API}/messages/{odd}/intent", json={"intent": "maybe"}, headers=headers
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "intent"
