"""The taskiq broker: in-process for the embedded mode, a Redis stream when a URL is given."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from taskiq import (
    AckableMessage,
    AsyncBroker,
    BrokerMessage,
    InMemoryBroker,
    ScheduleSource,
    SmartRetryMiddleware,
    TaskiqMessage,
    TaskiqScheduler,
)
from taskiq.exceptions import UnknownTaskError
from taskiq_redis import RedisStreamBroker

from crm.db import harden_tortoise_transactions
from crm.tasks import handlers, periodic  # noqa: F401  (register their tasks with every broker)
from crm.tasks.relay import RelayNudgeMiddleware
from crm.tasks.schedule import InMemoryScheduleSource, RedisScheduleSource

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneConfig:
    """Knobs of the task backbone; the composition root fills them from Settings."""

    namespace: str = "crm"
    relay_interval: float = 0.05
    relay_batch_size: int = 100
    scheduler_interval: float = 1.0
    worker_concurrency: int = 10
    retry_delay: float = 2.0
    retry_max_delay: float = 300.0
    max_retries: int = 10
    retry_jitter: bool = True
    # Seconds a Redis task may stay unacknowledged before another worker takes it over: a
    # killed worker's task waits this long, and a task running longer may run twice.
    redelivery_after: float = 60.0
    shutdown_timeout: float = 10.0
    # None: standalone workers relay the outbox only on PostgreSQL (SKIP LOCKED makes many
    # relays safe there); with SQLite the `crm up` process is the single relay.
    relay_in_worker: bool | None = None
    # With Redis, `crm up` also consumes tasks unless this is off (then only `crm worker` does).
    embedded_worker: bool = True

    @property
    def stream_name(self) -> str:
        """The Redis stream holding the tasks."""
        return f"{self.namespace}:tasks"

    @property
    def consumer_group(self) -> str:
        """The consumer group every worker joins."""
        return f"{self.namespace}:workers"

    @property
    def schedule_prefix(self) -> str:
        """The Redis key prefix of the schedule source."""
        return f"{self.namespace}:schedule"


class BackoffRetryMiddleware(SmartRetryMiddleware):
    """SmartRetryMiddleware with exponential backoff and proportional jitter.

    The stock exponent is linear (delay * attempt) and its jitter adds up to one whole second,
    which swamps short delays; this one doubles per attempt and jitters by +-20%.
    """

    def make_delay(self, message: TaskiqMessage, retries: int) -> float:
        """The delay before attempt ``retries + 1``."""
        base = float(message.labels.get("delay", self.default_delay))
        delay = min(base * 2 ** max(retries - 1, 0), self.max_delay_exponent)
        if self.use_jitter:
            delay *= random.uniform(0.8, 1.2)  # spreading load, not security
        return delay


class LocalBroker(InMemoryBroker):
    """The in-process broker of the embedded mode: each task runs as its own asyncio task.

    Unlike InMemoryBroker it starts tasks in the context captured at startup, not the caller's:
    a task sent from inside a tortoise transaction would otherwise inherit that transaction as
    its connection (tortoise keeps it in a contextvar) and run its queries inside it.
    """

    def __init__(self, max_async_tasks: int = 10) -> None:
        super().__init__(max_async_tasks=max_async_tasks, await_inplace=False)
        self._context: contextvars.Context | None = None
        self._slots = asyncio.Semaphore(max_async_tasks)
        self._inflight: dict[asyncio.Task[None], BrokerMessage] = {}

    async def startup(self) -> None:
        """Remember the clean context tasks will run in, then start as InMemoryBroker does."""
        self._context = contextvars.copy_context()
        await super().startup()

    async def kick(self, message: BrokerMessage) -> None:
        """Start the task in the background, at most ``max_async_tasks`` at a time."""
        if self.find_task(message.task_name) is None:
            raise UnknownTaskError(task_name=message.task_name)
        context = (self._context or contextvars.copy_context()).copy()
        task = asyncio.create_task(self._run(message), context=context)
        self._running_tasks.add(task)
        self._inflight[task] = message
        task.add_done_callback(self._forget)

    async def _run(self, message: BrokerMessage) -> None:
        async with self._slots:
            await self.receiver.callback(message=message.message)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._running_tasks.discard(task)
        self._inflight.pop(task, None)

    async def drain(self, grace: float) -> list[TaskiqMessage]:
        """Wait up to ``grace`` seconds for running tasks; cancel the rest and return them."""
        running = list(self._inflight)
        if running:
            await asyncio.wait(running, timeout=grace)
        leftovers = [(t, m) for t, m in list(self._inflight.items()) if not t.done()]
        for task, _ in leftovers:
            task.cancel()
        if leftovers:
            # Bounded: a task cancelled inside a call to a dead database may never finish.
            await asyncio.wait([t for t, _ in leftovers], timeout=grace)
        return [self.formatter.loads(m.message) for _, m in leftovers]


class ReclaimingStreamBroker(RedisStreamBroker):
    """RedisStreamBroker that reclaims a dead worker's tasks even when nothing new arrives.

    The stock listen() runs XAUTOCLAIM only after XREADGROUP returned new messages, so a task
    whose worker was killed waits for the next unrelated task. Here XAUTOCLAIM runs at least
    every ``reclaim_every`` seconds, busy or idle. Tasks are read one at a time, when the
    receiver has a free slot, so a busy worker does not hoard tasks an idle one could run (and
    that would otherwise be reclaimed from it while still queued). Acknowledged entries are
    deleted, so the stream holds only unfinished work instead of growing forever.
    """

    def __init__(self, url: str, *, reclaim_every: float = 1.0, **kwargs: Any) -> None:
        kwargs.setdefault("xread_count", 1)
        kwargs.setdefault("unacknowledged_batch_size", 1)
        super().__init__(url, **kwargs)
        self.reclaim_every = reclaim_every

    async def kick(self, message: BrokerMessage) -> None:
        """Append a task to the stream through one long-lived client.

        The stock kick builds a Redis client per task; on a webhook's hot path that was a
        tenth of the accept time (measured), and the pool behind it is shared anyway.
        """
        queue_name = message.labels.get("queue_name") or self.queue_name
        await self._client().xadd(
            queue_name,
            {b"data": message.message},
            maxlen=self.maxlen,
            approximate=self.approximate,
        )

    def _client(self) -> Redis:
        client: Redis | None = getattr(self, "_shared_client", None)
        if client is None:
            client = Redis(connection_pool=self.connection_pool)
            self._shared_client = client
        return client

    def _ack_generator(self, id: str, queue_name: str) -> Callable[[], Awaitable[None]]:
        async def _ack() -> None:
            async with self._client().pipeline(transaction=True) as pipe:
                pipe.xack(queue_name, self.consumer_group_name, id)
                pipe.xdel(queue_name, id)
                await pipe.execute()

        return _ack

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        """Yield tasks idle longer than ``idle_timeout`` ms, then new tasks, in rounds."""
        streams: dict[str, str | int] = {self.queue_name: ">", **self.additional_streams}
        loop = asyncio.get_running_loop()
        next_reclaim = loop.time()
        async with Redis(connection_pool=self.connection_pool) as redis:
            while True:
                if loop.time() >= next_reclaim:
                    reclaimed = False
                    for stream in streams:
                        claimed: Any = await redis.xautoclaim(
                            name=stream,
                            groupname=self.consumer_group_name,
                            consumername=self.consumer_name,
                            min_idle_time=self.idle_timeout,
                            count=self.unacknowledged_batch_size,
                        )
                        for entry_id, fields in claimed[1]:
                            if fields:  # Redis 6 lists trimmed entries with no fields
                                logger.info("reclaimed unacknowledged task %s", entry_id)
                                reclaimed = True
                                yield self._ackable(stream, entry_id, fields)
                    if reclaimed:
                        continue  # more may be waiting: claim again before reading new ones
                    next_reclaim = loop.time() + self.reclaim_every
                fetched: Any = await redis.xreadgroup(
                    self.consumer_group_name,
                    self.consumer_name,
                    streams,  # type: ignore[arg-type]  # redis-py types the ids too narrowly
                    block=self.block,
                    count=self.count,
                    noack=False,
                )
                for stream, entries in fetched or []:
                    for entry_id, fields in entries:
                        yield self._ackable(stream, entry_id, fields)

    def _ackable(self, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> AckableMessage:
        return AckableMessage(
            data=fields[b"data"], ack=self._ack_generator(id=entry_id, queue_name=stream)
        )


@dataclass(frozen=True)
class Backbone:
    """A broker and the schedule source its retries and one-off schedules live in."""

    broker: AsyncBroker
    schedule_source: ScheduleSource
    config: BackboneConfig
    redis_url: str | None

    @property
    def in_process(self) -> bool:
        """True when tasks run in this process only (no Redis)."""
        return self.redis_url is None

    def scheduler(self) -> TaskiqScheduler:
        """A taskiq scheduler sending this backbone's schedules to its broker."""
        return TaskiqScheduler(broker=self.broker, sources=[self.schedule_source])

    async def startup(self) -> None:
        """Open the schedule source and the broker (declares the Redis consumer group)."""
        await self.schedule_source.startup()
        await self.broker.startup()

    async def shutdown(self) -> None:
        """Close the broker and the schedule source."""
        try:
            await self.broker.shutdown()
        finally:
            await self.schedule_source.shutdown()


def build_backbone(redis_url: str | None, config: BackboneConfig | None = None) -> Backbone:
    """The in-process backbone when ``redis_url`` is None, else the Redis stream backbone.

    Also installs harden_tortoise_transactions (process-wide, once), which every process
    running the backbone needs to survive database restarts and cancelled transactions.
    """
    harden_tortoise_transactions()
    config = config or BackboneConfig()
    source: ScheduleSource
    broker: AsyncBroker
    if redis_url is None:
        source = InMemoryScheduleSource()
        broker = LocalBroker(max_async_tasks=config.worker_concurrency)
    else:
        source = RedisScheduleSource(redis_url, prefix=config.schedule_prefix)
        broker = ReclaimingStreamBroker(
            redis_url,
            queue_name=config.stream_name,
            consumer_group_name=config.consumer_group,
            # "0", not "$": a group created after tasks were queued still receives them.
            consumer_id="0",
            xread_block=1000,
            idle_timeout=int(config.redelivery_after * 1000),
            reclaim_every=min(1.0, config.redelivery_after / 2),
        )
    # Without a schedule source the retry middleware re-sends at once and its delay is lost.
    broker.add_middlewares(
        BackoffRetryMiddleware(
            default_retry_count=config.max_retries,
            default_delay=config.retry_delay,
            use_jitter=config.retry_jitter,
            use_delay_exponent=True,
            max_delay_exponent=config.retry_max_delay,
            schedule_source=source,
        ),
        RelayNudgeMiddleware(),
    )
    return Backbone(broker=broker, schedule_source=source, config=config, redis_url=redis_url)
