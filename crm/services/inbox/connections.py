"""Channel connections: a tenant's WhatsApp numbers and Telegram lead bots.

Credentials are encrypted at rest and never leave this module in a listing: the API and the
audit log see ``public_view`` only. Adding or removing a connection is an admin's job.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from crm.errors import Conflict, NotFound, ValidationFailed
from crm.infrastructure.cipher import CredentialCipher
from crm.messaging import ChannelKind, ConnectionInfo
from crm.models import ChannelConnection
from crm.services.access import Actor
from crm.services.events.catalog import ChannelConnected, ChannelUpdated
from crm.services.events.recording import record_event

TELEGRAM_TOKEN = re.compile(r"^(\d{1,20}):[A-Za-z0-9_-]{20,100}$")
PHONE_ID = re.compile(r"^\d{5,32}$")
DEFAULT_RATE = {ChannelKind.WHATSAPP: 80, ChannelKind.TELEGRAM: 30}
MAX_RATE = 1000


@dataclass(frozen=True)
class NewConnection:
    """What an admin gives to connect a channel (``credentials`` are secret)."""

    kind: ChannelKind
    credentials: dict[str, str]
    settings: dict[str, Any]
    display_name: str = ""
    rate_per_second: int | None = None


def _require(values: dict[str, str], name: str) -> str:
    value = (values.get(name) or "").strip()
    if not value:
        raise ValidationFailed(name, "is required")
    if len(value) > 1000:
        raise ValidationFailed(name, "must be at most 1000 characters")
    return value


def _validated(new: NewConnection) -> tuple[str, dict[str, str], dict[str, Any], str]:
    """external key, credentials, settings and display name, checked per kind."""
    settings = dict(new.settings)
    if new.kind is ChannelKind.WHATSAPP:
        phone_id = str(settings.get("phone_id") or "").strip()
        if not PHONE_ID.match(phone_id):
            raise ValidationFailed("phone_id", "must be the numeric phone number id from Meta")
        settings["phone_id"] = phone_id
        credentials = {
            "token": _require(new.credentials, "token"),
            "app_secret": _require(new.credentials, "app_secret"),
            "verify_token": _require(new.credentials, "verify_token"),
        }
        return phone_id, credentials, settings, new.display_name or f"WhatsApp {phone_id}"
    token = _require(new.credentials, "token")
    match = TELEGRAM_TOKEN.match(token)
    if match is None:
        raise ValidationFailed("token", "is not a Telegram bot token (digits:secret)")
    settings["bot_id"] = int(match.group(1))
    webhook_secret = new.credentials.get("webhook_secret") or secrets.token_urlsafe(32)
    credentials = {"token": token, "webhook_secret": webhook_secret}
    return match.group(1), credentials, settings, new.display_name or f"Telegram bot {match[1]}"


def webhook_url(base_url: str, kind: ChannelKind, connection_id: int) -> str:
    """Where the provider must post a connection's webhooks."""
    return f"{base_url.rstrip('/')}/webhooks/{kind.value}/{connection_id}"


def public_view(connection: ChannelConnection) -> dict[str, Any]:
    """What may be shown of a connection: never its credentials."""
    return {
        "id": connection.id,
        "kind": connection.kind.value,
        "display_name": connection.display_name,
        "sandbox": connection.sandbox,
        "settings": connection.settings,
        "rate_per_second": connection.rate_per_second,
        "active": connection.active,
        "created_at": connection.created_at,
    }


def connection_info(connection: ChannelConnection, cipher: CredentialCipher) -> ConnectionInfo:
    """The adapter's view of a connection, credentials decrypted."""
    return ConnectionInfo(
        id=connection.id,
        tenant_id=connection.tenant_id,
        kind=connection.kind,
        settings=dict(connection.settings),
        credentials=cipher.decrypt(connection.credentials_encrypted),
        sandbox=connection.sandbox,
        rate_per_second=connection.rate_per_second,
    )


async def do_add_connection(
    actor: Actor, cipher: CredentialCipher, new: NewConnection, *, sandbox: bool = False
) -> ChannelConnection:
    """Connect a WhatsApp number or a Telegram bot to the tenant (admins)."""
    actor.require_admin()
    external_key, credentials, settings, name = _validated(new)
    rate = new.rate_per_second or DEFAULT_RATE[new.kind]
    if not 1 <= rate <= MAX_RATE:
        raise ValidationFailed("rate_per_second", f"must be between 1 and {MAX_RATE}")
    if len(name) > 200:
        raise ValidationFailed("display_name", "must be at most 200 characters")
    try:
        async with in_transaction() as conn:
            connection = await ChannelConnection.create(
                tenant_id=actor.tenant_id,
                kind=new.kind,
                display_name=name,
                external_key=external_key,
                sandbox=sandbox,
                settings=settings,
                credentials_encrypted=cipher.encrypt(credentials),
                rate_per_second=rate,
                using_db=conn,
            )
            await record_event(
                actor,
                ChannelConnected,
                connection.id,
                after=_audit_view(connection),
                using_db=conn,
            )
    except IntegrityError:
        field = "phone_id" if new.kind is ChannelKind.WHATSAPP else "token"
        raise Conflict(field, "this account is already connected") from None
    return connection


def _audit_view(connection: ChannelConnection) -> dict[str, Any]:
    view = public_view(connection)
    view["created_at"] = connection.created_at.isoformat()
    return view


def sandbox_connection(kind: ChannelKind, tenant_id: int, sandbox_base_url: str) -> NewConnection:
    """A connection wired to the built-in emulator, with made-up credentials."""
    base = sandbox_base_url.rstrip("/")
    if kind is ChannelKind.WHATSAPP:
        phone_id = "1555" + "".join(secrets.choice("0123456789") for _ in range(10))
        return NewConnection(
            kind=kind,
            credentials={
                "token": "sandbox-" + secrets.token_urlsafe(24),
                "app_secret": secrets.token_hex(16),
                "verify_token": secrets.token_urlsafe(16),
            },
            settings={
                "phone_id": phone_id,
                "waba_id": f"sandbox-waba-{tenant_id}",
                "display_phone_number": f"+1 555 {phone_id[-7:]}",
                "graph_base_url": f"{base}/sandbox/graph",
            },
            display_name="WhatsApp sandbox",
        )
    bot_id = secrets.randbelow(10**9) + 7 * 10**9
    return NewConnection(
        kind=kind,
        credentials={"token": f"{bot_id}:{secrets.token_urlsafe(26)}"},
        settings={
            "api_base": f"{base}/sandbox/telegram",
            "username": f"sandbox_lead_{tenant_id}_bot",
        },
        display_name="Telegram sandbox bot",
    )


async def list_connections(actor: Actor) -> list[ChannelConnection]:
    """The tenant's connections, oldest first."""
    actor.require_read()
    return await ChannelConnection.filter(tenant_id=actor.tenant_id).order_by("id")


async def access_connection(actor: Actor, connection_id: int) -> ChannelConnection:
    """One connection of the actor's tenant."""
    actor.require_read()
    connection = await ChannelConnection.get_or_none(id=connection_id, tenant_id=actor.tenant_id)
    if connection is None:
        raise NotFound("channel connection", connection_id)
    return connection


async def do_set_connection_active(
    actor: Actor, connection_id: int, active: bool
) -> ChannelConnection:
    """Pause or resume a connection: a paused one takes no webhooks and sends nothing."""
    actor.require_admin()
    async with in_transaction() as conn:
        connection = (
            await ChannelConnection.filter(id=connection_id, tenant_id=actor.tenant_id)
            .using_db(conn)
            .select_for_update()
            .first()
        )
        if connection is None:
            raise NotFound("channel connection", connection_id)
        if connection.active == active:
            return connection
        before = _audit_view(connection)
        connection.active = active
        await connection.save(using_db=conn)
        await record_event(
            actor,
            ChannelUpdated,
            connection.id,
            before=before,
            after=_audit_view(connection),
            using_db=conn,
        )
    return connection


async def load_connection(cipher: CredentialCipher, connection_id: int) -> ConnectionInfo | None:
    """An active connection by id for the edges (webhooks, workers); None if unknown."""
    connection = await ChannelConnection.get_or_none(id=connection_id, active=True)
    if connection is None:
        return None
    return connection_info(connection, cipher)


async def sandbox_connections(cipher: CredentialCipher) -> list[ConnectionInfo]:
    """Every active sandbox connection, to register with the emulators at start-up."""
    rows = await ChannelConnection.filter(sandbox=True, active=True).order_by("id")
    return [connection_info(row, cipher) for row in rows]


async def sandbox_connection_ids() -> list[int]:
    """Ids of the active sandbox connections (a cheap check for the emulators)."""
    rows = await ChannelConnection.filter(sandbox=True, active=True).only("id")
    return [row.id for row in rows]
