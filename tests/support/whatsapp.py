"""Shared pieces of the WhatsApp channel tests: test credentials, a list-backed ingest queue."""

from __future__ import annotations

from dataclasses import dataclass, field

from channels.base import WebhookRuntime
from channels.whatsapp import WhatsAppAdapter
from crm.messaging import ChannelKind, ConnectionInfo, InboundUpdate
from sandbox.whatsapp import WhatsAppEmulator

CONNECTION_ID = 7
PHONE_ID = "1100220033"
TOKEN = "sandbox-token-7f3a"
APP_SECRET = "sandbox-app-secret"
VERIFY_TOKEN = "sandbox-verify"
LEAD = "15550001111"


@dataclass
class Ingest:
    """A ``WebhookRuntime`` whose queue is a list."""

    connections: dict[int, ConnectionInfo] = field(default_factory=dict)
    bodies: list[bytes] = field(default_factory=list)

    async def load(self, connection_id: int) -> ConnectionInfo | None:
        return self.connections.get(connection_id)

    async def enqueue(self, connection_id: int, body: bytes) -> None:
        self.bodies.append(body)

    def runtime(self) -> WebhookRuntime:
        return WebhookRuntime(load_connection=self.load, enqueue_ingest=self.enqueue)


def whatsapp_connection(graph_base_url: str | None = None, **credentials: str) -> ConnectionInfo:
    """A WhatsApp connection with the test credentials."""
    settings = {"phone_id": PHONE_ID, "waba_id": "102290129340398"}
    if graph_base_url:
        settings["graph_base_url"] = graph_base_url
    return ConnectionInfo(
        id=CONNECTION_ID,
        tenant_id=1,
        kind=ChannelKind.WHATSAPP,
        settings=settings,
        credentials={
            "token": TOKEN,
            "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN,
            **credentials,
        },
        sandbox=graph_base_url is not None,
    )


@dataclass
class Sandbox:
    """The emulator, our adapter and webhook views, wired like the service wires them."""

    emulator: WhatsAppEmulator
    adapter: WhatsAppAdapter
    connection: ConnectionInfo
    ingest: Ingest
    base_url: str

    def updates(self) -> list[InboundUpdate]:
        """Every update in the bodies our webhook view accepted, parsed by the adapter."""
        return [u for body in self.ingest.bodies for u in self.adapter.parse(self.connection, body)]

    async def lead_writes(self, text: str = "hi", *, name: str = "Dana Lead") -> str:
        """The lead writes (opening the 24-hour window); returns the message's wamid."""
        return await self.emulator.inbound(str(CONNECTION_ID), LEAD, text, name=name)
