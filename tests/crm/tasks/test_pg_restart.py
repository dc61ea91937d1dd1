"""The relay survives PostgreSQL dropping every connection (a restart, modelled by
pg_terminate_backend), and the connection pool does not leak while it happens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from crm.models import Event, HandledEvent
from crm.services.access import Actor
from crm.services.events.recording import record_event
from crm.tasks.backbone import embedded_backbone
from crm.tasks.broker import BackboneConfig
from crm.tasks.handlers import HandlerRegistry
from tests.support.events import Ping
from tests.support.polling import eventually
from tests.support.workspace import Workspace


async def eventually_despite_errors(
    check: Callable[[], Awaitable[bool]], within: float = 30.0
) -> None:
    """Poll while the database drops connections: errors count as not yet."""
    await eventually(check, within, tolerate_errors=True, interval=0.05)


HANDLER = "test.pg-survivor"
POOL_SIZE = 5  # tortoise's default maxsize for asyncpg


async def _record(actor: Actor) -> int:
    # In a transaction: without one, the event and its outbox entry are two commits, and a
    # connection cut between them leaves an event the relay never sees.
    async with in_transaction() as conn:
        event = await record_event(actor, Ping, None, using_db=conn)
    return event.id


async def record_until_stored(workspace: Workspace) -> int:
    """Record a test.ping event, retrying while the database drops connections."""
    actor = Actor.system(workspace.tenant_id)
    deadline = time.monotonic() + 30
    while True:
        try:
            return await asyncio.create_task(_record(actor))
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_relay_keeps_delivering_after_postgres_drops_every_connection(
    workspace: Workspace, handlers: HandlerRegistry, database_url: str
) -> None:
    if not database_url.startswith("postgres"):
        pytest.skip("needs PostgreSQL: set CRM_TEST_DATABASE_URL=postgres://...")
    base, _, dbname = database_url.rpartition("/")

    async def note(event: Event, conn: BaseDBAsyncClient) -> None:
        await asyncio.sleep(0.005)  # keep transactions open long enough to be cut mid-way

    handlers.add(Ping, note, name=HANDLER)

    admin = await asyncpg.connect(base.replace("postgres://", "postgresql://", 1) + "/postgres")
    config = BackboneConfig(
        relay_interval=0.01, scheduler_interval=0.02, retry_delay=0.05, retry_jitter=False
    )
    stored: list[int] = []

    enough = asyncio.Event()

    async def load() -> None:
        # Background writes, so connections are cut in the middle of transactions too.
        # Stopped by a flag, not cancelled: a cancelled tortoise transaction whose rollback
        # fails raises the rollback error instead of CancelledError.
        while not enough.is_set():
            with contextlib.suppress(Exception):
                stored.append(await record_until_stored(workspace))
            await asyncio.sleep(0.005)

    try:
        async with embedded_backbone(None, config):
            writer = asyncio.create_task(load())
            try:
                for _ in range(8):
                    event_id = await record_until_stored(workspace)
                    stored.append(event_id)
                    await eventually_despite_errors(
                        lambda event_id=event_id: HandledEvent.filter(
                            event_id=event_id, handler=HANDLER
                        ).exists()
                    )
                    killed = await admin.fetchval(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = $1 AND pid <> pg_backend_pid()",
                        dbname,
                    )
                    assert killed >= 1
            finally:
                enough.set()
                await asyncio.gather(writer, return_exceptions=True)
            last = await record_until_stored(workspace)
            stored.append(last)

            async def all_handled() -> bool:
                # Every stored event, including any that committed while its writer saw an
                # error, reached the handler.
                events = await Event.filter(type=Ping.type).values_list("id", flat=True)
                handled = await HandledEvent.filter(handler=HANDLER).values_list(
                    "event_id", flat=True
                )
                return set(stored) <= set(events) and set(handled) == set(events)

            await eventually_despite_errors(all_handled)
    finally:
        await admin.close()

    # Every pool connection is usable at once: none leaked by a BEGIN on a dead connection.
    async def hold() -> None:
        async with in_transaction() as conn:
            await conn.execute_query("SELECT pg_sleep(0.2)")

    async def pool_whole() -> bool:
        await asyncio.wait_for(asyncio.gather(*(hold() for _ in range(POOL_SIZE))), timeout=10)
        return True

    await eventually_despite_errors(pool_whole)


@pytest.mark.exclusive
async def test_relay_recovers_from_a_real_postgres_restart(
    workspace: Workspace, handlers: HandlerRegistry, database_url: str
) -> None:
    """With CRM_TEST_PG_RESTART_CMD set (CI sets it), restart the server itself mid-flow."""
    command = os.environ.get("CRM_TEST_PG_RESTART_CMD")
    if not database_url.startswith("postgres") or not command:
        pytest.skip("needs PostgreSQL and CRM_TEST_PG_RESTART_CMD (a command that restarts it)")

    async def note(event: Event, conn: BaseDBAsyncClient) -> None:
        return None

    handlers.add(Ping, note, name=HANDLER)
    config = BackboneConfig(
        relay_interval=0.01, scheduler_interval=0.02, retry_delay=0.05, retry_jitter=False
    )
    async with embedded_backbone(None, config):
        before = await record_until_stored(workspace)
        await eventually_despite_errors(
            lambda: HandledEvent.filter(event_id=before, handler=HANDLER).exists()
        )
        restart = await asyncio.create_subprocess_shell(
            command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, err = await restart.communicate()
        assert restart.returncode == 0, err.decode()
        # Events written after the restart still reach their handler, through the same pool.
        after = [await record_until_stored(workspace) for _ in range(5)]

        async def all_after_handled() -> bool:
            done = await HandledEvent.filter(event_id__in=after, handler=HANDLER).count()
            return done == len(after)

        await eventually_despite_errors(all_after_handled, within=60)
