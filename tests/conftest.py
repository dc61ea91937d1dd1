"""Test wiring: one migrated database per run, emptied after every test.

``CRM_TEST_DATABASE_URL`` picks the database (default: a SQLite file in a temp dir); a
``postgres://`` URL gets its own throw-away database named after the process.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from tortoise import connections

from crm.app import create_app
from crm.db import close_db, init_db, migrate_db
from crm.models import Role
from crm.services.access import Actor
from crm.services.apikeys import do_create_api_key
from crm.services.tenants import do_add_member, do_create_tenant
from crm.settings import Settings

# The SQLite full-text index of memory chunks (migration 0009).
FTS_TABLE = "memory_chunk_fts"
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def _test_database_url() -> str:
    url = os.environ.get("CRM_TEST_DATABASE_URL", "")
    if not url:
        return f"sqlite://{tempfile.mkdtemp(prefix='crm-test-')}/crm.sqlite3"
    return url


async def _recreate_postgres_database(url: str) -> str:
    base, _, _ = url.rpartition("/")
    name = f"crm_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(base.replace("postgres://", "postgresql://", 1) + "/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"{base}/{name}"


async def _drop_postgres_database(url: str) -> None:
    base, _, name = url.rpartition("/")
    admin = await asyncpg.connect(base.replace("postgres://", "postgresql://", 1) + "/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class NetworkDisabled(OSError):
    """A test tried to reach beyond this machine (DESIGN section 9: tests run offline)."""


def _is_local_host(host: object) -> bool:
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except ValueError:
        return str(host).endswith(".localhost")


def refuse_non_loopback(address: object) -> None:
    """Raise NetworkDisabled for an address that is not on this machine (Unix sockets pass)."""
    if isinstance(address, tuple) and not _is_local_host(address[0]):
        raise NetworkDisabled(f"tests may not reach the network: {address[0]!r}")


@pytest.fixture(autouse=True, scope="session")
def no_network() -> Iterator[None]:
    """Any connection or name lookup beyond loopback fails the test that made it."""
    connect, connect_ex, getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def guarded_connect(self: socket.socket, address: Any) -> None:
        refuse_non_loopback(address)
        return connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        refuse_non_loopback(address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if not _is_local_host(name):
            raise NetworkDisabled(f"tests may not resolve {name!r}")
        return getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = guarded_getaddrinfo
    try:
        yield
    finally:
        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = getaddrinfo


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    """A freshly migrated database for this test run."""
    url = _test_database_url()
    is_postgres = url.startswith("postgres")
    if is_postgres:
        url = await _recreate_postgres_database(url)
    await migrate_db(url)
    await init_db(url)
    try:
        yield url
    finally:
        await close_db()
        if is_postgres:
            await _drop_postgres_database(url)


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


@pytest.fixture(autouse=True)
async def clean_database(database_url: str) -> AsyncIterator[None]:
    """Every test starts from empty tables."""
    yield
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


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Settings pointing at the test database, nothing else configured."""
    return Settings(  # type: ignore[call-arg]
        database_url=database_url,
        redis_url=None,
        ai_index_dir=Path(tempfile.mkdtemp(prefix="crm-ai-index-")),
        sandbox_state_dir=Path(tempfile.mkdtemp(prefix="crm-sandbox-")),
        _env_file=None,
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the ASGI app in-process."""
    app = create_app(settings, manage_db=False, run_backbone=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as http:
        yield http


@dataclass
class Workspace:
    """A tenant with an owner and an API key ready for requests."""

    tenant_id: int
    owner_id: int
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def actor(self) -> Actor:
        return Actor(tenant_id=self.tenant_id, user_id=self.owner_id, role=Role.OWNER)

    async def member(
        self, role: Role, telegram_id: int | None = None
    ) -> tuple[int, dict[str, str]]:
        """Add a member with ``role`` and return their user id and request headers."""
        tg = telegram_id if telegram_id is not None else uuid.uuid4().int % 10**9
        membership = await do_add_member(self.actor, role, telegram_id=tg)
        scopes = ["read", "write", "admin"] if role in (Role.OWNER, Role.ADMIN) else None
        issued = await do_create_api_key(
            Actor.system(self.tenant_id), "test", scopes, for_user_id=membership.user_id
        )
        return membership.user_id, {"Authorization": f"Bearer {issued.token}"}


async def make_workspace(name: str = "Acme") -> Workspace:
    """Create a tenant with an owner holding an all-scopes key."""
    created = await do_create_tenant(name, owner_telegram_id=uuid.uuid4().int % 10**9)
    actor = Actor(tenant_id=created.tenant.id, user_id=created.owner.id, role=Role.OWNER)
    issued = await do_create_api_key(actor, "owner", ["read", "write", "admin"])
    return Workspace(created.tenant.id, created.owner.id, issued.token)


@pytest.fixture
async def workspace(database_url: str) -> Workspace:
    """A tenant ready for requests."""
    return await make_workspace("Acme")


@pytest.fixture
async def other_workspace(database_url: str) -> Workspace:
    """A second tenant, for isolation tests."""
    return await make_workspace("Globex")
