"""Channel wiring shared by every process: the adapter registry, ingest and delivery.

The composition root (``crm.app`` for ``crm up``, ``crm.cli`` for ``crm worker``) calls
``install`` once with its collaborators; the ingest task and the delivery handler below then
find them here. Webhook views only verify and enqueue; everything slow happens in these tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from taskiq import async_shared_broker
from tortoise.backends.base.client import BaseDBAsyncClient

from channels.base import INGEST_TASK
from crm.messaging import (
    MEDIA_KINDS,
    BusinessConnectionUpdate,
    ChannelAdapter,
    ChannelKind,
    ConnectionInfo,
    InboundEdit,
    InboundMessage,
    InboundPreference,
    InboundStatus,
    InboundUpdate,
    MediaStore,
)
from crm.models import Event
from crm.services.events.catalog import MessageQueued
from crm.services.inbox import business_links, delivery_receipts, inbound_messages, lead_preferences
from crm.services.inbox.outbound import DeliveryDeps, deliver_message
from crm.tasks.handlers import HandlerRegistry, Order
from crm.tasks.handlers import registry as event_handlers

logger = logging.getLogger(__name__)

DELIVERY_HANDLER = "channels.deliver"
MAX_MEDIA_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class ChannelRuntime:
    """The collaborators of ingest and delivery in this process."""

    adapters: Mapping[ChannelKind, ChannelAdapter]
    load_connection: Callable[[int], Awaitable[ConnectionInfo | None]]
    media: MediaStore
    delivery: DeliveryDeps

    def adapter_for(self, kind: ChannelKind) -> ChannelAdapter:
        """The adapter of a channel kind."""
        return self.adapters[kind]


_runtime: ChannelRuntime | None = None


def install(runtime: ChannelRuntime, handlers: HandlerRegistry | None = None) -> None:
    """Make ``runtime`` the one the tasks use and register the delivery handler (idempotent)."""
    global _runtime
    _runtime = runtime
    handlers = handlers or event_handlers
    handlers.remove(DELIVERY_HANDLER)
    handlers.add(MessageQueued, _deliver, name=DELIVERY_HANDLER, atomic=False, order=Order.DELIVER)


def current() -> ChannelRuntime:
    """The installed runtime; a worker without one is a wiring bug."""
    if _runtime is None:
        raise RuntimeError("channels.ingest_delivery.install() was not called in this process")
    return _runtime


async def _deliver(event: Event, conn: BaseDBAsyncClient) -> None:
    if event.entity_id is None:
        return
    await deliver_message(event.entity_id, current().delivery)


def _update_key(kind: ChannelKind, adapter: ChannelAdapter, body: bytes) -> str | None:
    """Telegram numbers its updates: the id dedupes a redelivered webhook."""
    if kind is not ChannelKind.TELEGRAM:
        return None
    update_id_of = getattr(adapter, "update_id_of", None)
    if update_id_of is None:
        return None
    update_id = update_id_of(body)
    return None if update_id is None else str(update_id)


async def process_webhook(runtime: ChannelRuntime, connection_id: int, body: bytes) -> int:
    """Parse a verified webhook body and store what it carries; returns the updates applied."""
    connection = await runtime.load_connection(connection_id)
    if connection is None:
        logger.warning("webhook for unknown or paused connection %s dropped", connection_id)
        return 0
    adapter = runtime.adapter_for(connection.kind)
    key = _update_key(connection.kind, adapter, body)
    if key is not None and not await inbound_messages.claim_update(connection.id, key):
        return 0
    try:
        updates = adapter.parse(connection, body)
        for update in updates:
            await _apply(runtime, adapter, connection, update)
    except BaseException:
        if key is not None:
            await inbound_messages.release_update(connection.id, key)
        raise
    return len(updates)


async def _apply(
    runtime: ChannelRuntime,
    adapter: ChannelAdapter,
    connection: ConnectionInfo,
    update: InboundUpdate,
) -> None:
    if isinstance(update, InboundMessage):
        media = None
        if update.media is not None:
            # A redelivered webhook must not download (and store) the attachment again.
            if await inbound_messages.find_message(connection.id, update.external_id) is not None:
                return
            media = await _store_media(runtime, adapter, connection, update)
        await inbound_messages.receive_message(connection, update, media)
    elif isinstance(update, InboundStatus):
        await delivery_receipts.apply_status(connection, update)
    elif isinstance(update, InboundPreference):
        await lead_preferences.apply_preference(connection, update)
    elif isinstance(update, InboundEdit):
        await inbound_messages.apply_edit(connection, update)
    elif isinstance(update, BusinessConnectionUpdate):
        await business_links.apply_business_connection(connection, update)


async def _store_media(
    runtime: ChannelRuntime,
    adapter: ChannelAdapter,
    connection: ConnectionInfo,
    message: InboundMessage,
) -> dict[str, object] | None:
    """Download an attachment and keep it; a failed download keeps the message, not the file."""
    if message.media is None or message.kind not in MEDIA_KINDS:
        return None
    ref = message.media
    info: dict[str, object] = {
        "provider_media_id": ref.provider_media_id,
        "mime_type": ref.mime_type,
        "filename": ref.filename,
        "sha256": ref.sha256,
    }
    try:
        data = await adapter.download_media(connection, ref)
    except Exception as exc:
        logger.warning(
            "media of message %s on connection %s not downloaded: %s",
            message.external_id,
            connection.id,
            type(exc).__name__,
        )
        info["error"] = "download failed"
        return info
    if len(data) > MAX_MEDIA_BYTES:
        info["error"] = "too large"
        return info
    name = ref.filename or f"{message.kind.value}-{message.external_id}"
    info["key"] = await runtime.media.put(connection.tenant_id, name, data)
    info["size"] = len(data)
    return info


@async_shared_broker.task(task_name=INGEST_TASK, retry_on_error=True)
async def ingest(connection_id: int, body: str) -> None:
    """Store what one verified webhook body carries (the task the webhook views send)."""
    await process_webhook(current(), connection_id, body.encode())
