"""Test wiring: one migrated database per run, emptied after every test.

``CRM_TEST_DATABASE_URL`` picks the database (default: a SQLite file in a temp dir); a
``postgres://`` URL gets its own throw-away database named after the process.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from crm.app import create_app
from crm.db import close_db, init_db, migrate_db
from crm.settings import Settings
from tests.support.aiogram_sessions import close_sessions_at_once
from tests.support.database import (
    configured_database_url,
    create_postgres_database,
    drop_postgres_database,
    empty_tables,
)
from tests.support.network import sockets_kept_on_loopback
from tests.support.workspace import Workspace, make_workspace

TESTS = Path(__file__).resolve().parent
# End-to-end modules, whole: the product driven from outside (a browser, the CLI or the app in
# another process, the whole service on a port, a fuzzer, a PostgreSQL restart). Single tests
# elsewhere carry ``@pytest.mark.e2e``; so does every test of the running service (``service``).
END_TO_END_MODULES = {
    "sandbox/test_page_browser.py",
    "sandbox/test_restart.py",
    "channels/test_end_to_end.py",
    "crm/api/test_fuzz.py",
    "crm/tasks/test_pg_restart.py",
    "crm/test_app.py",
    "crm/test_cli.py",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the end-to-end tests ``e2e`` (``make test-fast`` leaves them out)."""
    for item in items:
        module = item.path.relative_to(TESTS).as_posix()
        if module in END_TO_END_MODULES or "service" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True, scope="session")
def no_network() -> Iterator[None]:
    """Any connection or name lookup beyond loopback fails the test that made it."""
    with sockets_kept_on_loopback():
        yield


@pytest.fixture(autouse=True)
def aiogram_sessions_close_at_once() -> None:
    """aiogram's sessions skip their 250 ms pause for TLS on close (once aiogram is loaded)."""
    close_sessions_at_once()


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    """A freshly migrated database for this test run."""
    url = configured_database_url()
    is_postgres = url.startswith("postgres")
    if is_postgres:
        url = await create_postgres_database(url)
    await migrate_db(url)
    await init_db(url)
    try:
        yield url
    finally:
        await close_db()
        if is_postgres:
            await drop_postgres_database(url)


@pytest.fixture(autouse=True)
async def clean_database(database_url: str) -> AsyncIterator[None]:
    """Every test starts from empty tables."""
    yield
    await empty_tables()


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


@pytest.fixture
async def workspace(database_url: str) -> Workspace:
    """A tenant ready for requests."""
    return await make_workspace("Acme")


@pytest.fixture
async def other_workspace(database_url: str) -> Workspace:
    """A second tenant, for isolation tests."""
    return await make_workspace("Globex")
