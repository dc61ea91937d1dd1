"""Database wiring: the tortoise configuration and the start/stop of connections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tortoise import Tortoise
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


async def init_db(database_url: str) -> None:
    """Open the connections of the process; every task and request shares them."""
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
