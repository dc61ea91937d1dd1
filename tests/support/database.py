"""The test database: where it lives, creating and dropping it, emptying it between tests."""

from __future__ import annotations

import os
import tempfile
import uuid

import asyncpg
from tortoise import connections

# The SQLite full-text index of memory chunks (migration 0009).
FTS_TABLE = "memory_chunk_fts"


def configured_database_url() -> str:
    """``CRM_TEST_DATABASE_URL``, or a SQLite file in a fresh temp dir."""
    url = os.environ.get("CRM_TEST_DATABASE_URL", "")
    if not url:
        return f"sqlite://{tempfile.mkdtemp(prefix='crm-test-')}/crm.sqlite3"
    return url


async def create_postgres_database(url: str) -> str:
    """Create an empty database next to ``url``'s, named after this process; returns its URL."""
    base, _, _ = url.rpartition("/")
    name = f"crm_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(base.replace("postgres://", "postgresql://", 1) + "/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"{base}/{name}"


async def drop_postgres_database(url: str) -> None:
    """Drop the database of ``url``, even with connections still open."""
    base, _, name = url.rpartition("/")
    admin = await asyncpg.connect(base.replace("postgres://", "postgresql://", 1) + "/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _table_names() -> list[str]:
    conn = connections.get("default")
    if conn.capabilities.dialect == "sqlite":
        _, rows = await conn.execute_query(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        )
    else:
        _, rows = await conn.execute_query(
            "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'"
        )
    return [r["name"] for r in rows if r["name"] != "tortoise_migrations"]


async def empty_tables() -> None:
    """Delete every row (migrations history aside) and reset the id sequences."""
    conn = connections.get("default")
    tables = await _table_names()
    if conn.capabilities.dialect == "sqlite":
        # FTS5 keeps its index in shadow tables: emptied through the virtual table only.
        for table in tables:
            if not table.startswith(FTS_TABLE):
                await conn.execute_script(f'DELETE FROM "{table}"')
        await conn.execute_script(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('delete-all')")
        await conn.execute_script("DELETE FROM sqlite_sequence")
    else:
        quoted = ", ".join(f'"{t}"' for t in tables)
        await conn.execute_script(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
