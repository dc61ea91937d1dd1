"""Bulk SQL of the batch writer: COPY and unnest() on PostgreSQL, executemany on SQLite."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError, OperationalError

from crm.models import Consent
from crm.services.contacts.csv_import.matching import FETCHED_COLUMNS, ContactRecord
from crm.services.contacts.identifiers import build_search_text


class BulkSql:
    """Bulk statements: COPY and unnest() arrays on PostgreSQL, executemany on SQLite."""

    def __init__(self, conn: BaseDBAsyncClient) -> None:
        self.conn = conn
        self.pg = conn.capabilities.dialect == "postgres"

    async def insert(
        self,
        table: str,
        consts: list[tuple[str, Any]],
        columns: list[str],
        rows: list[tuple[Any, ...]],
        *,
        returning: str | None = None,
    ) -> list[dict[str, Any]]:
        """Insert ``rows`` (values of ``columns``) with ``consts`` on every row."""
        if not rows:
            return []
        names = [c[0] for c in consts] + columns
        const_values = tuple(c[1] for c in consts)
        if self.pg:
            # COPY: the cheapest way in; ids, where needed, were drawn beforehand.
            assert returning is None
            try:
                async with self.conn.acquire_connection() as raw:
                    await raw.copy_records_to_table(
                        table, records=[const_values + tuple(r) for r in rows], columns=names
                    )
            except Exception as exc:
                # The driver's own errors: translate them as tortoise does for its queries.
                sqlstate = str(getattr(exc, "sqlstate", ""))
                if sqlstate.startswith("23"):  # integrity constraint violation
                    raise IntegrityError(exc) from exc
                if sqlstate.startswith("40"):  # deadlock, serialization failure
                    raise OperationalError(exc) from exc
                raise
            return []
        one = "(" + ", ".join("?" * len(names)) + ")"
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES "
        if not returning:
            await self.conn.execute_many(sql + one, [[*const_values, *r] for r in rows])
            return []
        out: list[dict[str, Any]] = []
        chunk = max(1, 30000 // len(names))  # below SQLite's limit of 32766 variables
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            params = [v for r in part for v in (*const_values, *r)]
            out.extend(
                await self.conn.execute_query_dict(
                    f"{sql}{', '.join([one] * len(part))} RETURNING {returning}", params
                )
            )
        return out

    async def next_ids(self, table: str, count: int) -> list[int]:
        """``count`` fresh ids from the sequence behind ``table``.id (PostgreSQL)."""
        rows = await self.conn.execute_query_dict(
            "SELECT nextval(pg_get_serial_sequence($1, 'id')) AS id FROM generate_series(1, $2)",
            [table, count],
        )
        return [int(r["id"]) for r in rows]

    async def update_contacts(self, tenant_id: int, rows: list[tuple[Any, ...]]) -> None:
        """Write the contact columns of ``rows`` (values of the write columns, then the id)."""
        names = [c for c, _ in CONTACT_WRITE_COLUMNS]
        if self.pg:
            # One statement for the batch, joined on the primary key.
            sets = ", ".join(f"{c} = u.{c}" for c in names)
            arrays = ", ".join(
                f"${i + 3}::{t}[]"
                for i, (_, t) in enumerate([*CONTACT_WRITE_COLUMNS, ("id", "int")])
            )
            await self.conn.execute_query(
                f"UPDATE contact AS c SET {sets}, updated_at = $2 "
                f"FROM unnest({arrays}) AS u({', '.join(names)}, id) "
                "WHERE c.id = u.id AND c.tenant_id = $1",
                [tenant_id, dt.datetime.now(dt.UTC), *[list(c) for c in zip(*rows, strict=True)]],
            )
            return
        sets = ", ".join(f"{c} = ?" for c in names)
        await self.conn.execute_many(
            f"UPDATE contact SET {sets}, updated_at = ? WHERE id = ? AND tenant_id = ?",
            [[*r[:-1], dt.datetime.now(dt.UTC), r[-1], tenant_id] for r in rows],
        )

    async def find_contacts(
        self, tenant_id: int, wanted: dict[str, set[Any]], *, lock: bool
    ) -> list[dict[str, Any]]:
        """Stored contacts of the tenant having any of the ``wanted`` identifier values."""
        columns = ", ".join(FETCHED_COLUMNS)
        found: list[dict[str, Any]] = []
        for name, values in wanted.items():
            if not values:
                continue
            if self.pg:
                # One probe of the (tenant, identifier) unique index per value: left to itself
                # the planner prices a thousand probes above a scan of the whole tenant.
                pg_type = "bigint" if name == "telegram_id" else "text"
                locking = " FOR UPDATE" if lock else ""  # so a concurrent edit is not lost
                query = (
                    f"SELECT c.* FROM unnest($2::{pg_type}[]) AS k(v) CROSS JOIN LATERAL "
                    f"(SELECT {columns} FROM contact WHERE tenant_id = $1 AND {name} = k.v "
                    f"LIMIT 1{locking}) AS c"
                )
                params: list[Any] = [tenant_id, sorted(values)]
            else:
                marks = ", ".join("?" * len(values))
                query = f"SELECT {columns} FROM contact WHERE tenant_id = ? AND {name} IN ({marks})"
                params = [tenant_id, *values]
            found.extend(await self.conn.execute_query_dict(query, params))
        return found

    def params(self) -> SqlParams:
        """A builder of bind parameters ($n or ?) and their values for one statement."""
        return SqlParams(self.pg)


class SqlParams:
    """Placeholders numbered for PostgreSQL (``$1``) or positional for SQLite (``?``)."""

    def __init__(self, pg: bool) -> None:
        self.pg = pg
        self.values: list[Any] = []

    def one(self, value: Any) -> str:
        """A placeholder for ``value``."""
        self.values.append(value)
        return f"${len(self.values)}" if self.pg else "?"

    def any_of(self, column: str, values: list[Any], pg_type: str) -> str:
        """``column`` equal to any of ``values``."""
        if self.pg:
            self.values.append(list(values))
            return f"{column} = ANY(${len(self.values)}::{pg_type}[])"
        self.values.extend(values)
        return f"{column} IN ({', '.join('?' * len(values))})"


CONTACT_WRITE_COLUMNS: list[tuple[str, str]] = [
    ("name", "text"),
    ("title", "text"),
    ("company_id", "int"),
    ("phone", "text"),
    ("email", "text"),
    ("telegram_username", "text"),
    ("telegram_id", "bigint"),
    ("whatsapp_id", "text"),
    ("custom_fields", "jsonb"),
    ("source", "text"),
    ("consent", "text"),
    ("opted_out_at", "timestamptz"),
    ("timezone", "text"),
    ("search_text", "text"),
]


def to_json(value: Any) -> str:
    """Compact JSON as stored in custom_fields and event payloads."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def contact_values(rec: ContactRecord, company_ids: dict[str, int]) -> tuple[Any, ...]:
    """The values of CONTACT_WRITE_COLUMNS for a contact, its company by id."""
    s = rec.state
    company = s.get("company")
    company_id = company_ids[company] if company is not None and company in company_ids else None
    if company_id is None and "company" not in rec.before and rec.id is not None:
        company_id = rec.company_id
    return (
        s.get("name") or "",
        s.get("title"),
        company_id,
        s.get("phone"),
        s.get("email"),
        s.get("telegram_username"),
        s.get("telegram_id"),
        s.get("whatsapp_id"),
        to_json(rec.custom),
        s.get("source"),
        s.get("consent") or Consent.UNKNOWN.value,
        rec.opted_out_at,
        s.get("timezone"),
        build_search_text(
            s.get("name"), s.get("email"), s.get("phone"), s.get("telegram_username")
        ),
    )
