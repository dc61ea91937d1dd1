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


def _children_first(tables: list[str], references: list[tuple[str, str]]) -> list[str]:
    """``tables`` ordered so that a table comes before every table it references."""
    parents: dict[str, set[str]] = {t: set() for t in tables}
    for child, parent in references:
        if child in parents and parent in parents and child != parent:
            parents[child].add(parent)
    ordered: list[str] = []
    placed: set[str] = set()

    def place(table: str, seen: frozenset[str]) -> None:
        if table in placed or table in seen:  # a cycle: the FK actions resolve it
            return
        # Every table referencing this one goes first.
        for other in tables:
            if table in parents[other]:
                place(other, seen | {table})
        placed.add(table)
        ordered.append(table)

    for table in tables:
        place(table, frozenset())
    return ordered


async def _empty_postgres_tables(tables: list[str]) -> None:
    """DELETE the rows of the tables that have any, restart the sequences that were used.

    The same end state as ``TRUNCATE ... RESTART IDENTITY CASCADE`` of every table, without
    its cost (new files for each table on every test): a test fills a few tables only.
    """
    conn = connections.get("default")
    has_rows = " UNION ALL ".join(
        f"SELECT '{t}' AS name WHERE EXISTS (SELECT 1 FROM \"{t}\")" for t in tables
    )
    _, rows = await conn.execute_query(has_rows)
    filled = {r["name"] for r in rows}
    # Sequences owned by these tables' columns (serial or identity) that handed out a value.
    _, used = await conn.execute_query(
        "SELECT s.schemaname, s.sequencename FROM pg_sequences s"
        " JOIN pg_class sc ON sc.relname = s.sequencename"
        " JOIN pg_namespace n ON n.oid = sc.relnamespace AND n.nspname = s.schemaname"
        " JOIN pg_depend d ON d.objid = sc.oid AND d.classid = 'pg_class'::regclass"
        " AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')"
        " JOIN pg_class t ON t.oid = d.refobjid"
        " WHERE s.schemaname = 'public' AND s.last_value IS NOT NULL AND t.relname = ANY($1)",
        [tables],
    )
    if not filled and not used:
        return
    _, refs = await conn.execute_query(
        "SELECT c.relname AS child, p.relname AS parent FROM pg_constraint f"
        " JOIN pg_class c ON c.oid = f.conrelid JOIN pg_class p ON p.oid = f.confrelid"
        " WHERE f.contype = 'f'"
    )
    order = _children_first(tables, [(r["child"], r["parent"]) for r in refs])
    statements = [f'DELETE FROM "{t}"' for t in order if t in filled]
    statements += [
        f'ALTER SEQUENCE "{r["schemaname"]}"."{r["sequencename"]}" RESTART' for r in used
    ]
    await conn.execute_script("BEGIN; " + "; ".join(statements) + "; COMMIT")


async def empty_tables() -> None:
    """Delete every row (migrations history aside) and reset the id sequences."""
    conn = connections.get("default")
    tables = await _table_names()
    if conn.capabilities.dialect == "sqlite":
        # FTS5 keeps its index in shadow tables: emptied through the virtual table only.
        # One transaction: one commit (and sync to disk) instead of one per table.
        statements = [f'DELETE FROM "{t}"' for t in tables if not t.startswith(FTS_TABLE)]
        statements.append(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('delete-all')")
        statements.append("DELETE FROM sqlite_sequence")
        await conn.execute_script("BEGIN; " + "; ".join(statements) + "; COMMIT;")
    else:
        await _empty_postgres_tables(tables)
