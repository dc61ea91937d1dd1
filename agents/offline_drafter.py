"""The offline drafter: reply drafts from the workspace's own history, no model.

It finds the earlier lead message most like the one being answered, takes the reply an
operator sent after it, and puts this lead's name where the other lead's stood. Failing that it
quotes the knowledge base, and failing that it writes a plain acknowledgement, saying so in the
rationale every time. How well a past question fits is measured in agents.draft_scoring.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agents.citations import citation, excerpt
from agents.draft_context import DraftContext
from agents.draft_scoring import chunk_fit
from agents.embeddings import vector_from_bytes
from agents.languages import detect_language
from agents.memory import Memory, Passage
from agents.multilingual import MULTILINGUAL_LANGUAGES, MultilingualEncoder
from crm.models import Direction, DraftSource, MemoryChunk, MemorySource
from crm.services.ai import memory as store
from crm.services.ai.drafts import ProposedDraft

# Below this cosine similarity an earlier lead message is not "the same question".
SIMILAR_ENOUGH = 0.55
# Keyword hits count when the dense score is unknown (Russian): at least this share of terms.
KEYWORD_SHARE = 0.5
# Past messages looked at per offline draft (both directions), and past questions whose reply
# is fetched, best first.
CANDIDATE_DEPTH = 24
REPLIES_LOOKED_UP = 10
# A past question fitting at least this well is the same question; below it nothing is reused.
REUSE_BAR = {"en": 0.35, "ru": 0.3}
# How much the answer's own fit to the question adds to its question's.
ANSWER_SHARE = 0.3
# An answer in another language than the question's is kept, but after those in its own.
OTHER_LANGUAGE = 0.7


def first_name(name: str) -> str:
    """The first word of a name (``Anna Schmidt`` -> ``Anna``), or empty."""
    parts = name.strip().split()
    return parts[0] if parts else ""


def swap_name(text: str, old: str, new: str) -> str:
    """Put ``new`` where the whole word ``old`` stands; drop it (and a comma) without ``new``."""
    if not old or old.casefold() == new.casefold():
        return text
    pattern = re.compile(rf"(?<!\w){re.escape(old)}(?!\w)", re.IGNORECASE)
    if new:
        return pattern.sub(new, text)
    text = re.sub(rf",?\s*(?<!\w){re.escape(old)}(?!\w)", "", text, flags=re.IGNORECASE)
    return re.sub(r"\s+([,.!?])", r"\1", text).strip()


def greeting(language: str, name: str) -> str:
    """Hi Anna, / Здравствуйте, Анна!"""
    if language == "ru":
        return f"Здравствуйте, {name}!" if name else "Здравствуйте!"
    return f"Hi {name}," if name else "Hi,"


@dataclass(frozen=True)
class Candidate:
    """A reply the offline drafter could propose, with how well it fits the question."""

    text: str
    rationale: str
    passage: Passage
    score: float
    in_thread: bool = False


def _same_text(text: str) -> str:
    """The form under which two drafts count as the same suggestion."""
    return " ".join(text.casefold().split())


@dataclass(frozen=True)
class _Pair:
    """An earlier lead question, the reply it got, and how well they fit the new question."""

    question: Passage
    answer: MemoryChunk
    score: float
    in_thread: bool


class OfflineDrafter:
    """Drafts replies from the operators' own earlier answers and the knowledge base."""

    def __init__(self, memory: Memory, multilingual: MultilingualEncoder | None = None) -> None:
        self.memory = memory
        self.multilingual = multilingual

    async def offline_draft(self, context: DraftContext) -> ProposedDraft:
        """A draft from the operators' own earlier replies or the knowledge base, no model.

        The best candidate not yet offered for this lead message is proposed (Regenerate
        steps down the list); after the last one comes the plain acknowledgement, saying
        there is no other suggestion (no cycling back: the operator has seen them all).
        """
        question = context.question
        language = detect_language(question) if question.strip() else "en"
        name = first_name(context.contact.name)
        seen = {_same_text(text) for text in context.offered}
        candidates: list[Candidate] = []
        if question.strip():
            # The knowledge base is searched only when no past answer is left to propose.
            for find in (self._reused, self._quoted):
                for candidate in await find(context):
                    candidates.append(candidate)
                    if _same_text(candidate.text) not in seen:
                        return ProposedDraft(
                            text=candidate.text,
                            source=DraftSource.OFFLINE,
                            rationale=candidate.rationale,
                            citations=(citation(candidate.passage),),
                        )
        if language == "ru":
            text = (
                f"{greeting('ru', name)} Спасибо за сообщение, уточню детали и скоро вернусь "
                "с ответом."
            )
            why = (
                "Офлайн-черновик: в истории и базе знаний нет ничего похожего, это вежливое "
                "подтверждение."
            )
            if candidates:
                why = (
                    "Офлайн-черновик: других вариантов нет, все похожие ответы уже были "
                    "предложены; это вежливое подтверждение."
                )
        else:
            text = (
                f"{greeting('en', name)} thanks for your message! Let me check the details and "
                "get back to you shortly."
            )
            why = (
                "Offline drafter: nothing similar in your history or knowledge base, so this is "
                "a polite acknowledgement."
            )
            if candidates:
                why = (
                    "Offline drafter: no other suggestion, every similar past answer was offered "
                    "already; this is a polite acknowledgement."
                )
        return ProposedDraft(text=text, source=DraftSource.OFFLINE, rationale=why)

    async def candidates(self, context: DraftContext) -> list[Candidate]:
        """What the offline drafter could propose, best first.

        The thread's own earlier answers to a similar question come first (the lead asks
        again), then other conversations' answers by how well question and answer fit, then
        the knowledge base. Equal texts are proposed once.
        """
        found = [*await self._reused(context), *await self._quoted(context)]
        unique: list[Candidate] = []
        texts: set[str] = set()
        for candidate in found:
            key = _same_text(candidate.text)
            if key not in texts:
                texts.add(key)
                unique.append(candidate)
        return unique

    async def _reused(self, context: DraftContext) -> list[Candidate]:
        """Past answers to similar questions, adapted to this lead, best first."""
        language = detect_language(context.question)
        name = first_name(context.contact.name)
        pairs = await self._answered(context)
        names = await store.contact_names(
            [p.question.chunk.contact_id for p in pairs if p.question.chunk.contact_id]
        )
        found: list[Candidate] = []
        for pair in pairs:
            other = first_name(names.get(pair.question.chunk.contact_id or 0, ""))
            text = swap_name(pair.answer.text, other, name)
            shown = excerpt(pair.question.text, 120)
            if pair.in_thread:
                why = (
                    f"Офлайн-черновик: в этом диалоге на похожий вопрос («{shown}») уже "
                    "ответили так."
                    if language == "ru"
                    else f'Offline drafter: this lead asked a similar question ("{shown}") '
                    "earlier in this conversation and was answered like this."
                )
            elif language == "ru":
                why = f"Офлайн-черновик: похожий вопрос («{shown}») уже получил этот ответ."
            else:
                why = (
                    f'Offline drafter: a similar question ("{shown}") was answered like this '
                    "before."
                )
            if other and other.casefold() != name.casefold():
                why += f" ({other} → {name or '—'})"
            found.append(Candidate(text, why, pair.question, pair.score, pair.in_thread))
        return found

    async def _quoted(self, context: DraftContext) -> list[Candidate]:
        """Knowledge-base and note passages relevant to the question, best first."""
        question = context.question
        language = detect_language(question)
        name = first_name(context.contact.name)
        knowledge = await self.memory.search(
            context.conversation.tenant_id,
            question,
            3,
            sources=(MemorySource.KNOWLEDGE, MemorySource.NOTE),
            query_source=context.question_source,
        )
        why = (
            "Офлайн-черновик: похожих ответов не было, цитата из базы знаний."
            if language == "ru"
            else "Offline drafter: nothing similar was answered before; this quotes the "
            "knowledge base."
        )
        found: list[Candidate] = []
        for passage in knowledge:
            if self._relevant(passage, question):
                text = f"{greeting(language, name)} {excerpt(passage.text)}"
                found.append(Candidate(text, why, passage, passage.score))
        return found

    def _relevant(self, passage: Passage, question: str) -> bool:
        if passage.dense is not None and passage.dense >= SIMILAR_ENOUGH:
            return True
        if passage.keyword is None:
            return False
        terms = store.query_terms(question)
        text = passage.text.casefold().replace("ё", "е")
        hits = sum(1 for term in terms if term in text)
        return bool(terms) and hits / len(terms) >= KEYWORD_SHARE

    async def _answered(self, context: DraftContext) -> list[_Pair]:
        """Earlier lead questions like this one with the reply they got, best first."""
        question = context.question
        tenant_id = context.conversation.tenant_id
        language = detect_language(question)
        language = language if language in REUSE_BAR else "en"
        lead = context.lead_message
        # Encoded (or read) once for the search and the scoring both.
        query_vector = await self.memory.query_vector(tenant_id, question, context.question_source)
        passages = await self.memory.search(
            tenant_id,
            question,
            CANDIDATE_DEPTH,
            sources=(MemorySource.MESSAGE,),
            query_vector=query_vector,
        )
        own = context.conversation.id

        def later(chunk: MemoryChunk) -> bool:
            # The question itself, or what came after it in this conversation.
            return lead is not None and chunk.conversation_id == own and chunk.source_id >= lead.id

        questions: dict[int, Passage] = {
            passage.chunk.id: passage
            for passage in passages
            if passage.chunk.direction == Direction.IN.value and not later(passage.chunk)
        }
        # The thread's own earlier questions, found or not: a lead asking again gets the answer
        # they were given, not another conversation's.
        thread_in = [
            m.id
            for m in context.thread
            if m.direction is Direction.IN and (lead is None or m.id < lead.id)
        ]
        thread_chunks = (
            await MemoryChunk.filter(
                tenant_id=tenant_id, source=MemorySource.MESSAGE, source_id__in=thread_in
            )
            if thread_in
            else []
        )
        for chunk in thread_chunks:
            if chunk.id not in questions:
                questions[chunk.id] = Passage(chunk, 0.0, None, None)
        if not questions:
            return []
        meaning: dict[str, np.ndarray] | None = None
        if self.multilingual is not None and language in MULTILINGUAL_LANGUAGES:
            meaning = await self._meanings(context, [p.chunk for p in questions.values()])
        scored: list[tuple[float, Passage]] = []
        for passage in questions.values():
            fit = chunk_fit(question, query_vector, passage.chunk, language, meaning)
            scored.append((fit, passage))
        scored.sort(key=lambda item: -item[0])
        answered: list[tuple[float, Passage, MemoryChunk]] = []
        for fit, passage in scored[:REPLIES_LOOKED_UP]:
            if fit < REUSE_BAR[language]:
                break  # the rest fit worse still
            reply = await store.reply_after(tenant_id, passage.chunk)
            if reply is None or not reply.text.strip() or later(reply):
                continue
            answered.append((fit, passage, reply))
        if meaning is not None and answered:
            meaning.update(await self._meanings(context, [r for _, _, r in answered], meaning))
        pairs: list[_Pair] = []
        for fit, passage, reply in answered:
            in_thread = passage.chunk.conversation_id == own
            score = fit + ANSWER_SHARE * chunk_fit(question, query_vector, reply, language, meaning)
            if detect_language(reply.text) != language:
                score *= OTHER_LANGUAGE
            pairs.append(_Pair(passage, reply, score, in_thread))
        pairs.sort(key=lambda pair: (not pair.in_thread, -pair.score))
        return pairs

    async def _meanings(
        self,
        context: DraftContext,
        chunks: Sequence[MemoryChunk],
        known: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Multilingual vectors of the question and of the chunks in its language, by text.

        Workers store them with each message; only what predates that (or the question, when
        Draft is tapped before its worker ran) is encoded here.
        """
        assert self.multilingual is not None
        found: dict[str, np.ndarray] = {}
        missing: list[str] = []
        question = context.question
        if known is None or question not in known:
            source = context.question_source
            own = None
            if source is not None:
                own = await store.sole_chunk(context.conversation.tenant_id, *source)
            if own is not None and own.multilingual_vector and own.text == question:
                found[question] = vector_from_bytes(own.multilingual_vector)
            else:
                missing.append(question)
        for chunk in chunks:
            if chunk.multilingual_vector:
                found[chunk.text] = vector_from_bytes(chunk.multilingual_vector)
            elif detect_language(chunk.text) in MULTILINGUAL_LANGUAGES:
                missing.append(chunk.text)
        if missing:
            found.update(await self.multilingual.aencode(missing))
        return found
