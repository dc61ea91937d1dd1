"""Periodic tasks: their schedules, their rounds, and the jobs the operator bot installs."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from taskiq import TaskiqScheduler

from crm.tasks import periodic
from crm.tasks.broker import Backbone, BackboneConfig, LocalBroker, build_backbone
from crm.tasks.handlers import HandlerRegistry
from crm.tasks.periodic import (
    DIGEST_TASK,
    HOUSEKEEPING_TASK,
    PERIODIC,
    TEAM_INBOX_TASK,
    operator_digest,
    periodic_scheduler,
    run_installed,
    run_round,
    team_inbox_round,
)
from crm.tasks.schedule import PeriodicScheduleSource, SchedulePoller

UTC = dt.UTC


@pytest.fixture
async def local() -> AsyncIterator[Backbone]:
    """A started in-process backbone with no loops running: the test drives the poller."""
    backbone = build_backbone(None, BackboneConfig(shutdown_timeout=2.0))
    await backbone.startup()
    yield backbone
    assert isinstance(backbone.broker, LocalBroker)
    await backbone.broker.drain(grace=5)
    await backbone.shutdown()


def test_each_loop_has_its_schedule() -> None:
    every = {p.task_name: (p.every, p.delay_first) for p in PERIODIC}
    assert every == {
        HOUSEKEEPING_TASK: (dt.timedelta(seconds=60), False),  # at start, then each minute
        DIGEST_TASK: (dt.timedelta(seconds=60), True),  # a minute after start, then each minute
        TEAM_INBOX_TASK: (dt.timedelta(seconds=1), False),
    }


async def test_the_poller_sends_each_periodic_task_on_its_interval(
    local: Backbone, handlers: HandlerRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []

    async def housekeep() -> None:
        ran.append(HOUSEKEEPING_TASK)

    async def digest() -> None:
        ran.append(DIGEST_TASK)

    async def team_inbox() -> None:
        ran.append(TEAM_INBOX_TASK)

    monkeypatch.setattr(periodic, "housekeep", housekeep)
    handlers.add_job(DIGEST_TASK, digest)
    handlers.add_job(TEAM_INBOX_TASK, team_inbox)
    only_periodic = TaskiqScheduler(local.broker, [PeriodicScheduleSource(PERIODIC)])
    poller = SchedulePoller(only_periodic)
    start = dt.datetime.now(UTC)

    assert await poller.tick(start) == 2  # housekeeping and the team inbox; the digest waits
    assert await poller.tick(start + dt.timedelta(seconds=0.5)) == 0
    assert await poller.tick(start + dt.timedelta(seconds=1)) == 1  # the team inbox
    assert await poller.tick(start + dt.timedelta(seconds=60)) == 3
    assert isinstance(local.broker, LocalBroker)
    await local.broker.wait_all()
    assert sorted(ran) == sorted(
        [HOUSEKEEPING_TASK, HOUSEKEEPING_TASK, DIGEST_TASK] + [TEAM_INBOX_TASK] * 3
    )


async def test_the_backbone_scheduler_serves_the_periodic_schedules_next_to_stored_ones(
    local: Backbone,
) -> None:
    scheduler = periodic_scheduler(local)
    assert scheduler.sources[0] is local.schedule_source
    declared = await scheduler.sources[1].get_schedules()
    assert {s.task_name for s in declared} == {p.task_name for p in PERIODIC}
    assert await local.schedule_source.get_schedules() == []  # nothing stored for them


async def test_a_failing_round_does_not_stop_the_next(handlers: HandlerRegistry) -> None:
    calls: list[int] = []

    async def flaky() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("the database restarted")

    handlers.add_job(DIGEST_TASK, flaky)
    await operator_digest()  # logged, not raised
    await operator_digest()
    assert calls == [0, 1]


async def test_a_round_still_running_here_makes_the_next_one_skip() -> None:
    release = asyncio.Event()
    rounds: list[str] = []

    async def slow() -> None:
        rounds.append("slow")
        await release.wait()

    first = asyncio.create_task(run_round("tests.periodic.slow", slow))
    await asyncio.sleep(0)
    assert await run_round("tests.periodic.slow", slow) is False
    release.set()
    assert await first is True
    assert await run_round("tests.periodic.slow", slow) is True
    assert rounds == ["slow", "slow"]


async def test_a_process_without_the_job_runs_nothing(handlers: HandlerRegistry) -> None:
    handlers.remove_job(TEAM_INBOX_TASK)
    assert await run_installed(TEAM_INBOX_TASK) is False
    await team_inbox_round()  # nothing installed: nothing to do, no error
