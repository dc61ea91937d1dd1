"""Channel connections: list and add a tenant's WhatsApp numbers and Telegram lead bots."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field, SecretStr

from crm.api.dependencies import ActorDep
from crm.api.schemas import Id, ListOut, StrictModel
from crm.messaging import ChannelKind
from crm.models import ChannelConnection
from crm.services.inbox import connections as channels
from crm.services.inbox.connections import NewConnection, public_view

router = APIRouter(tags=["channels"])

ConnectionId = Id
# Called after a connection is stored: registers the Telegram webhook or the sandbox emulator.
# It answers an error text for the client, or None when the setup went through.
ConnectionSetup = Callable[[ChannelConnection], Awaitable[str | None]]


class ChannelOut(BaseModel):
    id: int
    kind: str
    display_name: str
    sandbox: bool
    settings: dict[str, Any]
    rate_per_second: int
    active: bool
    created_at: dt.datetime
    webhook_url: str
    setup_error: str | None = None


class ChannelIn(StrictModel):
    kind: Literal["whatsapp", "telegram"]
    sandbox: bool = Field(default=False, description="wire to the built-in emulator instead")
    display_name: str = Field(default="", max_length=200)
    phone_id: str | None = Field(default=None, max_length=32, description="WhatsApp only")
    waba_id: str | None = Field(default=None, max_length=32, description="WhatsApp only")
    token: SecretStr | None = None
    app_secret: SecretStr | None = Field(default=None, description="WhatsApp only")
    verify_token: SecretStr | None = Field(default=None, description="WhatsApp only")
    rate_per_second: int | None = Field(default=None, ge=1, le=1000)


class ActiveIn(StrictModel):
    active: bool


def webhook_url(request: Request, connection: ChannelConnection) -> str:
    """Where the provider must send this connection's webhooks."""
    base: str = request.app.state.public_base_url
    return channels.webhook_url(base, connection.kind, connection.id)


def _out(request: Request, connection: ChannelConnection, error: str | None = None) -> ChannelOut:
    view = public_view(connection)
    return ChannelOut(**view, webhook_url=webhook_url(request, connection), setup_error=error)


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


@router.get("/channels", response_model=ListOut[ChannelOut])
async def get_channels(actor: ActorDep, request: Request) -> ListOut[ChannelOut]:
    """The organization's channel connections (credentials are never shown)."""
    rows = await channels.list_connections(actor)
    return ListOut(items=[_out(request, c) for c in rows], next_cursor=None)


@router.post("/channels", response_model=ChannelOut, status_code=status.HTTP_201_CREATED)
async def post_channel(body: ChannelIn, actor: ActorDep, request: Request) -> ChannelOut:
    """Connect a WhatsApp number or a Telegram bot (admins); ``sandbox`` needs no credentials."""
    kind = ChannelKind(body.kind)
    if body.sandbox:
        new = channels.sandbox_connection(kind, actor.tenant_id, request.app.state.sandbox_base_url)
    else:
        settings: dict[str, Any] = {}
        if kind is ChannelKind.WHATSAPP:
            settings = {"phone_id": body.phone_id or ""}
            if body.waba_id:
                settings["waba_id"] = body.waba_id
        new = NewConnection(
            kind=kind,
            credentials={
                "token": _secret(body.token),
                "app_secret": _secret(body.app_secret),
                "verify_token": _secret(body.verify_token),
            },
            settings=settings,
            display_name=body.display_name,
            rate_per_second=body.rate_per_second,
        )
    if body.display_name and body.sandbox:
        new = dataclasses.replace(new, display_name=body.display_name)
    connection = await channels.do_add_connection(
        actor, request.app.state.cipher, new, sandbox=body.sandbox
    )
    setup: ConnectionSetup = request.app.state.connection_setup
    return _out(request, connection, await setup(connection))


@router.get("/channels/{connection_id}", response_model=ChannelOut)
async def get_channel(connection_id: ConnectionId, actor: ActorDep, request: Request) -> ChannelOut:
    """One channel connection."""
    return _out(request, await channels.access_connection(actor, connection_id))


@router.patch("/channels/{connection_id}", response_model=ChannelOut)
async def patch_channel(
    connection_id: ConnectionId, body: ActiveIn, actor: ActorDep, request: Request
) -> ChannelOut:
    """Pause or resume a connection (admins)."""
    connection = await channels.do_set_connection_active(actor, connection_id, body.active)
    return _out(request, connection)
