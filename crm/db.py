"""Database wiring: the tortoise configuration and the start/stop of connections."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import asyncpg
from tortoise import Tortoise
from tortoise.backends.asyncpg.client import AsyncpgDBClient
from tortoise.backends.base.client import TransactionContextPooled
from tortoise.backends.sqlite.client import SqliteTransactionContext
from tortoise.connection import get_connections
from tortoise.migrations.api import migrate as tortoise_migrate

MODEL_MODULES = ["crm.models"]
MIGRATIONS_MODULE = "migrations"


def tortoise_config(database_url: str) -> dict[str, Any]:
    """The tortoise config for one database URL (sqlite:// or postgres://)."""
    return {
        "connections": {"default": database_url},
        "apps": {
            "models": {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# For `tortoise makemigrations` (a developer tool): any database will do to diff the models.
TORTOISE_ORM = tortoise_config("sqlite://:memory:")


def _ensure_sqlite_directory(database_url: str) -> None:
    if database_url.startswith("sqlite://") and ":memory:" not in database_url:
        path = Path(database_url.removeprefix("sqlite://").split("?", 1)[0])
        path.parent.mkdir(parents=True, exist_ok=True)


class _NoResetConnection(asyncpg.connection.Connection):
    """An asyncpg connection that skips the reset query when it goes back to the pool.

    The default (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) costs a round trip on every
    release, a fifth of the statements of a stored webhook (measured). Nothing here leaves that
    state behind: no advisory locks, cursors or LISTEN, and settings are SET LOCAL only. An
    open transaction is still rolled back on release.
    """

    def get_reset_query(self) -> str:
        return ""


async def init_db(database_url: str) -> None:
    """Open the connections of the process; every task and request shares them."""
    harden_tortoise_transactions()
    AsyncpgDBClient.connection_class = _NoResetConnection
    _ensure_sqlite_directory(database_url)
    await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)


async def migrate_db(database_url: str) -> None:
    """Apply every migration in ``migrations/`` that the database lacks."""
    _ensure_sqlite_directory(database_url)
    try:
        await tortoise_migrate(config=tortoise_config(database_url))
    finally:
        await Tortoise.close_connections()


async def close_db() -> None:
    """Close the connections of the process."""
    await Tortoise.close_connections()


def dialect() -> str:
    """The SQL dialect of the default connection: 'sqlite' or 'postgres'."""
    from tortoise import connections

    return str(connections.get("default").capabilities.dialect)


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
