"""Who speaks in a conversation: the AI's mode there, and the human hand-off.

``ai_mode`` is ``off`` (no agent acts), ``draft`` (agents propose, an operator approves) or
``autonomous`` (an agent allowed to may send by itself). Independently, a conversation a human
took over, or one the AI handed off, keeps every agent silent until someone hands it back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tortoise.transactions import in_transaction

from crm.errors import NotFound, ValidationFailed
from crm.models import Conversation
from crm.services.access import Actor
from crm.services.events.catalog import AiControlChanged, AiHandedBack, AiHandedOff, AiModeSet
from crm.services.events.recording import record_event
from crm.services.inbox.outbound import check_may_work_on
from crm.services.references import get_in_tenant

AI_MODES = ("off", "draft", "autonomous")
MAX_REASON = 200


@dataclass(frozen=True)
class AiControl:
    """The AI's standing in one conversation."""

    conversation_id: int
    mode: str
    handed_off_at: dt.datetime | None
    handoff_reason: str

    @property
    def ai_may_act(self) -> bool:
        """Whether agents may act here at all."""
        return self.mode != "off" and self.handed_off_at is None


def control_of(conversation: Conversation) -> AiControl:
    """The AI's standing in a conversation."""
    return AiControl(
        conversation.id,
        conversation.ai_mode,
        conversation.ai_handoff_at,
        conversation.ai_handoff_reason,
    )


async def access_ai_control(actor: Actor, conversation_id: int) -> AiControl:
    """The AI's standing in a conversation of the actor's workspace."""
    return control_of(await get_in_tenant(actor, Conversation, conversation_id, "conversation"))


async def _change(
    actor: Actor,
    conversation_id: int,
    event_type: type[AiControlChanged],
    *,
    mode: str | None = None,
    handoff: tuple[dt.datetime | None, str] | None = None,
) -> AiControl:
    async with in_transaction() as conn:
        conversation = (
            await Conversation.filter(id=conversation_id, tenant_id=actor.tenant_id)
            .select_for_update()
            .using_db(conn)
            .first()
        )
        if conversation is None:
            raise NotFound("conversation", conversation_id)
        check_may_work_on(actor, conversation)
        before = control_of(conversation)
        if mode is not None:
            conversation.ai_mode = mode
        if handoff is not None:
            conversation.ai_handoff_at, conversation.ai_handoff_reason = handoff
        after = control_of(conversation)
        if after == before:
            return after
        await conversation.save(
            using_db=conn, update_fields=["ai_mode", "ai_handoff_at", "ai_handoff_reason"]
        )
        await record_event(
            actor,
            event_type,
            conversation.id,
            before={"mode": before.mode, "handed_off": before.handed_off_at is not None},
            after={
                "mode": after.mode,
                "handed_off": after.handed_off_at is not None,
                "reason": after.handoff_reason,
            },
            using_db=conn,
        )
        return after


async def do_set_ai_mode(actor: Actor, conversation_id: int, mode: str) -> AiControl:
    """Set the AI mode of a conversation (members who may work on it)."""
    if mode not in AI_MODES:
        raise ValidationFailed("mode", f"must be one of {', '.join(AI_MODES)}")
    return await _change(actor, conversation_id, AiModeSet, mode=mode)


def _reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if len(reason) > MAX_REASON:
        raise ValidationFailed("reason", f"must be at most {MAX_REASON} characters")
    return reason


async def do_hand_off(actor: Actor, conversation_id: int, reason: str) -> AiControl:
    """Stop the AI in a conversation: a human has it now (an operator or the AI itself asks)."""
    now = dt.datetime.now(dt.UTC)
    current = await access_ai_control(actor, conversation_id)
    if current.handed_off_at is not None:
        return current
    return await _change(actor, conversation_id, AiHandedOff, handoff=(now, _reason(reason)))


async def do_hand_back(actor: Actor, conversation_id: int) -> AiControl:
    """Let the AI act in a conversation again after a human had it."""
    return await _change(actor, conversation_id, AiHandedBack, handoff=(None, ""))
