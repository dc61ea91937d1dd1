"""The outbox relay: hands committed events to the task queue, in id order, in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from taskiq import AsyncBroker
from tortoise.backends.base.client import TransactionContextPooled
from tortoise.backends.sqlite.client import SqliteTransactionContext
from tortoise.connection import get_connections
from tortoise.transactions import in_transaction

from crm.models import OutboxEntry
from crm.tasks.handlers import dispatch_event

logger = logging.getLogger(__name__)

T = TypeVar("T")


def harden_tortoise_transactions() -> None:
    """Make a tortoise transaction that fails to start give back what it took (process-wide).

    tortoise 1.1.9 takes the connection (a pool connection on PostgreSQL, the single
    connection's lock on SQLite) and points the task's connection contextvar at the new
    transaction before BEGIN, and undoes neither when BEGIN raises. On PostgreSQL a BEGIN on a
    connection the server just killed then leaks a pool connection each time: after a few
    restarts the pool (5) is exhausted and every query waits forever. On SQLite a task
    cancelled during BEGIN (a loop stopped at shutdown) keeps the lock, and every later query
    waits forever. Both were reproduced; these wrappers release and reset on failure.
    Idempotent.
    """
    pooled = TransactionContextPooled.__aenter__
    if getattr(pooled, "_crm_hardened", False):
        return

    async def pooled_aenter(self: TransactionContextPooled) -> Any:
        try:
            return await pooled(self)
        except BaseException:
            _reset_token(self)
            connection = getattr(self.client, "_connection", None)
            pool = getattr(self.client._parent, "_pool", None)
            if connection is not None and pool is not None:
                with contextlib.suppress(Exception):
                    await pool.release(connection)
            raise

    async def sqlite_aenter(self: SqliteTransactionContext) -> Any:
        # tortoise's own body, with the lock released when anything after acquiring it fails.
        await self._trxlock.acquire()
        try:
            await self.ensure_connection()
            self.token = get_connections().set(self.connection_name, self.connection)
            await self.connection.begin()
        except BaseException:
            _reset_token(self)
            self._trxlock.release()
            raise
        return self.connection

    pooled_aenter._crm_hardened = True  # type: ignore[attr-defined]
    TransactionContextPooled.__aenter__ = pooled_aenter  # type: ignore[method-assign]
    SqliteTransactionContext.__aenter__ = sqlite_aenter  # type: ignore[method-assign]


def _reset_token(context: Any) -> None:
    token = getattr(context, "token", None)
    if token is not None and not token._used:
        get_connections().reset(token)


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


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def run_iteration(coro: Coroutine[Any, Any, T], limit: float, name: str) -> T:
    """Run one loop iteration as its own asyncio task; abandon it after ``limit`` seconds.

    A fresh task starts from a clean context (see run_relay). The limit covers a database or
    Redis call that never answers (a half-open TCP connection after a host dies): the stuck
    task is cancelled and not waited for, so the loop goes on with new connections.
    """
    task = asyncio.create_task(coro, name=name)
    try:
        done, _ = await asyncio.wait({task}, timeout=limit)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        raise TimeoutError(f"{name} still running after {limit:.0f}s; abandoned")
    return task.result()


async def run_relay(
    broker: AsyncBroker,
    interval: float,
    *,
    batch_size: int = 100,
    max_backoff: float = 30.0,
    iteration_timeout: float = 60.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Relay until ``stop`` is set: drain the outbox, sleep ``interval``; back off on errors.

    Stop it with ``stop`` rather than by cancelling it: the current iteration then finishes
    its transaction instead of being cut inside it.

    Each iteration runs as its own asyncio task. When BEGIN fails on a connection the server
    has dropped (a PostgreSQL restart), tortoise leaves the coroutine's connection contextvar
    pointing at the dead transaction: inline iterations in one long-lived coroutine then
    failed forever (InterfaceError), while a fresh task per iteration starts clean.
    harden_tortoise_transactions removes that cause; the fresh task stays as a second guard.
    """
    stop = stop or asyncio.Event()
    delay = interval
    failing = False
    while not stop.is_set():
        try:
            sent = await run_iteration(
                relay_once(broker, batch_size=batch_size),
                iteration_timeout,
                "crm-relay-iteration",
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            delay = min(max(delay * 2, interval), max_backoff)
            # The traceback once per outage; after that one line per attempt.
            logger.warning(
                "outbox relay failed (%r); retrying in %.2fs", exc, delay, exc_info=not failing
            )
            failing = True
            await pause(stop, delay)
            continue
        if failing:
            logger.info("outbox relay recovered")
        failing = False
        delay = interval
        if sent < batch_size:
            await pause(stop, interval)
