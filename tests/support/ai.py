"""The AI side of the app under test, the sandbox model set up for a workspace, a chat corpus."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from agents.assistant import Assistant
from crm.messaging import ConnectionInfo, InboundMessage
from crm.models import Event
from crm.services.inbox import inbound_messages
from crm.services.inbox.outbound import Outgoing, do_send_message
from crm.tasks.handlers import HandlerRegistry, dispatch
from tests.support.inbox import whatsapp_connection
from tests.support.workspace import Workspace

MODEL_KEY = "sk-sandbox-secret-123"


@dataclass
class AiService:
    """The app (no backbone) with its assistant and an HTTP client."""

    app: FastAPI
    assistant: Assistant
    http: httpx.AsyncClient
    handlers: HandlerRegistry

    async def run_handlers(self) -> None:
        """Run the AI's event handlers on every event so far, as workers would (idempotent)."""
        for event_id in await Event.all().order_by("id").values_list("id", flat=True):
            await dispatch(int(event_id), self.handlers)

    async def settle(self, rounds: int = 6) -> None:
        """Run handlers until no handler records new events (runs queue runs, which queue...)."""
        seen = -1
        for _ in range(rounds):
            count = await Event.all().count()
            if count == seen:
                return
            seen = count
            await self.run_handlers()


async def configure_model(ai: AiService, ws: Workspace, api_base: str, **extra: object) -> None:
    """Give the workspace the sandbox model (priced, so costs are non-zero)."""
    reply = await ai.http.patch(
        "/api/v1/ai/settings",
        json={
            "model": "openai/sandbox-chat",
            "api_base": api_base,
            "api_key": MODEL_KEY,
            "input_cost_per_million": 1.0,
            "output_cost_per_million": 2.0,
            "business_profile": "We sell a CRM that lives in messengers.",
            **extra,
        },
        headers=ws.headers,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["api_key_set"] is True
    assert MODEL_KEY not in reply.text


async def lead_writes(
    connection: ConnectionInfo, external_id: str, sender: str, name: str, text: str
) -> tuple[int, int]:
    """A lead message arrives; returns (conversation id, message id)."""
    received = await inbound_messages.receive_message(
        connection,
        InboundMessage(
            external_id=external_id,
            sender_id=sender,
            sender_name=name,
            phone=f"+{sender}",
            sent_at=dt.datetime.now(dt.UTC),
            text=text,
        ),
    )
    return received.conversation_id, received.message.id


async def operator_replies(ws: Workspace, conversation_id: int, text: str) -> int:
    """The owner answers in a conversation; returns the message id."""
    message = await do_send_message(ws.actor, conversation_id, Outgoing(text=text))
    return message.id


@dataclass
class Corpus:
    """Past conversations answered by operators, in English and Russian."""

    connection: ConnectionInfo
    anna: int  # conversation ids
    maria: int
    anna_question: int  # message ids


async def make_corpus(ws: Workspace) -> Corpus:
    """Two answered price questions and an unrelated exchange."""
    wa = await whatsapp_connection(ws)
    anna, anna_q = await lead_writes(
        wa, "wamid.c1", "4915100000101", "Anna Schmidt", "How much does the Pro plan cost?"
    )
    await operator_replies(
        ws, anna, "Hi Anna, the Pro plan is 49 EUR per seat per month, billed annually."
    )
    maria, _ = await lead_writes(
        wa, "wamid.c2", "79160000102", "Мария Иванова", "Сколько стоит тариф Про?"
    )
    await operator_replies(ws, maria, "Мария, тариф Про стоит 4900 рублей в месяц за пользователя.")
    other, _ = await lead_writes(
        wa, "wamid.c3", "4915100000103", "Carl", "Can you send me the onboarding checklist?"
    )
    await operator_replies(ws, other, "Sure Carl, here is the checklist: connect, import, invite.")
    return Corpus(wa, anna, maria, anna_q)
