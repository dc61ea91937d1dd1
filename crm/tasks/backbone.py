"""Running the backbone: embedded in the API process (`crm up`), or as a worker or scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from taskiq.receiver import Receiver

from crm.db import close_db, dialect, init_db
from crm.models import Event, OutboxEntry
from crm.tasks.broker import Backbone, BackboneConfig, LocalBroker, build_backbone
from crm.tasks.handlers import DISPATCH_TASK
from crm.tasks.periodic import periodic_scheduler
from crm.tasks.relay import pause, run_relay
from crm.tasks.schedule import SchedulePoller

logger = logging.getLogger(__name__)

NO_REDIS_MESSAGE = (
    "crm {command}: CRM_REDIS_URL is not set. Without Redis the task queue lives inside the "
    "`crm up` process and cannot be shared with a separate {command}; run `crm up` alone, or "
    "set CRM_REDIS_URL (for example redis://127.0.0.1:6379/0) for it and every {command}."
)


async def serve_worker(backbone: Backbone, concurrency: int, stop: asyncio.Event) -> None:
    """Run tasks from the Redis broker until ``stop`` is set; reconnect after broker errors."""
    backoff = 1.0
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="crm-task") as executor:
        while not stop.is_set():
            receiver = Receiver(
                broker=backbone.broker,
                executor=executor,
                max_async_tasks=concurrency,
                run_startup=False,
                # On stop: finish running tasks for this long; unfinished ones stay
                # unacknowledged and another worker takes them over.
                wait_tasks_timeout=backbone.config.shutdown_timeout,
            )
            try:
                await receiver.listen(stop)
                backoff = 1.0
            except Exception as exc:
                logger.warning("task worker lost the broker (%r); retrying in %.0fs", exc, backoff)
                await pause(stop, backoff)
                backoff = min(backoff * 2, 30.0)


async def _settle(tasks: list[asyncio.Task[None]], grace: float) -> None:
    """Wait up to ``grace`` seconds for ``tasks`` to end, then cancel what is left and go on.

    Stopping must not hang: a task stuck in a call to a dead database may never finish.
    """
    _, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        logger.warning("task %s did not stop within %.0fs; abandoned", task.get_name(), grace)
        task.cancel()


async def _park_unfinished_dispatches(backbone: Backbone) -> None:
    """Embedded mode stopping: put events whose dispatch has not finished back in the outbox.

    The in-process queue and its pending retries die with the process; their events are
    written back as outbox entries so the next start hands them out again.
    """
    broker = backbone.broker
    if not isinstance(broker, LocalBroker):
        return
    messages = await broker.drain(grace=backbone.config.shutdown_timeout)
    event_ids = {int(m.args[0]) for m in messages if m.task_name == DISPATCH_TASK and m.args}
    for schedule in await backbone.schedule_source.get_schedules():
        if schedule.task_name == DISPATCH_TASK and schedule.args:
            event_ids.add(int(schedule.args[0]))
    if not event_ids:
        return
    try:
        existing = await Event.filter(id__in=sorted(event_ids)).values_list("id", flat=True)
        await OutboxEntry.bulk_create([OutboxEntry(event_id=i) for i in sorted(existing)])
        logger.info("put %d unfinished event(s) back in the outbox", len(existing))
    except Exception:
        logger.exception("could not put unfinished events %s back in the outbox", event_ids)


@contextlib.asynccontextmanager
async def embedded_backbone(
    redis_url: str | None, config: BackboneConfig | None = None
) -> AsyncIterator[Backbone]:
    """Run relay, scheduler (periodic tasks too) and workers here while the block runs (`crm up`).

    The database must already be initialised. Without Redis the in-process broker runs the
    tasks itself; with Redis a worker receiver runs here too, next to any `crm worker`.
    """
    backbone = build_backbone(redis_url, config)
    cfg = backbone.config
    await backbone.startup()
    stop = asyncio.Event()
    loops = [
        asyncio.create_task(
            run_relay(
                backbone.broker, cfg.relay_interval, batch_size=cfg.relay_batch_size, stop=stop
            ),
            name="crm-relay",
        ),
        asyncio.create_task(
            SchedulePoller(periodic_scheduler(backbone)).run(cfg.scheduler_interval, stop=stop),
            name="crm-scheduler",
        ),
    ]
    worker = None
    if not backbone.in_process and cfg.embedded_worker:
        worker = asyncio.create_task(
            serve_worker(backbone, cfg.worker_concurrency, stop), name="crm-worker"
        )
    try:
        yield backbone
    finally:
        stop.set()
        await _settle(loops, cfg.shutdown_timeout)
        if worker is not None:
            await _settle([worker], cfg.shutdown_timeout * 2)
        await _park_unfinished_dispatches(backbone)
        await backbone.shutdown()


@contextlib.asynccontextmanager
async def _stop_on_signals() -> AsyncIterator[asyncio.Event]:
    """An event set by SIGTERM or SIGINT while the block runs."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def run_worker(
    database_url: str,
    redis_url: str | None,
    concurrency: int = 10,
    *,
    config: BackboneConfig | None = None,
    on_stop: Callable[[], Awaitable[object]] | None = None,
) -> int:
    """`crm worker`: run tasks from Redis until SIGTERM/SIGINT; returns the exit code.

    ``on_stop`` runs once the worker took its last task, before the database closes (the
    operator bot stops there: its team inbox senders finish their posts).
    """
    if not redis_url:
        print(NO_REDIS_MESSAGE.format(command="worker"), file=sys.stderr)
        return 2
    await init_db(database_url)
    try:
        backbone = build_backbone(redis_url, config)
        cfg = backbone.config
        backbone.broker.is_worker_process = True
        await backbone.startup()
        try:
            async with _stop_on_signals() as stop:
                worker = asyncio.create_task(serve_worker(backbone, concurrency, stop))
                relays = cfg.relay_in_worker
                if relays is None:
                    relays = dialect() == "postgres"
                relay = None
                if relays:
                    relay = asyncio.create_task(
                        run_relay(
                            backbone.broker,
                            cfg.relay_interval,
                            batch_size=cfg.relay_batch_size,
                            stop=stop,
                        )
                    )
                logger.info("crm worker: consuming %s (relay: %s)", cfg.stream_name, relays)
                await stop.wait()
                logger.info("crm worker: stopping")
                if relay is not None:
                    await _settle([relay], cfg.shutdown_timeout)
                await _settle([worker], cfg.shutdown_timeout * 2)
        finally:
            await backbone.shutdown()
    finally:
        try:
            if on_stop is not None:
                await on_stop()
        finally:
            await close_db()
    return 0


async def run_scheduler(
    database_url: str,
    redis_url: str | None,
    interval: float = 1.0,
    *,
    config: BackboneConfig | None = None,
) -> int:
    """`crm scheduler`: send due schedules to Redis until SIGTERM/SIGINT; returns the exit code.

    The schedules live in Redis, so ``database_url`` is not opened; it is accepted so every
    runtime command takes the same arguments.
    """
    del database_url
    if not redis_url:
        print(NO_REDIS_MESSAGE.format(command="scheduler"), file=sys.stderr)
        return 2
    backbone = build_backbone(redis_url, config)
    backbone.broker.is_scheduler_process = True
    await backbone.startup()
    try:
        async with _stop_on_signals() as stop:
            poller = asyncio.create_task(
                SchedulePoller(periodic_scheduler(backbone)).run(interval, stop=stop)
            )
            logger.info(
                "crm scheduler: polling %s every %.1fs", backbone.config.schedule_prefix, interval
            )
            await stop.wait()
            await _settle([poller], backbone.config.shutdown_timeout)
    finally:
        await backbone.shutdown()
    return 0
