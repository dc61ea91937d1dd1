"""Fixtures of the AI tests: the service app with its assistant, and a corpus of real chats."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from agents.assistant import Assistant
from crm.app import create_app
from crm.messaging import ConnectionInfo, InboundMessage
from crm.models import Event
from crm.services import inbox
from crm.services.outbound import Outgoing, do_send_message
from crm.settings import Settings
from crm.tasks.handlers import HandlerRegistry, dispatch
from tests.conftest import Workspace
from tests.crm.services.test_inbox import whatsapp_connection


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


@pytest.fixture
async def ai(settings: Settings) -> AsyncIterator[AiService]:
    """The service's app and assistant; the AI handlers run when the test says so."""
    app = create_app(settings, manage_db=False, run_backbone=False)
    assistant: Assistant = app.state.assistant
    handlers = HandlerRegistry()
    assistant.install(handlers)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as http:
        yield AiService(app, assistant, http, handlers)


async def lead_writes(
    connection: ConnectionInfo, external_id: str, sender: str, name: str, text: str
) -> tuple[int, int]:
    """A lead message arrives; returns (conversation id, message id)."""
    received = await inbox.receive_message(
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
