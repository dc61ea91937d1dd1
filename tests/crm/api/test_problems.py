"""Errors as problem+json: a database briefly out of reach answers 503 with Retry-After."""

from __future__ import annotations

import asyncio
import sqlite3

import asyncpg
import httpx
import pytest
from tortoise import connections

from tests.support.workspace import Workspace

API = "/api/v1"


def _dialect() -> str:
    return str(connections.get("default").capabilities.dialect)


async def _terminate_backends(database_url: str) -> int:
    admin = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    try:
        return int(
            await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await admin.close()


async def test_terminated_postgres_connections_answer_503_then_recover(
    client: httpx.AsyncClient, workspace: Workspace, database_url: str
) -> None:
    if _dialect() != "postgres":
        pytest.skip("PostgreSQL only (CRM_TEST_DATABASE_URL=postgres://...)")
    # Several pool connections in use, so more than one is dead after the terminate.
    replies = await asyncio.gather(
        *(client.get(f"{API}/contacts", headers=workspace.headers) for _ in range(4))
    )
    assert {r.status_code for r in replies} == {200}
    assert await _terminate_backends(database_url) >= 1
    lost = await client.get(f"{API}/contacts", headers=workspace.headers)
    assert lost.status_code in (200, 503), lost.text
    if lost.status_code == 503:
        assert lost.headers["content-type"] == "application/problem+json"
        assert int(lost.headers["Retry-After"]) > 0
        assert lost.json()["code"] == "database_unavailable"
    for _ in range(3):
        again = await client.get(f"{API}/contacts", headers=workspace.headers)
        assert again.status_code == 200, again.text


async def test_a_locked_sqlite_database_answers_503_then_recovers(
    client: httpx.AsyncClient, workspace: Workspace, database_url: str
) -> None:
    if _dialect() != "sqlite":
        pytest.skip("SQLite only")
    conn = connections.get("default")
    await conn.execute_script("PRAGMA busy_timeout = 50")  # do not wait the default 5 s
    locker = sqlite3.connect(database_url.removeprefix("sqlite://"), isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        locked = await client.post(
            f"{API}/contacts", json={"name": "Anna"}, headers=workspace.headers
        )
        assert locked.status_code == 503, locked.text
        assert locked.headers["Retry-After"] == "2"
        assert locked.json()["code"] == "database_unavailable"
        locker.execute("ROLLBACK")
        created = await client.post(
            f"{API}/contacts", json={"name": "Anna"}, headers=workspace.headers
        )
        assert created.status_code == 201, created.text
    finally:
        locker.close()
        await conn.execute_script("PRAGMA busy_timeout = 5000")
