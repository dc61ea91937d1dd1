"""The embedded event backbone: outbox, relay, idempotent handlers, retries, schedules."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from taskiq import TaskiqMessage, TaskiqMiddleware, async_shared_broker
from tortoise import connections
from tortoise.backends.asyncpg.client import TransactionWrapper as AsyncpgTransactionWrapper
from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient
from tortoise.backends.sqlite.client import SqliteTransactionWrapper
from tortoise.transactions import in_transaction

from crm.db import dialect
from crm.models import Event, HandledEvent, OutboxEntry
from crm.services.access import Actor
from crm.services.events.event_types import EventType
from crm.services.events.recording import record_event
from crm.tasks import relay
from crm.tasks.backbone import embedded_backbone, run_scheduler, run_worker
from crm.tasks.broker import Backbone, BackboneConfig, LocalBroker, build_backbone
from crm.tasks.handlers import (
    ANY_EVENT,
    DISPATCH_TASK,
    HandlerFailedError,
    HandlerRegistry,
    dispatch,
    dispatch_event,
)
from crm.tasks.relay import relay_once
from crm.tasks.schedule import (
    InMemoryScheduleSource,
    SchedulePoller,
    TaskiqTaskQueue,
    schedule_at,
)
from tests.support.events import Nudged, Ping, Pong
from tests.support.polling import eventually
from tests.support.workspace import Workspace

ROOT = Path(__file__).resolve().parents[3]
POOL_SIZE = 5  # tortoise's default maxsize for asyncpg
UTC = dt.UTC

FAST = BackboneConfig(
    relay_interval=0.02,
    scheduler_interval=0.02,
    retry_delay=0.05,
    retry_jitter=False,
    shutdown_timeout=2.0,
)

pinged: list[str] = []


@async_shared_broker.task(task_name="tests.crm.tasks.ping")
async def ping(word: str) -> None:
    """A task that only records that it ran."""
    pinged.append(word)


@pytest.fixture
async def local() -> AsyncIterator[Backbone]:
    """A started in-process backbone with no loops running: tests drive relay and schedules."""
    backbone = build_backbone(None, FAST)
    await backbone.startup()
    yield backbone
    assert isinstance(backbone.broker, LocalBroker)
    await backbone.broker.drain(grace=5)
    await backbone.shutdown()


async def record(
    workspace: Workspace, event_type: type[EventType], conn: BaseDBAsyncClient | None = None
) -> Event:
    """Record an event of ``event_type`` as the system actor, in ``conn`` or its own transaction."""
    if conn is not None:
        return await record_event(
            Actor.system(workspace.tenant_id), event_type, None, using_db=conn
        )
    async with in_transaction() as own:
        return await record_event(Actor.system(workspace.tenant_id), event_type, None, using_db=own)


def pong_writer(calls: list[int]) -> Callable[[Event, BaseDBAsyncClient], Awaitable[None]]:
    """A handler whose effect is a database write: a test.pong event in its transaction."""

    async def handler(event: Event, conn: BaseDBAsyncClient) -> None:
        calls.append(event.id)
        await record_event(Actor.system(event.tenant_id), Pong, event.id, using_db=conn)

    return handler


async def pongs(event_id: int) -> int:
    """How many test.pong effects exist for ``event_id``."""
    return await Event.filter(type=Pong.type, entity_id=event_id).count()


async def relay_all(backbone: Backbone) -> None:
    """Relay until the outbox is empty and every sent task has finished."""
    while await relay_once(backbone.broker):
        pass
    assert isinstance(backbone.broker, LocalBroker)
    await backbone.broker.wait_all()


async def test_rolled_back_event_never_reaches_a_handler(
    workspace: Workspace, handlers: HandlerRegistry, local: Backbone
) -> None:
    calls: list[int] = []
    handlers.add(Ping, pong_writer(calls), name="test.pong-writer")
    with pytest.raises(RuntimeError):
        async with in_transaction() as conn:
            await record(workspace, Ping, conn)
            raise RuntimeError("the write failed after its event was recorded")
    await relay_all(local)
    assert calls == []
    assert not await Event.filter(type=Ping.type).exists()

    committed = await record(workspace, Ping)  # the control: a committed event arrives
    await relay_all(local)
    assert calls == [committed.id]
    assert not await OutboxEntry.filter(event_id=committed.id).exists()


async def test_committed_event_is_handled_once_when_delivered_twice(
    workspace: Workspace, handlers: HandlerRegistry, local: Backbone
) -> None:
    calls: list[int] = []
    handlers.add(Ping, pong_writer(calls), name="test.pong-writer")
    async with in_transaction() as conn:
        event = await record(workspace, Ping, conn)
    await relay_all(local)
    assert calls == [event.id]

    # Redelivery, as after a worker crash or a relay crash before its commit.
    kicker = dispatch_event.kicker().with_broker(local.broker)
    await kicker.kiq(event.id)
    await kicker.kiq(event.id)
    assert isinstance(local.broker, LocalBroker)
    await local.broker.wait_all()
    assert calls == [event.id]
    assert await pongs(event.id) == 1
    assert await HandledEvent.filter(event_id=event.id).count() == 1


async def test_concurrent_deliveries_run_a_handler_once(
    workspace: Workspace, handlers: HandlerRegistry
) -> None:
    calls: list[int] = []
    write = pong_writer(calls)

    async def slow(event: Event, conn: BaseDBAsyncClient) -> None:
        await asyncio.sleep(0.05)  # both deliveries are in flight together
        await write(event, conn)

    handlers.add(Ping, slow, name="test.slow-pong")
    event = await record(workspace, Ping)
    first, second = await asyncio.gather(dispatch(event.id), dispatch(event.id))
    assert sorted([first.ran, second.ran]) == [[], ["test.slow-pong"]]
    assert first.skipped + second.skipped == ["test.slow-pong"]
    assert calls == [event.id]
    assert await pongs(event.id) == 1


async def test_failing_handler_is_retried_after_its_delay_and_others_not_repeated(
    workspace: Workspace, handlers: HandlerRegistry
) -> None:
    good_calls: list[int] = []
    flaky_times: list[float] = []
    handlers.add(Ping, pong_writer(good_calls), name="test.good")

    async def flaky(event: Event, conn: BaseDBAsyncClient) -> None:
        flaky_times.append(time.monotonic())
        if len(flaky_times) < 3:
            raise ConnectionError("the messenger is down")

    handlers.add(Ping, flaky, name="test.flaky")
    config = BackboneConfig(
        relay_interval=0.02, scheduler_interval=0.02, retry_delay=0.2, retry_jitter=False
    )
    async with embedded_backbone(None, config):
        event = await record(workspace, Ping)
        await eventually(
            lambda: HandledEvent.filter(event_id=event.id, handler="test.flaky").exists()
        )
    assert good_calls == [event.id]
    assert await pongs(event.id) == 1
    assert len(flaky_times) == 3
    # The delays went through the schedule source: 0.2 s, then doubled.
    assert flaky_times[1] - flaky_times[0] >= 0.2
    assert flaky_times[2] - flaky_times[1] >= 0.4


@async_shared_broker.task(task_name="tests.crm.tasks.write_event")
async def write_event(tenant_id: int) -> None:
    """A task whose work emits an event (as a lead message's ingest does)."""
    async with in_transaction() as conn:
        await record_event(Actor.system(tenant_id), Nudged, None, using_db=conn)


async def test_an_event_written_by_a_task_is_relayed_at_once_not_at_the_next_poll(
    workspace: Workspace, handlers: HandlerRegistry
) -> None:
    handled: list[int] = []

    async def handler(event: Event, conn: BaseDBAsyncClient) -> None:
        handled.append(event.id)

    handlers.add(Nudged, handler, name="test.nudged")
    # A poll interval far longer than the wait below: only the nudge can relay in time.
    config = BackboneConfig(relay_interval=60.0, scheduler_interval=0.02, shutdown_timeout=2.0)
    async with embedded_backbone(None, config) as backbone:
        await asyncio.sleep(0.1)  # the relay's first round has run and it now waits 60 s
        await TaskiqTaskQueue(backbone).enqueue("tests.crm.tasks.write_event", workspace.tenant_id)

        async def relayed() -> bool:
            return len(handled) == 1

        await eventually(relayed, within=10.0)
    assert await OutboxEntry.all().count() == 0


async def test_dispatch_reports_every_failure_and_runs_the_other_handlers(
    workspace: Workspace, handlers: HandlerRegistry
) -> None:
    calls: list[int] = []

    async def broken(event: Event, conn: BaseDBAsyncClient) -> None:
        raise ValueError("bug")

    handlers.add(Ping, broken, name="test.broken")
    handlers.add(ANY_EVENT, pong_writer(calls), name="test.every-event")
    event = await record(workspace, Ping)
    with pytest.raises(HandlerFailedError) as failed:
        await dispatch(event.id)
    assert list(failed.value.errors) == ["test.broken"]
    assert calls == [event.id]
    assert not await HandledEvent.filter(event_id=event.id, handler="test.broken").exists()


async def test_non_atomic_handler_runs_outside_a_transaction(
    workspace: Workspace, handlers: HandlerRegistry
) -> None:
    calls: list[int] = []

    async def notify(event: Event, conn: BaseDBAsyncClient) -> None:
        calls.append(event.id)

    handlers.add(Ping, notify, name="test.notify", atomic=False)
    event = await record(workspace, Ping)
    assert (await dispatch(event.id)).ran == ["test.notify"]
    assert (await dispatch(event.id)).skipped == ["test.notify"]
    assert calls == [event.id]


async def test_a_before_dispatch_hook_runs_only_for_the_events_it_serves(
    workspace: Workspace, handlers: HandlerRegistry
) -> None:
    """The operator bot loads on first need: an event it does not handle must not load it."""
    loads: list[str] = []

    async def load_bot() -> None:
        loads.append("bot")

    handlers.before_dispatch(load_bot, {Pong})
    try:
        unrelated = await record(workspace, Ping)
        await dispatch(unrelated.id)
        assert loads == []
        served = await record(workspace, Pong)
        await dispatch(served.id)
        assert loads == ["bot"]
    finally:
        handlers.remove_before_dispatch(load_bot)
    await dispatch(served.id)
    assert loads == ["bot"]


def test_handler_names_are_unique_and_bounded() -> None:
    own = HandlerRegistry()

    async def noop(event: Event, conn: BaseDBAsyncClient) -> None:
        return None

    own.add(Ping, noop, name="h")
    with pytest.raises(ValueError, match="already registered"):
        own.add(Pong, noop, name="h")
    with pytest.raises(ValueError, match="characters"):
        own.add(Ping, noop, name="x" * 129)
    own.add(ANY_EVENT, noop, name="any")
    assert [h.name for h in own.matching(Ping)] == ["h", "any"]
    assert [h.name for h in own.matching(Pong)] == ["any"]


class SentEvents(TaskiqMiddleware):
    """Records the event ids of dispatch tasks in the order they are sent."""

    def __init__(self) -> None:
        super().__init__()
        self.event_ids: list[int] = []

    def pre_send(self, message: TaskiqMessage) -> TaskiqMessage:
        if message.task_name == DISPATCH_TASK:
            self.event_ids.append(int(message.args[0]))
        return message


async def test_relay_sends_in_id_order_in_batches(workspace: Workspace, local: Backbone) -> None:
    for _ in range(5):
        await record(workspace, Ping)
    expected = await OutboxEntry.all().order_by("id").values_list("event_id", flat=True)
    assert len(expected) >= 5
    sent = SentEvents()
    local.broker.add_middlewares(sent)
    batches = []
    while count := await relay_once(local.broker, batch_size=2):
        batches.append(count)
    assert sent.event_ids == list(expected)
    assert all(b == 2 for b in batches[:-1]) and sum(batches) == len(expected)
    assert await OutboxEntry.all().count() == 0


async def test_concurrent_relays_send_each_entry_once(
    workspace: Workspace, local: Backbone
) -> None:
    for _ in range(30):
        await record(workspace, Ping)
    expected = await OutboxEntry.all().order_by("id").values_list("event_id", flat=True)
    sent = SentEvents()
    local.broker.add_middlewares(sent)

    async def drain() -> None:
        while await relay_once(local.broker, batch_size=3):
            pass

    # On PostgreSQL the relays lock disjoint rows (SKIP LOCKED); on SQLite they take turns.
    await asyncio.gather(drain(), drain(), drain())
    assert sorted(sent.event_ids) == sorted(expected)
    assert await OutboxEntry.all().count() == 0


async def test_relay_abandons_an_iteration_that_hangs_and_goes_on(
    workspace: Workspace,
    handlers: HandlerRegistry,
    local: Backbone,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    handlers.add(Ping, pong_writer(calls), name="test.pong-writer")
    real = relay.relay_once
    attempts: list[int] = []

    async def first_hangs(broker: Any, *, batch_size: int = 100) -> int:
        attempts.append(1)
        if len(attempts) == 1:
            await asyncio.Event().wait()  # a database that never answers
        return await real(broker, batch_size=batch_size)

    monkeypatch.setattr(relay, "relay_once", first_hangs)
    event = await record(workspace, Ping)
    stop = asyncio.Event()
    loop = asyncio.create_task(
        relay.run_relay(local.broker, 0.01, iteration_timeout=0.2, stop=stop)
    )
    try:
        await eventually(
            lambda: HandledEvent.filter(event_id=event.id, handler="test.pong-writer").exists()
        )
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=10)
    assert len(attempts) >= 2
    assert calls == [event.id]


async def test_a_transaction_that_fails_to_begin_gives_its_connection_back(
    local: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tortoise fix build_backbone installs: no leaked pool connection or SQLite lock."""
    wrapper: Any = SqliteTransactionWrapper if dialect() == "sqlite" else AsyncpgTransactionWrapper
    entered = asyncio.Event()

    async def stuck_begin(self: Any) -> None:
        entered.set()
        await asyncio.sleep(3600)

    async def empty_transaction() -> None:
        async with in_transaction():
            pass

    monkeypatch.setattr(wrapper, "begin", stuck_begin)
    for _ in range(POOL_SIZE + 1):  # more than the pool holds: a leak would exhaust it
        entered.clear()
        task = asyncio.create_task(empty_transaction())
        await entered.wait()
        task.cancel()  # as at shutdown: cancelled inside BEGIN
        await asyncio.gather(task, return_exceptions=True)

    async def dead_begin(self: Any) -> None:
        raise ConnectionError("the server closed the connection")

    monkeypatch.setattr(wrapper, "begin", dead_begin)
    with pytest.raises(ConnectionError):
        await empty_transaction()
    monkeypatch.undo()

    async def hold() -> None:
        async with in_transaction() as conn:
            await conn.execute_query("SELECT 1")
            await asyncio.sleep(0.05)

    await asyncio.wait_for(asyncio.gather(*(hold() for _ in range(POOL_SIZE))), timeout=10)
    async with in_transaction():  # this task's connection contextvar was reset, too
        pass
    assert not isinstance(connections.get("default"), TransactionalDBClient)


async def test_one_off_schedule_fires_once_and_is_deleted(local: Backbone) -> None:
    pinged.clear()
    now = dt.datetime.now(UTC)
    schedule_id = await schedule_at(local, ping, now + dt.timedelta(seconds=30), "later")
    source = local.schedule_source
    assert isinstance(source, InMemoryScheduleSource)
    poller = SchedulePoller(local.scheduler())

    assert await poller.tick(now) == 0  # not due yet
    assert await poller.tick(now + dt.timedelta(seconds=31)) == 1
    assert await source.get_schedules() == []
    assert await poller.tick(now + dt.timedelta(seconds=32)) == 0
    assert isinstance(local.broker, LocalBroker)
    await local.broker.wait_all()
    assert pinged == ["later"]
    assert schedule_id


async def test_one_off_schedule_fires_in_the_running_backbone() -> None:
    pinged.clear()
    async with embedded_backbone(None, FAST) as backbone:
        queue = TaskiqTaskQueue(backbone)
        when = dt.datetime.now(UTC) + dt.timedelta(milliseconds=100)
        await queue.schedule_at("tests.crm.tasks.ping", when, "soon")
        cancelled = await queue.schedule_at("tests.crm.tasks.ping", when, "never")
        await queue.cancel(cancelled)
        await queue.enqueue("tests.crm.tasks.ping", "now")

        async def both_ran() -> bool:
            return sorted(pinged) == ["now", "soon"]

        await eventually(both_ran)
        await eventually(lambda: _no_schedules(backbone))
    assert sorted(pinged) == ["now", "soon"]


async def _no_schedules(backbone: Backbone) -> bool:
    return not await backbone.schedule_source.get_schedules()


async def test_cron_schedule_fires_once_a_minute(local: Backbone) -> None:
    pinged.clear()
    await (
        ping.kicker()
        .with_broker(local.broker)
        .schedule_by_cron(local.schedule_source, "* * * * *", "cron")
    )
    poller = SchedulePoller(local.scheduler())
    minute = dt.datetime(2030, 1, 1, 12, 0, 1, tzinfo=UTC)
    assert await poller.tick(minute) == 1
    assert await poller.tick(minute + dt.timedelta(seconds=30)) == 0
    assert await poller.tick(minute + dt.timedelta(seconds=60)) == 1
    assert len(await local.schedule_source.get_schedules()) == 1  # a cron stays
    assert isinstance(local.broker, LocalBroker)
    await local.broker.wait_all()
    assert pinged == ["cron", "cron"]


async def test_schedule_at_needs_an_aware_datetime(local: Backbone) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await schedule_at(local, ping, dt.datetime(2030, 1, 1), "naive")


async def test_stopping_the_embedded_backbone_puts_pending_retries_back_in_the_outbox(
    workspace: Workspace, handlers: HandlerRegistry
) -> None:
    async def down(event: Event, conn: BaseDBAsyncClient) -> None:
        raise ConnectionError("still down")

    handlers.add(Ping, down, name="test.down")
    config = BackboneConfig(relay_interval=0.02, scheduler_interval=0.02, retry_delay=3600)
    async with embedded_backbone(None, config) as backbone:
        event = await record(workspace, Ping)

        async def retry_pending() -> bool:
            schedules = await backbone.schedule_source.get_schedules()
            return any(s.task_name == DISPATCH_TASK and s.args == [event.id] for s in schedules)

        await eventually(retry_pending)
        assert not await OutboxEntry.filter(event_id=event.id).exists()
    assert await OutboxEntry.filter(event_id=event.id).exists()


async def test_worker_and_scheduler_refuse_without_redis(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_worker(database_url, None, 4) == 2
    assert "CRM_REDIS_URL is not set" in capsys.readouterr().err
    assert await run_scheduler(database_url, None, 1.0) == 2
    assert "crm scheduler" in capsys.readouterr().err


APP_SCRIPT = """
import asyncio, sys, time
from crm.app import create_app
from crm.db import migrate_db
from crm.services.accounts.workspaces import do_create_tenant
from crm.settings import Settings
from crm.tasks.handlers import ANY_EVENT, registry

seen = []

@registry.register(ANY_EVENT, name="probe")
async def probe(event, conn):
    seen.append(event.type)

async def main(url):
    await migrate_db(url)
    settings = Settings(database_url=url, redis_url=None, relay_interval_seconds=0.02,
                        _env_file=None)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert app.state.task_queue is not None
        await do_create_tenant("Probe", owner_telegram_id=1)
        deadline = time.monotonic() + 20
        while not seen and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    print("handled:", sorted(set(seen)))

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.e2e  # runs the app (or a worker) in another process
def test_the_app_lifespan_runs_the_backbone(tmp_path: Path) -> None:
    """`crm up` wiring: create_app's lifespan relays a service's event to a handler."""
    url = f"sqlite://{tmp_path / 'app.sqlite3'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    done = subprocess.run(
        [sys.executable, "-c", APP_SCRIPT, url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "handled: [" in done.stdout and "'tenant." in done.stdout, done.stdout + done.stderr
