"""The ask route (crm/api/ai/memory.py): answers from history with citations."""

from __future__ import annotations

from tests.support.ai import AiService, make_corpus
from tests.support.ai_api import API
from tests.support.workspace import Workspace


async def test_ask_answers_from_history_with_citations_in_both_languages(
    ai: AiService, workspace: Workspace
) -> None:
    corpus = await make_corpus(workspace)
    await ai.run_handlers()
    english = await ai.http.post(
        f"{API}/ai/ask",
        json={"question": "What price did we quote for the Pro plan?"},
        headers=workspace.headers,
    )
    assert english.status_code == 200, english.text
    body = english.json()
    assert body["source"] == "offline"
    assert body["answer"].startswith("From your history:")
    assert "49 EUR" in body["answer"]
    cited = {c["conversation_id"] for c in body["citations"]}
    assert corpus.anna in cited
    assert all(c["message_id"] for c in body["citations"] if c["source"] == "message")
    russian = await ai.http.post(
        f"{API}/ai/ask", json={"question": "Сколько стоит тариф Про?"}, headers=workspace.headers
    )
    assert russian.json()["answer"].startswith("Вот что нашлось")
    assert "4900" in russian.json()["answer"]
    empty = await ai.http.post(f"{API}/ai/ask", json={"question": "  "}, headers=workspace.headers)
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["field"] == "question"
