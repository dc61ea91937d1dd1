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
    MemoryChunk,
    MessageIntent,
    Stage,
)
from crm.services.pipeline.deals import do_create_deal
from tests.support.ai import AiService, lead_writes, make_corpus, operator_replies
from tests.support.ai_api import API
from tests.support.ai_api import request_draft as _draft
from tests.support.inbox import whatsapp_connection
from tests.support.workspace import Workspace


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
