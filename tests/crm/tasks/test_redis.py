"""The event backbone on Redis: acknowledged delivery, redelivery after a kill, retries, claims."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from crm.models import Event, HandledEvent
from crm.services.access import Actor
from crm.services.events.event_types import EventType
from crm.services.events.recording import record_event
from crm.tasks.backbone import embedded_backbone
from crm.tasks.broker import BackboneConfig, build_backbone
from crm.tasks.handlers import HandlerRegistry
from crm.tasks.periodic import HOUSEKEEPING_TASK, TEAM_INBOX_TASK, periodic_scheduler
from crm.tasks.relay import relay_once
from crm.tasks.schedule import SchedulePoller, schedule_at
from tests.support.events import Ping, Slow
from tests.support.polling import eventually
from tests.support.redis import REDIS_URL, redis_unreachable
from tests.support.workspace import Workspace

ROOT = Path(__file__).resolve().parents[3]
UTC = dt.UTC


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    """A namespace (stream, group, schedule keys) of this test alone; its keys are deleted after."""
    reason = await redis_unreachable()
    if reason:
        pytest.skip(reason)
    name = f"crm-test:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    yield name
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(f"{name}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def record(workspace: Workspace, event_type: type[EventType]) -> Event:
    """Record a committed event of ``event_type`` as the system actor."""
    async with in_transaction() as conn:
        return await record_event(
            Actor.system(workspace.tenant_id), event_type, None, using_db=conn
        )


async def stream_state(config: BackboneConfig) -> tuple[int, int]:
    """(entries in the stream, entries delivered but unacknowledged)."""
    client = Redis.from_url(REDIS_URL)
    try:
        length = await client.xlen(config.stream_name)
        pending = await client.xpending(config.stream_name, config.consumer_group)
    finally:
        await client.aclose()
    return int(length), int(pending["pending"])


async def test_events_flow_through_redis_and_failures_retry_via_the_redis_schedule(
    workspace: Workspace, handlers: HandlerRegistry, namespace: str
) -> None:
    good: list[int] = []
    flaky_times: list[float] = []

    async def record_good(event: Event, conn: BaseDBAsyncClient) -> None:
        good.append(event.id)

    async def flaky(event: Event, conn: BaseDBAsyncClient) -> None:
        flaky_times.append(time.monotonic())
        if len(flaky_times) < 2:
            raise ConnectionError("the messenger is down")

    handlers.add(Ping, record_good, name="test.good")
    handlers.add(Ping, flaky, name="test.flaky")
    config = BackboneConfig(
        namespace=namespace,
        relay_interval=0.02,
        scheduler_interval=0.05,
        retry_delay=0.3,
        retry_jitter=False,
    )
    async with embedded_backbone(REDIS_URL, config):
        event = await record(workspace, Ping)
        await eventually(
            lambda: HandledEvent.filter(event_id=event.id, handler="test.flaky").exists()
        )

        async def drained() -> bool:
            return await stream_state(config) == (0, 0)

        await eventually(drained)  # acknowledged and deleted
    assert good == [event.id]
    assert len(flaky_times) == 2
    assert flaky_times[1] - flaky_times[0] >= 0.3


WORKER_SCRIPT = """
import asyncio, sys
from pathlib import Path
from crm.tasks.broker import BackboneConfig
from crm.tasks.handlers import registry
from crm.tasks.backbone import run_worker
from tests.support.events import Slow

database_url, redis_url, namespace, marker = sys.argv[1:5]

@registry.register(Slow, name="test.slow")
async def slow(event, conn):
    Path(marker).write_text(str(event.id))
    await asyncio.sleep(3600)

config = BackboneConfig(namespace=namespace, redelivery_after=1.0, relay_in_worker=False)
sys.exit(asyncio.run(run_worker(database_url, redis_url, 1, config=config)))
"""


@pytest.mark.e2e  # runs the app (or a worker) in another process
async def test_a_task_of_a_killed_worker_is_redelivered_to_another(
    workspace: Workspace,
    handlers: HandlerRegistry,
    namespace: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    config = BackboneConfig(
        namespace=namespace, relay_interval=0.02, scheduler_interval=0.05, redelivery_after=1.0
    )
    client = build_backbone(REDIS_URL, config)
    await client.startup()
    try:
        event = await record(workspace, Slow)
        while await relay_once(client.broker):
            pass
    finally:
        await client.shutdown()

    marker = tmp_path / "taken"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WORKER_SCRIPT,
        database_url,
        REDIS_URL,
        namespace,
        str(marker),
        cwd=ROOT,
    )
    try:

        async def taken() -> bool:
            assert child.returncode is None, "the worker exited on its own"
            return marker.exists() and marker.read_text() == str(event.id)

        await eventually(taken)
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    assert await stream_state(config) == (1, 1)  # delivered to the dead worker, never acked

    calls: list[int] = []

    async def finish(event: Event, conn: BaseDBAsyncClient) -> None:
        calls.append(event.id)

    handlers.add(Slow, finish, name="test.slow")
    # No new task arrives: the surviving worker must reclaim the orphan by itself.
    async with embedded_backbone(REDIS_URL, config):
        await eventually(
            lambda: HandledEvent.filter(event_id=event.id, handler="test.slow").exists()
        )

        async def drained() -> bool:
            return await stream_state(config) == (0, 0)

        await eventually(drained)
    assert calls == [event.id]


async def test_a_one_off_due_in_an_earlier_minute_is_still_sent(namespace: str) -> None:
    # A scheduler that was down, or a tick that came after the minute turned: the one-off
    # sits in an older minute's bucket and must go out on the next tick all the same.
    config = BackboneConfig(namespace=namespace)
    backbone = build_backbone(REDIS_URL, config)
    await backbone.startup()
    try:
        due = dt.datetime.now(UTC) - dt.timedelta(minutes=3)
        await schedule_at(backbone, "tests.crm.tasks.ping", due, "late")
        assert await SchedulePoller(backbone.scheduler()).tick() == 1
        assert await stream_state(config) == (1, 0)
        assert await backbone.schedule_source.get_schedules() == []
    finally:
        await backbone.shutdown()


async def test_two_schedulers_send_a_one_off_once(namespace: str) -> None:
    config = BackboneConfig(namespace=namespace)
    first, second = build_backbone(REDIS_URL, config), build_backbone(REDIS_URL, config)
    for backbone in (first, second):
        await backbone.startup()
    try:
        due = dt.datetime.now(UTC) - dt.timedelta(seconds=1)
        await schedule_at(first, "tests.crm.tasks.ping", due, "once")
        pollers = [SchedulePoller(b.scheduler()) for b in (first, second)]
        await asyncio.gather(*(p.tick() for p in pollers))
        await asyncio.gather(*(p.tick() for p in pollers))
        assert await stream_state(config) == (1, 0)  # sent once, nobody consumed it yet
        assert await first.schedule_source.get_schedules() == []
    finally:
        for backbone in (first, second):
            await backbone.shutdown()


async def stream_tasks(config: BackboneConfig) -> list[str]:
    """The task names queued in the stream, oldest first."""
    client = Redis.from_url(REDIS_URL)
    try:
        entries = await client.xrange(config.stream_name)
    finally:
        await client.aclose()
    return [json.loads(fields[b"data"])["task_name"] for _, fields in entries]


async def test_two_schedulers_send_each_periodic_firing_once(namespace: str) -> None:
    """Two `crm up` replicas (or one and `crm scheduler`): one firing per interval, not two."""
    config = BackboneConfig(namespace=namespace)
    first, second = build_backbone(REDIS_URL, config), build_backbone(REDIS_URL, config)
    for backbone in (first, second):
        await backbone.startup()
    try:
        # Both ticks fall in one second and one minute: the slices firings are claimed in.
        await asyncio.sleep(1.05 - time.time() % 1)
        if int(time.time()) % 60 == 59:
            await asyncio.sleep(1.0)
        pollers = [SchedulePoller(periodic_scheduler(b)) for b in (first, second)]
        await asyncio.gather(*(p.tick() for p in pollers))
        await asyncio.gather(*(p.tick() for p in pollers))
        assert sorted(await stream_tasks(config)) == sorted([HOUSEKEEPING_TASK, TEAM_INBOX_TASK])
        # Nothing was stored for them: the schedules are declared in code.
        assert await first.schedule_source.get_schedules() == []
    finally:
        for backbone in (first, second):
            await backbone.shutdown()
