"""Periodic tasks: housekeeping, the operators' daily digest, the team inbox's sending round.

Each is a task on the broker that the schedule poller sends on an interval schedule
(``PERIODIC``, served by ``PeriodicScheduleSource``). With Redis each firing is claimed before
it is sent, so however many schedulers run (`crm up` replicas, `crm scheduler`), one firing goes
out per interval and one worker runs it; the work itself stays safe to repeat (conditional
updates, the digest's claim per member and day, the team inbox's lease per group).

Housekeeping is the domain's own work. The digest and the team inbox need the operator bot: the
bot installs them as jobs of these tasks in the handler registry (``HandlerRegistry.add_job``),
like its event handlers, so a process without the bot loaded runs nothing for them.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from taskiq import TaskiqScheduler, async_shared_broker

from crm.services.ai.follow_ups import do_run_due_follow_ups
from crm.services.inbox.outbound import fail_stale_sends
from crm.tasks.handlers import PeriodicJob, registry
from crm.tasks.schedule import Periodic, PeriodicScheduleSource, RedisScheduleSource

if TYPE_CHECKING:
    from crm.tasks.broker import Backbone

logger = logging.getLogger(__name__)

HOUSEKEEPING_TASK = "crm.housekeeping"
DIGEST_TASK = "crm.operator_digest"
TEAM_INBOX_TASK = "crm.team_inbox_round"

PERIODIC = (
    # Fail the sends a killed worker left claimed, start due follow-ups: at start, then each minute.
    Periodic(HOUSEKEEPING_TASK, dt.timedelta(seconds=60)),
    # Look for members at their local morning each minute; not right at start.
    Periodic(DIGEST_TASK, dt.timedelta(seconds=60), delay_first=True),
    # Start a sender for each group with waiting posts (the shortest interval a schedule has).
    Periodic(TEAM_INBOX_TASK, dt.timedelta(seconds=1)),
)

# The periodic tasks with a round running in this process.
_running: set[str] = set()


async def run_round(task_name: str, job: PeriodicJob) -> bool:
    """Run one round of a periodic task; False when it was skipped.

    A round that fails is logged and the next one tries again. A round still running in this
    process (a slow database) makes the next one here skip, as a loop would have waited for it,
    so stuck rounds never take more than one worker slot each.
    """
    if task_name in _running:
        logger.info("%s: the previous round is still running here; skipped", task_name)
        return False
    _running.add(task_name)
    try:
        await job()
    except Exception:
        logger.exception("%s failed; the next round tries again", task_name)
    finally:
        _running.discard(task_name)
    return True


async def run_installed(task_name: str) -> bool:
    """Run the job an edge installed for ``task_name``; False when there is none here."""
    job = registry.job(task_name)
    if job is None:
        logger.debug("%s: nothing installed in this process", task_name)
        return False
    return await run_round(task_name, job)


async def housekeep() -> None:
    """Fail the sends a killed worker left claimed, then start the follow-ups that are due."""
    failed = await fail_stale_sends()
    if failed:
        logger.warning("%s message(s) left mid-send by a dead worker: failed", failed)
    await do_run_due_follow_ups()


@async_shared_broker.task(task_name=HOUSEKEEPING_TASK)
async def housekeeping() -> None:
    """One round of the channels' housekeeping (see ``housekeep``)."""
    await run_round(HOUSEKEEPING_TASK, housekeep)


@async_shared_broker.task(task_name=DIGEST_TASK)
async def operator_digest() -> None:
    """One round of the operators' daily digest (the operator bot's job)."""
    await run_installed(DIGEST_TASK)


@async_shared_broker.task(task_name=TEAM_INBOX_TASK)
async def team_inbox_round() -> None:
    """One round of the team inbox's sending (the operator bot's job)."""
    await run_installed(TEAM_INBOX_TASK)


def periodic_scheduler(backbone: Backbone) -> TaskiqScheduler:
    """The backbone's scheduler with the periodic schedules added, claimed through Redis if any."""
    source = backbone.schedule_source
    claim = source.claim if isinstance(source, RedisScheduleSource) else None
    return TaskiqScheduler(
        broker=backbone.broker, sources=[source, PeriodicScheduleSource(PERIODIC, claim)]
    )
