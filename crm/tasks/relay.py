"""The outbox relay: hands committed events to the task queue, in id order, in batches."""

from __future__ import annotations

import asyncio
import logging

from taskiq import AsyncBroker
from tortoise.transactions import in_transaction

from crm.models import OutboxEntry
from crm.tasks.handlers import dispatch_event

logger = logging.getLogger(__name__)


async def relay_once(broker: AsyncBroker, *, batch_size: int = 100) -> int:
    """Send up to ``batch_size`` outbox entries to the broker and delete them; returns the count.

    The entries are locked with SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL, so several
    relays share the work (tortoise drops the clause on SQLite, where one process relays). A crash
    after sending and before the commit sends those events again: handlers tolerate that.
    """
    async with in_transaction() as conn:
        entries = (
            await OutboxEntry.all()
            .using_db(conn)
            .order_by("id")
            .limit(batch_size)
            .select_for_update(skip_locked=True)
        )
        if not entries:
            return 0
        kicker = dispatch_event.kicker().with_broker(broker)
        for entry in entries:
            await kicker.kiq(entry.event_id)
        await OutboxEntry.filter(id__in=[e.id for e in entries]).using_db(conn).delete()
    return len(entries)


async def run_relay(
    broker: AsyncBroker, interval: float, *, batch_size: int = 100, max_backoff: float = 30.0
) -> None:
    """Relay forever: drain the outbox, sleep ``interval``; log and back off on errors.

    Each iteration runs as its own asyncio task. A transaction whose connection died (a
    PostgreSQL restart) can leave tortoise's connection contextvar pointing at the dead
    transaction in the coroutine that ran it; inline iterations in one long-lived coroutine
    then failed forever, while a fresh task per iteration starts from a clean context.
    """
    delay = interval
    failing = False
    while True:
        try:
            sent = await asyncio.create_task(
                relay_once(broker, batch_size=batch_size), name="crm-relay-iteration"
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            delay = min(max(delay * 2, interval), max_backoff)
            # The traceback once per outage; after that one line per attempt.
            logger.warning(
                "outbox relay failed (%r); retrying in %.1fs", exc, delay, exc_info=not failing
            )
            failing = True
            await asyncio.sleep(delay)
            continue
        if failing:
            logger.info("outbox relay recovered")
        failing = False
        delay = interval
        if sent < batch_size:
            await asyncio.sleep(interval)
