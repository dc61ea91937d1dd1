"""The AI of a process in one object: memory, drafts, answers, intents, and their event handlers.

The composition root builds one ``Assistant``; the HTTP API (through the ``crm.assistant``
port), the operator bot and the task handlers call it. Handlers are at-least-once and idempotent:
re-embedding an unchanged source writes nothing, an intent is an upsert, a stage move to the
current stage is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tortoise.backends.base.client import BaseDBAsyncClient

from agents.ask import Answer, Asker
from agents.classify import Classified, IntentService, base_classifier
from agents.draft_context import load_context
from agents.drafting import Drafter
from agents.embeddings import Embedder
from agents.guardrails import asks_for_human
from agents.memory import Memory
from agents.model_gateway import ModelGateway
from agents.multilingual import MultilingualEncoder, shared_multilingual
from agents.runner import AgentRunner
from crm.assistant import MAX_QUESTION
from crm.errors import ValidationFailed
from crm.infrastructure.cipher import CredentialCipher
from crm.models import (
    Agent,
    AuthorType,
    Conversation,
    Draft,
    Event,
    MemorySource,
    Message,
)
from crm.services.access import Actor
from crm.services.ai import agent_runs, drafts, intents
from crm.services.ai import modes as ai_modes
from crm.services.ai import settings as ai_settings
from crm.services.ai.agent_runs import RunRequest
from crm.services.ai.agents import guardrails_of
from crm.services.events.catalog import (
    AgentRunQueued,
    ConversationNoteAdded,
    KnowledgeCreated,
    KnowledgeDeleted,
    KnowledgeUpdated,
    MessageDeleted,
    MessageEdited,
    MessageQueued,
    MessageReceived,
    NoteCreated,
    NoteDeleted,
    NoteUpdated,
)
from crm.services.events.event_types import EventType
from crm.tasks.handlers import EventHandler, HandlerRegistry, Order

logger = logging.getLogger(__name__)

# Event type -> the memory source its entity is.
REMEMBERED: dict[type[EventType], MemorySource] = {
    MessageQueued: MemorySource.MESSAGE,
    MessageEdited: MemorySource.MESSAGE,
    MessageDeleted: MemorySource.MESSAGE,
    ConversationNoteAdded: MemorySource.MESSAGE,
    NoteCreated: MemorySource.NOTE,
    NoteUpdated: MemorySource.NOTE,
    NoteDeleted: MemorySource.NOTE,
    KnowledgeCreated: MemorySource.KNOWLEDGE,
    KnowledgeUpdated: MemorySource.KNOWLEDGE,
    KnowledgeDeleted: MemorySource.KNOWLEDGE,
}
RECEIVED_HANDLER = "ai.lead_message"
REMEMBER_HANDLER = "ai.remember:"
RUN_HANDLER = "ai.agent_run"
TAKE_OVER_HANDLER = "ai.take_over"
# Intents after which no agent writes: the lead left, or is away.
SILENCING_INTENTS = frozenset({"unsubscribe", "out_of_office"})
ASKED_FOR_HUMAN = "the lead asked for a person"
LOW_CONFIDENCE = "unsure what the lead means (intent confidence {confidence:.2f})"
OPERATOR_REPLIED = "an operator replied in person"


@dataclass(frozen=True)
class LeadMessageOutcome:
    """What the AI did with one lead message."""

    chunks: int
    intent: Classified | None
    actions: tuple[str, ...]
    score: int | None
    runs: tuple[int, ...] = ()


class Assistant:
    """Drafts, answers and classifies for every workspace of the installation."""

    def __init__(
        self,
        cipher: CredentialCipher,
        index_dir: Path,
        embedder: Embedder,
        multilingual: MultilingualEncoder | None = None,
    ) -> None:
        self.gateway = ModelGateway(cipher)
        # Russian paraphrases for the offline drafter; one encoder per process unless given.
        multilingual = multilingual or shared_multilingual()
        self.memory = Memory(embedder, index_dir, multilingual)
        self.drafter = Drafter(self.memory, self.gateway, multilingual)
        self.asker = Asker(self.memory, self.gateway)
        self.intents = IntentService(self.gateway)
        self.runner = AgentRunner(self.gateway, self.memory)
        self._warming: asyncio.Task[None] | None = None

    async def warm_up(self) -> None:
        """Load the embedding model and train the base classifier, in worker threads.

        Both take seconds the first time in a process (imports, weights) and ~250 MB; paid
        before the first lead's AI handler, they do not delay that lead's notification.
        """
        await self.memory.embedder.aencode(["warm up"])
        await asyncio.to_thread(base_classifier)

    def prepare(self) -> None:
        """Start ``warm_up`` in the background once (the first lead message calls this).

        `crm up` loads no model at start-up: readiness and an idle service's memory do not pay
        for AI that may never be used. The first need starts the load, off the event loop.
        """
        if self._warming is None or (self._warming.done() and self._warming.cancelled()):
            self._warming = asyncio.create_task(self._warm_up_logged())

    async def _warm_up_logged(self) -> None:
        try:
            await self.warm_up()
        except Exception:  # the handler that needs the model reports its own failure
            logger.exception("AI warm-up failed")

    async def close(self) -> None:
        """Cancel a warm-up still running (the service is stopping)."""
        warming, self._warming = self._warming, None
        if warming is not None and not warming.done():
            warming.cancel()
            with contextlib.suppress(BaseException):
                await warming

    async def draft_reply(
        self, actor: Actor, conversation_id: int, offered: Sequence[str] = ()
    ) -> Draft:
        """A new pending draft answering the lead's latest message, other than ``offered``."""
        conversation = await drafts.access_conversation_to_draft(actor, conversation_id)
        context = await load_context(conversation, offered)
        proposed = await self.drafter.draft(context)
        lead_id = context.lead_message.id if context.lead_message else None
        return await drafts.do_create_draft(actor, conversation, proposed, lead_id)

    async def regenerate(self, actor: Actor, draft_id: int) -> Draft:
        """Replace a pending draft with the next-best one (the old one is recorded regenerated).

        Every text regenerated away for the same lead message is passed on, so the offline
        drafter steps down its candidates instead of proposing the same text again.
        """
        old = await drafts.do_supersede_draft(actor, draft_id)
        offered = await drafts.offered_before(old)
        return await self.draft_reply(actor, old.conversation_id, offered)

    async def ask(self, actor: Actor, question: str) -> Answer:
        """Answer a question from the workspace's own history."""
        actor.require_read()
        question = question.strip()
        if not question:
            raise ValidationFailed("question", "must not be empty")
        if len(question) > MAX_QUESTION:
            raise ValidationFailed("question", f"must be at most {MAX_QUESTION} characters")
        return await self.asker.ask(actor.tenant_id, question)

    async def classify(self, actor: Actor, text: str) -> Classified:
        """The intent of a text, for the workspace (its corrections count)."""
        actor.require_read()
        if not text.strip():
            raise ValidationFailed("text", "must not be empty")
        if len(text) > MAX_QUESTION:
            raise ValidationFailed("text", f"must be at most {MAX_QUESTION} characters")
        return await self.intents.classify(actor.tenant_id, text)

    async def on_lead_message(self, message_id: int) -> LeadMessageOutcome:
        """Remember, classify, apply the pipeline rules, rescore: what a lead message triggers."""
        chunks = await self.memory.remember(MemorySource.MESSAGE, message_id)
        message = await Message.get_or_none(id=message_id)
        if message is None:
            return LeadMessageOutcome(chunks, None, (), None)
        verdict = None
        if message.text.strip() and not message.deleted:
            verdict = await self.intents.classify(message.tenant_id, message.text)
            await intents.do_record_intent(
                message_id, verdict.intent, verdict.confidence, verdict.source, verdict.language
            )
        actions = await intents.do_apply_intent_rules(message_id)
        conversation = await Conversation.get_or_none(id=message.conversation_id)
        contact_id = conversation.contact_id if conversation else None
        score = await intents.do_update_lead_score(contact_id) if contact_id else None
        runs: tuple[int, ...] = ()
        if conversation is not None and message.direction.value == "in" and not message.deleted:
            extra, runs = await self._agents_on(conversation, message, verdict)
            actions = (*actions, *extra)
        return LeadMessageOutcome(chunks, verdict, actions, score, runs)

    async def _agents_on(
        self, conversation: Conversation, message: Message, verdict: Classified | None
    ) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """Hand off or queue the agents a lead message starts (only where the AI may act)."""
        control = ai_modes.control_of(conversation)
        if not control.ai_may_act:
            return (), ()
        actor = intents.agent_actor(conversation.tenant_id)
        if asks_for_human(message.text):
            await ai_modes.do_hand_off(actor, conversation.id, ASKED_FOR_HUMAN)
            return ("hand_off",), ()
        if verdict is not None and verdict.intent in SILENCING_INTENTS:
            return (), ()
        settings = await ai_settings.settings_of(conversation.tenant_id)
        agents = [
            agent
            for agent in await Agent.filter(tenant_id=conversation.tenant_id, active=True)
            if "lead_message" in (agent.triggers or [])
        ]
        runs: list[int] = []
        for agent in agents:
            threshold = guardrails_of(agent).handoff_confidence
            threshold = settings.handoff_confidence if threshold is None else threshold
            unsure = verdict is not None and verdict.confidence < threshold
            if unsure and control.mode == "autonomous":
                # Nobody reviews an autonomous answer: a doubtful one goes to a human instead.
                reason = LOW_CONFIDENCE.format(confidence=verdict.confidence if verdict else 0)
                await ai_modes.do_hand_off(actor, conversation.id, reason)
                return ("hand_off",), tuple(runs)
            run = await agent_runs.do_queue_run(
                actor,
                agent.id,
                RunRequest(
                    conversation_id=conversation.id,
                    trigger="lead_message",
                    trigger_key=f"message:{message.id}",
                    extra={"message_id": message.id},
                ),
            )
            runs.append(run.id)
        return (), tuple(runs)

    async def on_operator_message(self, message_id: int) -> bool:
        """An operator wrote in person in an autonomous conversation: the AI steps back."""
        message = await Message.get_or_none(id=message_id)
        if message is None or message.author_type is not AuthorType.USER:
            return False
        if (message.idempotency_key or "").startswith(drafts.DRAFT_KEY_PREFIX):
            return False  # an AI draft the operator approved: the AI still has the floor
        conversation = await Conversation.get_or_none(id=message.conversation_id)
        if conversation is None or conversation.ai_mode != "autonomous":
            return False
        if conversation.ai_handoff_at is not None:
            return False
        actor = intents.agent_actor(conversation.tenant_id)
        await ai_modes.do_hand_off(actor, conversation.id, OPERATOR_REPLIED)
        return True

    # Event handlers ----------------------------------------------------------------------

    async def _lead_message(self, event: Event, conn: BaseDBAsyncClient) -> None:
        if event.entity_id is not None:
            await self.on_lead_message(event.entity_id)

    async def _agent_run(self, event: Event, conn: BaseDBAsyncClient) -> None:
        if event.entity_id is not None:
            await self.runner.execute(event.entity_id)

    async def _operator_message(self, event: Event, conn: BaseDBAsyncClient) -> None:
        # Operators write as users, through the bot, the Mini App or the API with their key.
        if event.entity_id is not None and event.actor_type in ("user", "api_key"):
            await self.on_operator_message(event.entity_id)

    def _remember(self, source: MemorySource) -> EventHandler:
        async def handle(event: Event, conn: BaseDBAsyncClient) -> None:
            if event.entity_id is not None:
                await self.memory.remember(source, event.entity_id)

        return handle

    def install(self, registry: HandlerRegistry) -> None:
        """Register the AI's handlers (before the bot's: notifications then show the intent)."""
        self.uninstall(registry)
        subscriptions: list[tuple[type[EventType], EventHandler, str]] = [
            (MessageReceived, self._lead_message, RECEIVED_HANDLER),
            (AgentRunQueued, self._agent_run, RUN_HANDLER),
            (MessageQueued, self._operator_message, TAKE_OVER_HANDLER),
        ]
        subscriptions += [
            (event_type, self._remember(source), REMEMBER_HANDLER + event_type.type)
            for event_type, source in REMEMBERED.items()
        ]
        for event_type, handler, name in subscriptions:
            registry.add(event_type, handler, name=name, atomic=False, order=Order.AI)

    @staticmethod
    def uninstall(registry: HandlerRegistry) -> None:
        """Unregister what ``install`` registered."""
        registry.remove(RECEIVED_HANDLER)
        registry.remove(RUN_HANDLER)
        registry.remove(TAKE_OVER_HANDLER)
        for event_type in REMEMBERED:
            registry.remove(REMEMBER_HANDLER + event_type.type)
