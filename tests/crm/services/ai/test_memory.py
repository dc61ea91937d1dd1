"""Memory storage: keyword search (prefixes, whole numbers, no stop words, one tenant), chunks."""

from __future__ import annotations

from crm.models import MemoryChunk, MemorySource
from crm.services.ai.memory import SourceText, do_store_chunks, keyword_search, query_terms
from tests.support.workspace import Workspace


def test_stop_words_leave_the_words_that_say_what_the_question_is_about() -> None:
    assert query_terms("Hi, what is the price of the Pro plan?") == ["price", "pro", "plan"]
    assert query_terms("Здравствуйте, сколько стоит тариф Про?") == [
        "сколь",
        "стоит",
        "тариф",
        "про",
    ]


def test_a_query_of_stop_words_only_keeps_them() -> None:
    assert query_terms("Hello there") == ["hello", "there"]


def test_long_words_become_prefixes_so_inflections_match() -> None:
    assert query_terms("интеграции и цены") == ["интеграц", "цены"]


def test_numbers_stay_whole() -> None:
    assert query_terms("invoice 174420, 15 seats") == ["invoi", "174420", "15", "seats"]


async def test_a_number_finds_the_message_with_that_number_not_one_that_starts_alike(
    workspace: Workspace, other_workspace: Workspace
) -> None:
    texts = ["Invoice 174420 is paid", "Invoice 1744 is overdue", "Invoice 17442 was sent"]
    ids = []
    for source_id, text in enumerate(texts, start=1):
        source = SourceText(workspace.tenant_id, MemorySource.NOTE, source_id, text)
        stored, _ = await do_store_chunks(source, [(text, b"")], "test")
        ids.append(stored[0].id)
    other = SourceText(other_workspace.tenant_id, MemorySource.NOTE, 1, texts[0])
    await do_store_chunks(other, [(texts[0], b"")], "test")

    found = await keyword_search(workspace.tenant_id, "was 174420 paid?")
    assert [chunk_id for chunk_id, _ in found] == [ids[0]]
    # Words still match by prefix: "invoices" finds every invoice of this workspace only.
    found = await keyword_search(workspace.tenant_id, "invoices")
    assert sorted(chunk_id for chunk_id, _ in found) == sorted(ids)


async def test_a_stored_chunk_gains_its_multilingual_vector_in_place(workspace: Workspace) -> None:
    """A message stored before multilingual vectors existed keeps its id (and index entry)."""
    text = "Почём тариф Про?"
    source = SourceText(workspace.tenant_id, MemorySource.MESSAGE, 7, text)
    first, _ = await do_store_chunks(source, [(text, b"v1")], "test")
    again, removed = await do_store_chunks(source, [(text, b"v1")], "test", [b"meaning"])
    assert again == [] and removed == []
    chunk = await MemoryChunk.get(id=first[0].id)
    assert chunk.multilingual_vector == b"meaning"
