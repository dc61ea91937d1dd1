"""What lead messages mean: stored intents, operators' corrections, pipeline rules, lead score.

The classifier itself lives on the AI edge; here its verdict is stored (a correction by an
operator is never overwritten by a later prediction), turned into pipeline moves by the
tenant's rules, and folded into the contact's lead score.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tortoise.transactions import in_transaction

from crm.errors import NotFound, ValidationFailed
from crm.models import (
    Contact,
    Conversation,
    Deal,
    Direction,
    Message,
    MessageIntent,
    Stage,
    StageKind,
)
from crm.services.access import Actor, ActorType
from crm.services.accounts.workspaces import same_default_stage
from crm.services.ai.settings import (
    INTENTS,
    NO_ACTION,
    OPT_OUT_ACTION,
    REPLY_RULE,
    intent_rules_of,
    settings_of,
)
from crm.services.events.catalog import ContactScored, MessageClassified, MessageIntentCorrected
from crm.services.events.recording import record_event
from crm.services.inbox.lead_preferences import do_set_opted_out
from crm.services.pipeline.deals import do_move_deal

CORRECTION = "correction"
# How a rule's move is named on its deal.stage_changed event (``after["rule"]``), so alerts can
# say which rule moved a deal: the reply rule, or ``intent:<intent>``.
REPLY_RULE_NAME = "reply"
# An intent moves a deal or opts a lead out only when the classifier is this sure.
RULE_CONFIDENCE = 0.6
# Points of the latest intent in the lead score (0..100 with engagement and recency).
INTENT_POINTS = {
    "meeting_request": 50,
    "interested": 40,
    "question": 25,
    "not_now": 10,
    "out_of_office": 5,
    "wrong_person": 0,
    "not_interested": -30,
    "unsubscribe": -50,
}
ENGAGEMENT_PER_MESSAGE = 5
ENGAGEMENT_MAX = 25
ENGAGEMENT_DAYS = 30


def agent_actor(tenant_id: int) -> Actor:
    """The AI acting in a workspace: audited as an agent, allowed what the system may do."""
    system = Actor.system(tenant_id)
    return Actor(tenant_id=tenant_id, user_id=None, role=system.role, actor_type=ActorType.AGENT)


@dataclass(frozen=True)
class IntentOutcome:
    """What classifying one message did: its intent and the pipeline moves it caused."""

    intent: str
    confidence: float
    source: str
    actions: tuple[str, ...]


async def do_record_intent(
    message_id: int, intent: str, confidence: float, source: str, language: str
) -> MessageIntent | None:
    """Store the predicted intent of a lead message; a correction already there stays."""
    if intent not in INTENTS:
        raise ValidationFailed("intent", f"must be one of {', '.join(INTENTS)}")
    message = await Message.get_or_none(id=message_id)
    if message is None:
        return None
    async with in_transaction() as conn:
        row = await MessageIntent.filter(message_id=message_id).using_db(conn).first()
        if row is not None and row.source == CORRECTION:
            return row
        if row is None:
            row = await MessageIntent.create(
                tenant_id=message.tenant_id,
                message_id=message_id,
                intent=intent,
                confidence=confidence,
                source=source,
                predicted_intent=intent,
                language=language,
                using_db=conn,
            )
        else:
            row.intent, row.confidence, row.source = intent, confidence, source
            row.predicted_intent, row.language = intent, language
            await row.save(using_db=conn)
        await record_event(
            agent_actor(message.tenant_id),
            MessageClassified,
            message_id,
            after={"intent": intent, "confidence": round(confidence, 4), "source": source},
            using_db=conn,
        )
    return row


async def intent_of(message_id: int) -> MessageIntent | None:
    """The stored intent of a message, if it was classified."""
    return await MessageIntent.get_or_none(message_id=message_id)


async def access_intent(actor: Actor, message_id: int) -> MessageIntent:
    """The stored intent of a lead message of the actor's workspace."""
    actor.require_read()
    row = await MessageIntent.get_or_none(message_id=message_id, tenant_id=actor.tenant_id)
    if row is None:
        raise NotFound("intent of message", message_id)
    return row


async def do_correct_intent(actor: Actor, message_id: int, intent: str) -> MessageIntent:
    """An operator fixes a message's intent: stored as training data for the workspace."""
    actor.require_write()
    if intent not in INTENTS:
        raise ValidationFailed("intent", f"must be one of {', '.join(INTENTS)}")
    message = await Message.get_or_none(id=message_id, tenant_id=actor.tenant_id)
    if message is None or message.direction is not Direction.IN:
        raise NotFound("lead message", message_id)
    async with in_transaction() as conn:
        row = await MessageIntent.filter(message_id=message_id).using_db(conn).first()
        if row is None:
            row = await MessageIntent.create(
                tenant_id=actor.tenant_id,
                message_id=message_id,
                intent=intent,
                confidence=1.0,
                source=CORRECTION,
                predicted_intent="",
                corrected_by_id=actor.user_id,
                using_db=conn,
            )
        else:
            row.intent, row.confidence, row.source = intent, 1.0, CORRECTION
            row.corrected_by_id = actor.user_id
            await row.save(using_db=conn)
        await record_event(
            actor,
            MessageIntentCorrected,
            message_id,
            after={"intent": intent, "predicted": row.predicted_intent},
            using_db=conn,
        )
    return row


@dataclass(frozen=True)
class IntentCounts:
    """How many lead messages of a workspace carry each intent, and how many were corrected."""

    by_intent: dict[str, int]
    corrections: int


async def intent_counts(actor: Actor) -> IntentCounts:
    """The workspace's stored intents counted by intent, with the operators' corrections."""
    actor.require_read()
    rows = await MessageIntent.filter(tenant_id=actor.tenant_id).values_list("intent", "source")
    by_intent: dict[str, int] = {}
    for intent, _source in rows:
        by_intent[str(intent)] = by_intent.get(str(intent), 0) + 1
    return IntentCounts(by_intent=by_intent, corrections=sum(1 for r in rows if r[1] == CORRECTION))


async def corrections(tenant_id: int, limit: int = 2000) -> list[tuple[str, str]]:
    """The workspace's corrected (text, intent) pairs, newest first, for retraining."""
    rows = (
        await MessageIntent.filter(tenant_id=tenant_id, source=CORRECTION)
        .order_by("-updated_at")
        .limit(limit)
        .values_list("message_id", "intent")
    )
    texts = dict(await Message.filter(id__in=[r[0] for r in rows]).values_list("id", "text"))
    return [(str(texts[mid]), str(intent)) for mid, intent in rows if texts.get(mid)]


async def _stage_named(pipeline_id: int, name: str) -> Stage | None:
    """The stage called ``name``, else one called by another default name of that stage."""
    stages = await Stage.filter(pipeline_id=pipeline_id).order_by("position", "id")
    wanted = name.strip().casefold()
    exact = next((s for s in stages if s.name.casefold() == wanted), None)
    if exact is not None:
        return exact
    names = same_default_stage(name)  # "Replied" is "Есть ответ" in a Russian workspace
    return next((s for s in stages if s.name.casefold() in names), None)


async def do_apply_intent_rules(message_id: int) -> tuple[str, ...]:
    """Move the lead's open deal by the workspace's rules for this message's intent.

    Any reply moves a deal out of Cold into Replied; then the intent's own rule applies: a
    stage name moves the deal there, ``opt_out`` opts the contact out, ``none`` does nothing.
    Returns what was done, e.g. ``("stage:Replied", "stage:Meeting")``.
    """
    message = await Message.get_or_none(id=message_id)
    if message is None or message.direction is not Direction.IN:
        return ()
    conversation = await Conversation.get(id=message.conversation_id)
    intent = await intent_of(message_id)
    settings = await settings_of(message.tenant_id)
    actor = agent_actor(message.tenant_id)
    actions: list[str] = []
    deal = (
        await Deal.filter(
            tenant_id=message.tenant_id,
            contact_id=conversation.contact_id,
            stage__kind=StageKind.OPEN,
        )
        .select_related("stage")
        .order_by("-id")
        .first()
    )
    if deal is not None and deal.stage.name.casefold() in same_default_stage(REPLY_RULE[0]):
        replied = await _stage_named(deal.pipeline_id, REPLY_RULE[1])
        if replied is not None:
            deal = await do_move_deal(actor, deal.id, replied.id, rule=REPLY_RULE_NAME)
            actions.append(f"stage:{replied.name}")
    if intent is None or intent.confidence < RULE_CONFIDENCE:
        return tuple(actions)
    action = intent_rules_of(settings).get(intent.intent, NO_ACTION)
    if action == OPT_OUT_ACTION:
        if await do_set_opted_out(actor, conversation.contact_id, True, f"intent:{intent.intent}"):
            actions.append("opt_out")
    elif action != NO_ACTION and deal is not None:
        target = await _stage_named(deal.pipeline_id, action)
        if target is not None and target.id != deal.stage_id:
            await do_move_deal(actor, deal.id, target.id, rule=f"intent:{intent.intent}")
            actions.append(f"stage:{target.name}")
    return tuple(actions)


def lead_score(
    intent: str | None,
    inbound_recent: int,
    last_inbound_at: dt.datetime | None,
    now: dt.datetime,
) -> int:
    """0..100 from the latest intent, messages in the last 30 days, and how recent the last."""
    points = INTENT_POINTS.get(intent or "", 0)
    points += min(ENGAGEMENT_MAX, ENGAGEMENT_PER_MESSAGE * inbound_recent)
    if last_inbound_at is not None:
        age = now - last_inbound_at
        if age <= dt.timedelta(days=1):
            points += 25
        elif age <= dt.timedelta(days=7):
            points += 15
        elif age <= dt.timedelta(days=30):
            points += 5
    return max(0, min(100, points))


async def do_update_lead_score(contact_id: int, now: dt.datetime | None = None) -> int | None:
    """Recompute a contact's lead score from its lead messages and their intents."""
    now = now or dt.datetime.now(dt.UTC)
    contact = await Contact.get_or_none(id=contact_id)
    if contact is None:
        return None
    conversation_ids = await Conversation.filter(contact_id=contact_id).values_list("id", flat=True)
    inbound = Message.filter(conversation_id__in=list(conversation_ids), direction=Direction.IN)
    latest = await inbound.order_by("-id").first()
    recent = await inbound.filter(created_at__gte=now - dt.timedelta(days=ENGAGEMENT_DAYS)).count()
    latest_intent = None
    if latest is not None:
        classified = (
            await MessageIntent.filter(message_id__in=await inbound.values_list("id", flat=True))
            .order_by("-message_id")
            .first()
        )
        latest_intent = classified.intent if classified else None
    score = lead_score(latest_intent, recent, latest.created_at if latest else None, now)
    if score != contact.score:
        async with in_transaction() as conn:
            before = contact.score
            contact.score = score
            await contact.save(using_db=conn, update_fields=["score", "updated_at"])
            await record_event(
                agent_actor(contact.tenant_id),
                ContactScored,
                contact.id,
                before={"score": before},
                after={"score": score, "intent": latest_intent},
                using_db=conn,
            )
    return score
