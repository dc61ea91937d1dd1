"""The AI's standing in a conversation: its mode (off, draft, autonomous) and human hand-off."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from crm.api.dependencies import ActorDep
from crm.api.schemas import Id, StrictModel
from crm.services.ai import modes as ai_modes
from crm.services.ai.modes import MAX_REASON, AiControl

router = APIRouter(tags=["agents"])


class AiControlOut(BaseModel):
    conversation_id: int
    mode: str
    handed_off: bool
    handed_off_at: dt.datetime | None
    handoff_reason: str


class AiModeIn(StrictModel):
    mode: Literal["off", "draft", "autonomous"]


class HandOffIn(StrictModel):
    reason: str = Field(default="", max_length=MAX_REASON)


def _control_out(control: AiControl) -> AiControlOut:
    return AiControlOut(
        conversation_id=control.conversation_id,
        mode=control.mode,
        handed_off=control.handed_off_at is not None,
        handed_off_at=control.handed_off_at,
        handoff_reason=control.handoff_reason,
    )


@router.get("/conversations/{conversation_id}/ai", response_model=AiControlOut)
async def get_ai_control(conversation_id: Id, actor: ActorDep) -> AiControlOut:
    """The AI's mode in a conversation, and whether a human has it."""
    return _control_out(await ai_modes.access_ai_control(actor, conversation_id))


@router.put("/conversations/{conversation_id}/ai", response_model=AiControlOut)
async def put_ai_mode(conversation_id: Id, body: AiModeIn, actor: ActorDep) -> AiControlOut:
    """Set the AI mode of a conversation: off, draft or autonomous."""
    return _control_out(await ai_modes.do_set_ai_mode(actor, conversation_id, body.mode))


@router.post("/conversations/{conversation_id}/ai/hand-off", response_model=AiControlOut)
async def hand_off(conversation_id: Id, body: HandOffIn, actor: ActorDep) -> AiControlOut:
    """Take the conversation over: no agent acts in it until it is handed back."""
    reason = body.reason or "an operator took over"
    return _control_out(await ai_modes.do_hand_off(actor, conversation_id, reason))


@router.post("/conversations/{conversation_id}/ai/hand-back", response_model=AiControlOut)
async def hand_back(conversation_id: Id, actor: ActorDep) -> AiControlOut:
    """Let the AI act in the conversation again."""
    return _control_out(await ai_modes.do_hand_back(actor, conversation_id))
