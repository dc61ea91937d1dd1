"""The knowledge base routes (crm/api/ai/knowledge.py) and the memory that follows them."""

from __future__ import annotations

from crm.models import MemoryChunk
from tests.support.ai import AiService
from tests.support.ai_api import API
from tests.support.workspace import Workspace


async def test_memory_follows_edits_and_deletions_of_knowledge(
    ai: AiService, workspace: Workspace
) -> None:
    headers = workspace.headers
    created = await ai.http.post(
        f"{API}/knowledge",
        json={"title": "Refunds", "text": "Refunds within 30 days."},
        headers=headers,
    )
    doc_id = created.json()["id"]
    await ai.run_handlers()
    assert await MemoryChunk.filter(source="knowledge", source_id=doc_id).count() == 1
    await ai.http.patch(
        f"{API}/knowledge/{doc_id}", json={"text": "Refunds within 14 days."}, headers=headers
    )
    await ai.run_handlers()
    chunks = await MemoryChunk.filter(source="knowledge", source_id=doc_id)
    assert [c.text for c in chunks] == ["Refunds\nRefunds within 14 days."]
    await ai.http.delete(f"{API}/knowledge/{doc_id}", headers=headers)
    await ai.run_handlers()
    assert await MemoryChunk.filter(source="knowledge", source_id=doc_id).count() == 0
    answer = await ai.http.post(f"{API}/ai/ask", json={"question": "refunds"}, headers=headers)
    assert answer.json()["citations"] == []
