"""The outbox relay: hands committed events to the task queue, in id order, in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from taskiq import AsyncBroker, TaskiqMessage, TaskiqMiddleware, TaskiqResult
from tortoise.transactions import in_transaction

from crm.models import OutboxEntry
from crm.services.events.recording import outbox_writes
from crm.tasks.handlers import dispatch_event

logger = logging.getLogger(__name__)

T = TypeVar("T")


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


# The wake-up events of the relays running in this process (one per run_relay).
_wakeups: set[asyncio.Event] = set()


def nudge_relays() -> None:
    """Wake this process's relays now rather than at their next poll."""
    for wakeup in _wakeups:
        wakeup.set()


class RelayNudgeMiddleware(TaskiqMiddleware):
    """After a task that wrote events, wake the relay of this process.

    The task's transactions have committed when it returns, so the relay finds its outbox
    entries at once: an event waits milliseconds, not up to a whole poll interval, before its
    handlers (a lead's notification among them) are queued.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen = outbox_writes()

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        """Nudge when the outbox grew since the last task."""
        current = outbox_writes()
        if current != self._seen:
            self._seen = current
            nudge_relays()


async def _pause_or_wake(stop: asyncio.Event, wakeup: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` or ``wakeup`` is set meanwhile."""
    if wakeup.is_set() or stop.is_set():
        return
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wakeup.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


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
    crm.db.harden_tortoise_transactions removes that cause; the fresh task stays as a second guard.
    """
    stop = stop or asyncio.Event()
    wakeup = asyncio.Event()
    _wakeups.add(wakeup)
    try:
        await _relay_loop(
            broker, interval, batch_size, max_backoff, iteration_timeout, stop, wakeup
        )
    finally:
        _wakeups.discard(wakeup)


async def _relay_loop(
    broker: AsyncBroker,
    interval: float,
    batch_size: int,
    max_backoff: float,
    iteration_timeout: float,
    stop: asyncio.Event,
    wakeup: asyncio.Event,
) -> None:
    delay = interval
    failing = False
    while not stop.is_set():
        wakeup.clear()  # a nudge from now on is for entries this iteration may not see
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
            await _pause_or_wake(stop, wakeup, interval)
