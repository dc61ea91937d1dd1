"""Channel connections of a workspace and lead messages arriving on them, for inbox tests."""

from __future__ import annotations

import datetime as dt

from crm.infrastructure.cipher import CredentialCipher
from crm.messaging import ChannelKind, ConnectionInfo, InboundMessage
from crm.services.inbox import inbound_messages
from crm.services.inbox.connections import NewConnection, connection_info, do_add_connection
from tests.support.workspace import Workspace

CIPHER = CredentialCipher("test-secret")
NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)


async def whatsapp_connection(workspace: Workspace, phone_id: str = "100200300") -> ConnectionInfo:
    """A WhatsApp connection of the workspace, as the adapters see it."""
    row = await do_add_connection(
        workspace.actor,
        CIPHER,
        NewConnection(
            kind=ChannelKind.WHATSAPP,
            credentials={"token": "t", "app_secret": "s", "verify_token": "v"},
            settings={"phone_id": phone_id},
        ),
    )
    return connection_info(row, CIPHER)


async def telegram_connection(workspace: Workspace) -> ConnectionInfo:
    """A Telegram lead bot of the workspace."""
    row = await do_add_connection(
        workspace.actor,
        CIPHER,
        NewConnection(
            kind=ChannelKind.TELEGRAM,
            credentials={"token": "123456:" + "A" * 35},
            settings={},
        ),
    )
    return connection_info(row, CIPHER)


def wa_text(
    external_id: str, text: str = "hello", sender: str = "4915112345678", at: dt.datetime = NOW
) -> InboundMessage:
    """A WhatsApp text from a lead."""
    return InboundMessage(
        external_id=external_id,
        sender_id=sender,
        sender_name="Anna Lead",
        phone=f"+{sender}",
        sent_at=at,
        text=text,
    )


async def lead_message(
    connection: ConnectionInfo, external_id: str, sender: str, text: str = "hi"
) -> int:
    """A lead writes on ``connection``; returns the conversation id."""
    received = await inbound_messages.receive_message(
        connection,
        InboundMessage(
            external_id=external_id,
            sender_id=sender,
            sender_name=f"Lead {sender}",
            phone=f"+{sender}" if len(sender) > 8 else None,
            sent_at=dt.datetime.now(dt.UTC),
            text=text,
        ),
    )
    return received.conversation_id
