"""The AI with no model configured: offline drafts, answers with citations, intents, rules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from crm.models import (
    AiCall,
    Consent,
    Contact,
    Deal,
    DraftStatus,
    MemoryChunk,
    Message,
    MessageIntent,
    Stage,
)
from crm.services.pipeline.deals import do_create_deal
from tests.support.ai import AiService, lead_writes, make_corpus, operator_replies
from tests.support.inbox import whatsapp_connection
from tests.support.workspace import Workspace

API = "/api/v1"


@contextmanager
def encodings(encoder: Any) -> Iterator[list[list[str]]]:
    """The texts each ``aencode`` call of ``encoder`` gets while the block runs."""
    encoded: list[list[str]] = []
    original = encoder.aencode

    async def recording(texts: Any) -> Any:
        encoded.append(list(texts))
        return await original(texts)

    encoder.aencode = recording
    try:
        yield encoded
    finally:
        encoder.aencode = original


async def _draft(ai: AiService, ws: Workspace, conversation_id: int) -> dict[str, Any]:
    reply = await ai.http.post(f"{API}/conversations/{conversation_id}/drafts", headers=ws.headers)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


async def test_offline_draft_reuses_the_operators_earlier_answer_with_this_leads_name(
    ai: AiService, workspace: Workspace
) -> None:
    corpus = await make_corpus(workspace)
    boris, _ = await lead_writes(
        corpus.connection,
        "wamid.n1",
        "4915100000201",
        "Boris Becker",
        "What's the price of the Pro plan?",
    )
    await ai.run_handlers()
    draft = await _draft(ai, workspace, boris)
    assert draft["source"] == "offline"
    assert draft["status"] == "pending"
    assert draft["text"] == "Hi Boris, the Pro plan is 49 EUR per seat per month, billed annually."
    assert "similar question" in draft["rationale"]
    assert draft["citations"][0]["conversation_id"] == corpus.anna
    assert await AiCall.all().count() == 0


async def test_a_draft_reuses_the_vector_the_worker_stored_instead_of_encoding_again(
    ai: AiService, workspace: Workspace
) -> None:
    corpus = await make_corpus(workspace)
    boris, _ = await lead_writes(
        corpus.connection, "wamid.v1", "4915100000202", "Boris", "What's the price of the Pro plan?"
    )
    await ai.run_handlers()  # the worker embeds Boris's message as it arrives
    with encodings(ai.assistant.memory.embedder) as encoded:
        draft = await _draft(ai, workspace, boris)
    assert draft["text"].startswith("Hi Boris, the Pro plan is 49 EUR")
    assert encoded == []


async def test_offline_draft_in_russian(ai: AiService, workspace: Workspace) -> None:
    corpus = await make_corpus(workspace)
    ivan, _ = await lead_writes(
        corpus.connection,
        "wamid.n2",
        "79160000202",
        "Иван Петров",
        "Подскажите, сколько стоит тариф Про?",
    )
    await ai.run_handlers()
    draft = await _draft(ai, workspace, ivan)
    assert draft["text"] == "Иван, тариф Про стоит 4900 рублей в месяц за пользователя."
    assert draft["citations"][0]["conversation_id"] == corpus.maria
    assert "Офлайн" in draft["rationale"]


async def test_offline_draft_quotes_the_knowledge_base_when_nothing_was_answered(
    ai: AiService, workspace: Workspace
) -> None:
    corpus = await make_corpus(workspace)
    doc = await ai.http.post(
        f"{API}/knowledge",
        json={
            "title": "Security",
            "text": "All customer data is stored in Frankfurt and encrypted at rest. "
            "We are ISO 27001 certified.",
        },
        headers=workspace.headers,
    )
    assert doc.status_code == 201, doc.text
    dora, _ = await lead_writes(
        corpus.connection,
        "wamid.n3",
        "4915100000203",
        "Dora",
        "Where is our data stored, is it encrypted?",
    )
    await ai.run_handlers()
    draft = await _draft(ai, workspace, dora)
    assert draft["text"].startswith("Hi Dora,")
    assert "Frankfurt" in draft["text"]
    assert draft["citations"][0]["source"] == "knowledge"


async def test_nothing_similar_gives_a_plain_acknowledgement(
    ai: AiService, workspace: Workspace
) -> None:
    corpus = await make_corpus(workspace)
    eve, _ = await lead_writes(
        corpus.connection, "wamid.n4", "4915100000204", "Eve", "Do you sponsor football clubs?"
    )
    await ai.run_handlers()
    draft = await _draft(ai, workspace, eve)
    assert draft["text"].startswith("Hi Eve, thanks for your message")
    assert "nothing similar" in draft["rationale"]


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


async def test_lead_messages_are_classified_moving_the_deal_and_scoring_the_lead(
    ai: AiService, workspace: Workspace
) -> None:
    corpus = await make_corpus(workspace)
    anna = await Contact.get(name="Anna Schmidt")
    cold = await Stage.get(name="Cold", pipeline__tenant_id=workspace.tenant_id)
    deal = await do_create_deal(
        workspace.actor, title="Acme pilot", contact_id=anna.id, stage_id=cold.id
    )
    _, meeting = await lead_writes(
        corpus.connection,
        "wamid.m1",
        "4915100000101",
        "Anna Schmidt",
        "Could we set up a call next Tuesday at 10?",
    )
    await ai.run_handlers()
    intent = await MessageIntent.get(message_id=meeting)
    assert intent.intent == "meeting_request"
    assert intent.source == "offline"
    moved = await Deal.get(id=deal.id).prefetch_related("stage")
    assert moved.stage.name == "Meeting"  # Cold -> Replied on the reply, then the rule
    assert (await Contact.get(id=anna.id)).score >= 70
    await ai.run_handlers()  # a redelivery changes nothing
    assert await MessageIntent.filter(message_id=meeting).count() == 1
    _, stop = await lead_writes(
        corpus.connection,
        "wamid.m2",
        "4915100000101",
        "Anna Schmidt",
        "Please remove me from your mailing list",
    )
    await ai.run_handlers()
    assert (await MessageIntent.get(message_id=stop)).intent == "unsubscribe"
    assert (await Contact.get(id=anna.id)).consent is Consent.OPTED_OUT


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


async def test_a_rebuilt_index_finds_what_another_process_stored(
    ai: AiService, workspace: Workspace, settings: Any
) -> None:
    from agents.memory import Memory
    from crm.wiring import shared_embedder

    corpus = await make_corpus(workspace)
    await ai.run_handlers()
    await operator_replies(workspace, corpus.anna, "Our Pro plan includes priority support.")
    await ai.run_handlers()
    # A second process with its own, empty index directory: it rebuilds from the database.
    other = Memory(shared_embedder(), settings.ai_index_dir / "elsewhere")
    found = await other.search(workspace.tenant_id, "priority support", 3)
    assert found and "priority support" in found[0].text


async def test_the_threads_own_earlier_answer_comes_before_another_conversations(
    ai: AiService, workspace: Workspace
) -> None:
    corpus = await make_corpus(workspace)  # Anna was told 49 EUR in her conversation
    boris, _ = await lead_writes(
        corpus.connection, "wamid.t1", "4915100000301", "Boris", "What's the price of the Pro plan?"
    )
    await operator_replies(
        workspace, boris, "Boris, for you Pro is 39 EUR per seat with the partner discount."
    )
    await lead_writes(
        corpus.connection,
        "wamid.t2",
        "4915100000301",
        "Boris",
        "Sorry, how much was the Pro plan again?",
    )
    await ai.run_handlers()
    draft = await _draft(ai, workspace, boris)
    assert draft["text"] == "Boris, for you Pro is 39 EUR per seat with the partner discount."
    assert draft["citations"][0]["conversation_id"] == boris
    assert "earlier in this conversation" in draft["rationale"]


async def test_regenerate_offers_the_next_best_answer_then_says_there_is_no_other(
    ai: AiService, workspace: Workspace
) -> None:
    corpus = await make_corpus(workspace)
    carl, _ = await lead_writes(
        corpus.connection, "wamid.r1", "4915100000302", "Carl Weber", "What does the Pro plan cost?"
    )
    await operator_replies(workspace, carl, "Carl, Pro costs 490 EUR per seat a year.")
    dora, _ = await lead_writes(
        corpus.connection, "wamid.r2", "4915100000303", "Dora", "How much is the Pro plan?"
    )
    await ai.run_handlers()
    headers = workspace.headers
    first = await _draft(ai, workspace, dora)
    seen = [first["text"]]
    for _ in range(2):
        reply = await ai.http.post(f"{API}/drafts/{first['id']}/regenerate", headers=headers)
        assert reply.status_code == 201, reply.text
        first = reply.json()
        seen.append(first["text"])
    # The two past answers about the price, best first, each once, with Dora's name.
    assert {seen[0], seen[1]} == {
        "Hi Dora, the Pro plan is 49 EUR per seat per month, billed annually.",
        "Dora, Pro costs 490 EUR per seat a year.",
    }
    # Then no other suggestion: a plain acknowledgement that says so.
    assert seen[2].startswith("Hi Dora, thanks for your message")
    assert "no other suggestion" in first["rationale"]
    again = await ai.http.post(f"{API}/drafts/{first['id']}/regenerate", headers=headers)
    assert again.json()["text"] == seen[2]
    assert "no other suggestion" in again.json()["rationale"]


async def test_a_russian_paraphrase_in_other_words_reuses_the_right_answer(
    ai: AiService, workspace: Workspace
) -> None:
    """A smartphone is a phone: the multilingual model knows it, spelling does not (MiniLM
    and trigrams alone picked the WhatsApp answer, whose question shares "работаете")."""
    wa = await whatsapp_connection(workspace)
    history = [
        ("Ольга Смирнова", "Вы работаете с WhatsApp?",
         "Ольга, да, WhatsApp подключается за пять минут."),
        ("Сергей Козлов", "Можно ли пользоваться с телефона?",
         "Сергей, всё работает в Telegram на телефоне, приложение не нужно."),
        ("Елена Орлова", "Можно ли у вас оплатить банковским переводом?",
         "Елена, да: выставим счёт, оплата банковским переводом."),
    ]  # fmt: skip
    conversations = []
    for number, (name, question, answer) in enumerate(history):
        conversation, _ = await lead_writes(
            wa, f"wamid.ru{number}", f"7916000030{number}", name, question
        )
        await operator_replies(workspace, conversation, answer)
        conversations.append(conversation)
    ivan, _ = await lead_writes(
        wa, "wamid.ru9", "79160000309", "Иван Петров", "На смартфоне это будет работать?"
    )
    await ai.run_handlers()
    draft = await _draft(ai, workspace, ivan)
    assert draft["text"] == "Иван, всё работает в Telegram на телефоне, приложение не нужно."
    assert draft["citations"][0]["conversation_id"] == conversations[1]


async def test_workers_store_multilingual_vectors_of_russian_messages_for_drafts(
    ai: AiService, workspace: Workspace
) -> None:
    """A Russian draft reads the vectors workers stored instead of encoding at tap time."""
    corpus = await make_corpus(workspace)
    ivan, ivan_message = await lead_writes(
        corpus.connection, "wamid.m1", "79160000203", "Иван", "Почём тариф Про?"
    )
    await ai.run_handlers()
    russian = await MemoryChunk.get(source="message", source_id=ivan_message)
    english = await MemoryChunk.get(source="message", source_id=corpus.anna_question)
    assert russian.multilingual_vector and english.multilingual_vector is None
    with encodings(ai.assistant.drafter.multilingual) as encoded:
        draft = await _draft(ai, workspace, ivan)
    assert draft["text"] == "Иван, тариф Про стоит 4900 рублей в месяц за пользователя."
    assert encoded == []
