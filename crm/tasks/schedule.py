"""Schedules: one-off, cron and periodic tasks' sources, the poller that sends them, schedule_at."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from taskiq import AsyncTaskiqDecoratedTask, ScheduledTask, ScheduleSource, TaskiqScheduler
from taskiq.cli.scheduler.run import CronValueError, is_cron_task_now
from taskiq.exceptions import ScheduledTaskCancelledError
from taskiq.kicker import AsyncKicker
from taskiq.serializers import JSONSerializer
from taskiq_redis import ListRedisScheduleSource

from crm.tasks.relay import pause, run_iteration

if TYPE_CHECKING:
    from taskiq import AsyncBroker

    from crm.tasks import TaskQueue
    from crm.tasks.broker import Backbone

logger = logging.getLogger(__name__)

UTC = dt.UTC
# The label of an interval schedule whose first firing waits one interval instead of the
# poller's first tick.
DELAY_FIRST = "delay_first"


def _aware(value: dt.datetime) -> dt.datetime:
    # taskiq itself reads a naive schedule time as UTC; do the same.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class InMemoryScheduleSource(ScheduleSource):
    """One-off (``time``), cron and interval schedules kept in this process's memory.

    taskiq ships no in-process source that accepts new schedules; the embedded mode needs one
    for delayed retries and follow-ups. A one-off is deleted once sent.
    """

    def __init__(self) -> None:
        self._schedules: dict[str, ScheduledTask] = {}

    async def get_schedules(self) -> list[ScheduledTask]:
        """Every schedule, in the order they were added."""
        return list(self._schedules.values())

    async def add_schedule(self, schedule: ScheduledTask) -> None:
        """Keep a schedule (replacing one with the same id)."""
        self._schedules[schedule.schedule_id] = schedule

    async def delete_schedule(self, schedule_id: str) -> None:
        """Forget a schedule; unknown ids are ignored."""
        self._schedules.pop(schedule_id, None)

    async def post_send(self, task: ScheduledTask) -> None:
        """A one-off fires once: delete it after it was sent."""
        if task.time is not None:
            await self.delete_schedule(task.schedule_id)


class RedisScheduleSource(ListRedisScheduleSource):
    """taskiq-redis's list source, made safe for several schedulers and for untrusted Redis.

    Schedules are stored as JSON rather than pickle (the default), and each firing is claimed
    with SET NX first, so two schedulers (two ``crm up`` replicas) do not both send it.
    """

    CLAIM_SECONDS = 60

    def __init__(self, url: str, prefix: str = "schedule") -> None:
        super().__init__(url, prefix=prefix, serializer=JSONSerializer())
        self._claim_prefix = f"{prefix}:claim"

    async def shutdown(self) -> None:
        """Close the connection pool."""
        await self._connection_pool.disconnect()

    def _parse_time_key(self, key: str) -> dt.datetime | None:
        """The minute of a one-off bucket key ``<prefix>:time:<YYYY-MM-DDTHH:MM>``.

        taskiq-redis splits the key on its first two colons, which only works for a prefix
        without any; ours ("crm:schedule") has one, so buckets of past minutes were never
        read again and a one-off not sent within its own minute was lost.
        """
        _, marker, stamp = key.rpartition(":time:")
        if not marker:
            return None
        try:
            return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC)
        except ValueError:
            return None

    def _claim_key(self, task: ScheduledTask, now: dt.datetime) -> tuple[str, int]:
        if task.time is not None:
            return f"{self._claim_prefix}:{task.schedule_id}", self.CLAIM_SECONDS
        if task.cron is not None:
            minute = now.strftime("%Y%m%d%H%M")
            return f"{self._claim_prefix}:{task.schedule_id}:{minute}", 120
        interval = task.interval or 1
        seconds = max(
            int(interval.total_seconds() if isinstance(interval, dt.timedelta) else interval), 1
        )
        bucket = int(now.timestamp()) // seconds
        return f"{self._claim_prefix}:{task.schedule_id}:{bucket}", seconds * 2

    async def claim(self, task: ScheduledTask) -> bool:
        """Claim this firing of ``task`` for this scheduler; False when another claimed it.

        A cron firing is claimed per minute, an interval one per interval-long slice of time.
        """
        key, ttl = self._claim_key(task, dt.datetime.now(UTC))
        async with Redis(connection_pool=self._connection_pool) as redis:
            return bool(await redis.set(key, b"1", nx=True, ex=ttl))

    async def pre_send(self, task: ScheduledTask) -> None:
        """Claim this firing; another scheduler that claimed it first sends it instead."""
        if not await self.claim(task):
            raise ScheduledTaskCancelledError


@dataclass(frozen=True)
class Periodic:
    """A task sent every ``every``: at the scheduler's first tick, or one interval later."""

    task_name: str
    every: dt.timedelta
    delay_first: bool = False

    @property
    def schedule_id(self) -> str:
        """The fixed id its firings are claimed under."""
        return f"periodic:{self.task_name}"

    def scheduled(self) -> ScheduledTask:
        """The interval schedule of this task."""
        labels: dict[str, Any] = {DELAY_FIRST: True} if self.delay_first else {}
        return ScheduledTask(
            schedule_id=self.schedule_id,
            task_name=self.task_name,
            labels=labels,
            args=[],
            kwargs={},
            interval=self.every,
        )


class PeriodicScheduleSource(ScheduleSource):
    """The periodic schedules declared in code: never stored, the same in every scheduler.

    ``claim`` (the Redis source's, when there is one) makes each firing go out once however
    many schedulers run; without it this scheduler is the only one.
    """

    def __init__(
        self,
        periodic: Iterable[Periodic],
        claim: Callable[[ScheduledTask], Awaitable[bool]] | None = None,
    ) -> None:
        self.periodic = tuple(periodic)
        self._claim = claim

    async def get_schedules(self) -> list[ScheduledTask]:
        """The declared schedules (fresh objects: each firing gets its own task id)."""
        return [p.scheduled() for p in self.periodic]

    async def pre_send(self, task: ScheduledTask) -> None:
        """Claim this firing; another scheduler that claimed it first sends it instead."""
        if self._claim is not None and not await self._claim(task):
            raise ScheduledTaskCancelledError


class SchedulePoller:
    """Sends due schedules to the broker; one tick at a time, each tick its own asyncio task.

    Used instead of taskiq's SchedulerLoop, which refreshes its schedule list only every
    ``update_interval`` (60 s by default), cannot tick faster than once a second, and never
    resends a one-off whose send failed until the scheduler restarts.
    """

    def __init__(self, scheduler: TaskiqScheduler) -> None:
        self.scheduler = scheduler
        self._cron_fired: dict[str, dt.datetime] = {}
        self._interval_fired: dict[str, dt.datetime] = {}

    def _is_due(self, task: ScheduledTask, now: dt.datetime) -> bool:
        if task.time is not None:
            return _aware(task.time) <= now
        if task.cron is not None:
            minute = now.replace(second=0, microsecond=0)
            if self._cron_fired.get(task.schedule_id) == minute:
                return False
            try:
                return is_cron_task_now(task.cron, now, task.cron_offset)
            except CronValueError:
                logger.warning("schedule %s: invalid cron %r", task.schedule_id, task.cron)
                return False
        if task.interval is not None:
            last = self._interval_fired.get(task.schedule_id)
            if last is None and task.labels.get(DELAY_FIRST):
                self._interval_fired[task.schedule_id] = now  # first firing: one interval on
                return False
            every = (
                task.interval
                if isinstance(task.interval, dt.timedelta)
                else dt.timedelta(seconds=task.interval)
            )
            return last is None or now - last >= every
        return False

    def _mark_fired(self, task: ScheduledTask, now: dt.datetime) -> None:
        if task.cron is not None:
            self._cron_fired[task.schedule_id] = now.replace(second=0, microsecond=0)
        elif task.interval is not None:
            self._interval_fired[task.schedule_id] = now

    async def tick(self, now: dt.datetime | None = None) -> int:
        """Send every schedule due at ``now``; returns how many were handed to the broker."""
        now = _aware(now or dt.datetime.now(UTC))
        sent = 0
        present: set[str] = set()
        for source in self.scheduler.sources:
            try:
                schedules = await source.get_schedules()
            except Exception:
                logger.exception("cannot read schedules from %s", type(source).__name__)
                continue
            for task in schedules:
                present.add(task.schedule_id)
                if not self._is_due(task, now):
                    continue
                try:
                    # pre_send (claim), kiq, post_send (a one-off deletes itself).
                    await self.scheduler.on_ready(source, task)
                except Exception:
                    # Left in the source: a one-off is tried again on the next tick.
                    logger.exception(
                        "cannot send schedule %s (%s)", task.schedule_id, task.task_name
                    )
                    continue
                self._mark_fired(task, now)
                sent += 1
        for fired in (self._cron_fired, self._interval_fired):
            for schedule_id in fired.keys() - present:
                del fired[schedule_id]
        return sent

    async def run(
        self, interval: float, *, tick_timeout: float = 60.0, stop: asyncio.Event | None = None
    ) -> None:
        """Tick every ``interval`` seconds until ``stop`` is set; errors are logged, never fatal."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await run_iteration(self.tick(), tick_timeout, "crm-schedule-tick")
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("schedule tick failed")
            await pause(stop, interval)


def task_kicker(
    broker: AsyncBroker, task: str | AsyncTaskiqDecoratedTask[Any, Any]
) -> AsyncKicker[Any, Any]:
    """A kicker for ``task`` (a task or its name) on ``broker``, keeping the task's labels."""
    if isinstance(task, str):
        found = broker.find_task(task)
        labels = dict(found.labels) if found is not None else {}
        return AsyncKicker(task, broker, labels)
    return AsyncKicker(task.task_name, broker, dict(task.labels))


async def schedule_at(
    backbone: Backbone,
    task: str | AsyncTaskiqDecoratedTask[Any, Any],
    when: dt.datetime,
    *args: Any,
    **kwargs: Any,
) -> str:
    """Send ``task(*args, **kwargs)`` once at ``when`` (timezone-aware); returns the schedule id."""
    if when.tzinfo is None:
        raise ValueError("schedule_at needs a timezone-aware datetime")
    created = await task_kicker(backbone.broker, task).schedule_by_time(
        backbone.schedule_source, when.astimezone(UTC), *args, **kwargs
    )
    return created.schedule_id


async def cancel_schedule(backbone: Backbone, schedule_id: str) -> None:
    """Forget a schedule that has not fired yet; unknown ids are ignored."""
    await backbone.schedule_source.delete_schedule(schedule_id)


class TaskiqTaskQueue:
    """The ``crm.tasks.TaskQueue`` protocol on top of a backbone, for the domain to use."""

    def __init__(self, backbone: Backbone) -> None:
        self.backbone = backbone

    async def enqueue(self, task_name: str, *args: Any) -> None:
        """Send a task to the workers now."""
        await task_kicker(self.backbone.broker, task_name).kiq(*args)

    async def schedule_at(self, task_name: str, when: dt.datetime, *args: Any) -> str:
        """Send a task at ``when``; returns the schedule id."""
        return await schedule_at(self.backbone, task_name, when, *args)

    async def cancel(self, schedule_id: str) -> None:
        """Forget a schedule that has not fired yet."""
        await cancel_schedule(self.backbone, schedule_id)


if TYPE_CHECKING:
    # mypy checks that the adapter satisfies the protocol the domain is typed against.
    _queue_protocol: type[TaskQueue] = TaskiqTaskQueue
