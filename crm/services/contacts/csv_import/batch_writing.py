"""Batched writing: each batch's contacts loaded, resolved and written in one transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.transactions import in_transaction

from crm.models import Company, Tag, Tenant
from crm.services.access import Actor
from crm.services.contacts.csv_import.audit_snapshots import created_snapshot, update_snapshots
from crm.services.contacts.csv_import.bulk_sql import (
    CONTACT_WRITE_COLUMNS,
    BulkSql,
    contact_values,
    to_json,
)
from crm.services.contacts.csv_import.header_mapping import IDENTIFIER_FIELDS
from crm.services.contacts.csv_import.matching import NOT_LOADED, ContactRecord, Resolver
from crm.services.contacts.csv_import.report import MAX_REPORTED_ERRORS, ImportResult, RowError
from crm.services.contacts.csv_import.row_parsing import ParsedRow
from crm.services.events.catalog import ContactCreated, ContactUpdated

BATCH_SIZE = 1000
_MAX_CACHED_NAMES = 20_000


class BatchWriter:
    """One import, batch by batch: rows resolved against stored contacts, written, tallied."""

    def __init__(self, actor: Actor, tenant: Tenant, *, dry_run: bool, overwrite: bool) -> None:
        self.actor = actor
        self.tenant_id = tenant.id
        self.dry_run = dry_run
        self.overwrite = overwrite
        self.resolver = Resolver(actor, overwrite)
        self.company_cache: dict[str, int] = {}
        self.tag_cache: dict[str, int] = {}
        self.result = ImportResult()
        self.unreported_from: int | None = None
        self.inserted = 0
        self.inserted_at_analyze = 0

    def add_errors(self, errors: list[RowError]) -> None:
        """Count a row as rejected or warned and list its errors, up to MAX_REPORTED_ERRORS."""
        if any(e.level == "error" for e in errors):
            self.result.rejected += 1
        else:
            self.result.warned += 1
        for error in errors:
            if len(self.result.errors) < MAX_REPORTED_ERRORS:
                self.result.errors.append(error)
            elif self.unreported_from is None:
                self.unreported_from = error.row

    async def run_batch(self, rows: list[ParsedRow], rejected: list[list[RowError]]) -> None:
        """Resolve and write one batch; ``rejected`` are its rows that failed to parse."""
        counts, errors = ImportResult(), list(rejected)
        errors += [row.warnings for row in rows if row.warnings]
        if rows:
            try:
                async with _batch_transaction() as conn:
                    counts, resolve_errors = await self._resolve_and_write(rows, conn)
                errors += resolve_errors
            except (IntegrityError, OperationalError):
                if self.dry_run:
                    raise
                # Someone saved a clashing contact meanwhile (or the batch swaps identifiers
                # between contacts): redo the batch row by row so only the clashing rows fail.
                counts = await self._run_rows_one_by_one(rows, errors)
        self.result.created += counts.created
        self.result.updated += counts.updated
        self.result.skipped += counts.skipped
        for row_errors in sorted(errors, key=lambda e: e[0].row):
            self.add_errors(row_errors)
        if not self.dry_run:
            self.inserted += counts.created
            await self._refresh_statistics()

    async def _refresh_statistics(self) -> None:
        """ANALYZE the contact tables each time this import has doubled the tenant's rows.

        Statistics that predate the import describe the tenant as (nearly) empty; the planner
        then probes its contacts through any index that starts with tenant_id and walks the
        whole tenant for every identifier looked up: quadratic in the size of the import.
        """
        conn = connections.get("default")
        if conn.capabilities.dialect != "postgres":
            return
        if self.inserted < BATCH_SIZE or self.inserted < 2 * self.inserted_at_analyze:
            return
        # Without ownership of the tables PostgreSQL skips this with a warning: harmless.
        await conn.execute_script("ANALYZE contact, contact_tag")
        self.inserted_at_analyze = self.inserted

    async def _run_rows_one_by_one(
        self, rows: list[ParsedRow], errors: list[list[RowError]]
    ) -> ImportResult:
        total = ImportResult()
        for row in rows:
            self.company_cache.clear()  # it may hold rows of the transaction rolled back
            self.tag_cache.clear()
            try:
                async with _batch_transaction() as conn:
                    counts, row_errors = await self._resolve_and_write([row], conn)
            except IntegrityError as exc:
                reason = f"clashes with a contact saved at the same time: {exc}"
                errors.append([RowError(row.row, "row", reason[:300])])
                continue
            errors += row_errors
            total.created += counts.created
            total.updated += counts.updated
            total.skipped += counts.skipped
        return total

    async def _resolve_and_write(
        self, rows: list[ParsedRow], conn: BaseDBAsyncClient
    ) -> tuple[ImportResult, list[list[RowError]]]:
        resolver = self.resolver
        if not self.dry_run:
            resolver.reset()
        await self._load(rows, conn)
        counts = ImportResult()
        errors: list[list[RowError]] = []
        for row in rows:
            row_errors: list[RowError] = []
            resolver.apply(row, counts, row_errors)
            if row_errors:
                errors.append(row_errors)
        if self.dry_run:
            resolver.new = []  # they stay in the index only: memory is what a dry run pays
        else:
            await self._write(conn)
        return counts, errors

    async def _load(self, rows: list[ParsedRow], conn: BaseDBAsyncClient) -> None:
        """Fetch the stored contacts any row of the batch may match, with their tags and notes."""
        wanted: dict[str, set[Any]] = {name: set() for name in IDENTIFIER_FIELDS}
        has_company = has_tags = False
        bodies: set[str] = set()
        for row in rows:
            for name in IDENTIFIER_FIELDS:
                value = row.values.get(name)
                if value is not None:
                    wanted[name].add(value)
            has_company = has_company or row.company is not None
            has_tags = has_tags or bool(row.tags)
            if row.note:
                bodies.add(row.note)
        db = conn
        sql = BulkSql(db)
        resolver = self.resolver
        for cache in (self.company_cache, self.tag_cache):
            if len(cache) > _MAX_CACHED_NAMES:
                cache.clear()  # bounded, so memory stays flat with many distinct companies
        recs: list[ContactRecord] = []
        seen: set[int] = set()
        stored = await sql.find_contacts(self.tenant_id, wanted, lock=not self.dry_run)
        for data in sorted(stored, key=lambda d: int(d["id"])):
            if data["id"] in seen:
                continue
            seen.add(data["id"])
            recs.append(resolver.by_id.get(data["id"]) or resolver.add_stored(data))
        if not recs:
            return
        if has_company:
            pending = [rec for rec in recs if rec.state.get("company") == NOT_LOADED]
            company_ids = {rec.company_id for rec in pending if rec.company_id is not None}
            names: dict[int, tuple[str, str]] = {}
            if company_ids:
                for c in (
                    await Company.filter(tenant_id=self.tenant_id, id__in=company_ids)
                    .using_db(db)
                    .values("id", "name", "name_key")
                ):
                    names[c["id"]] = (c["name_key"], c["name"])
                    resolver.company_names.setdefault(c["name_key"], c["name"])
            for rec in pending:
                key = names.get(rec.company_id) if rec.company_id is not None else None
                rec.state["company"] = key[0] if key else None
        if has_tags:
            pending = [rec for rec in recs if not rec.tags_loaded]
            if pending:
                by_id = {rec.id: rec for rec in pending}
                p = sql.params()
                clause = p.any_of("ct.contact_id", list(by_id), "int")
                for r in await db.execute_query_dict(
                    "SELECT ct.contact_id, t.name_key FROM contact_tag ct "
                    f"JOIN tag t ON t.id = ct.tag_id WHERE {clause}",
                    p.values,
                ):
                    by_id[r["contact_id"]].tags.add(r["name_key"])
                for rec in pending:
                    rec.tags_loaded = True
        if bodies:
            by_id = {rec.id: rec for rec in recs}
            p = sql.params()
            where = (
                f"tenant_id = {p.one(self.tenant_id)} AND "
                f"{p.any_of('contact_id', list(by_id), 'int')} AND "
                f"{p.any_of('body', list(bodies), 'text')}"
            )
            for r in await db.execute_query_dict(
                f"SELECT contact_id, body FROM note WHERE {where}", p.values
            ):
                by_id[r["contact_id"]].notes.add(r["body"])

    async def _ensure(
        self, conn: BaseDBAsyncClient, model: Any, cache: dict[str, int], names: dict[str, str]
    ) -> None:
        """Find or create the companies or tags named ``names`` ({name_key: name})."""
        missing = [k for k in names if k not in cache]
        if not missing:
            return
        for _ in range(2):
            for found in (
                await model.filter(tenant_id=self.tenant_id, name_key__in=missing)
                .using_db(conn)
                .values("id", "name_key")
            ):
                cache[found["name_key"]] = found["id"]
            missing = [k for k in missing if k not in cache]
            if not missing:
                return
            await model.bulk_create(
                [model(tenant_id=self.tenant_id, name=names[k], name_key=k) for k in missing],
                ignore_conflicts=True,
                using_db=conn,
            )
        raise IntegrityError(f"could not create {model.__name__} {missing[0]!r}")

    async def _write(self, conn: BaseDBAsyncClient) -> None:
        resolver = self.resolver
        updated = [rec for rec in resolver.by_id.values() if rec.changed]
        created = resolver.new
        if not updated and not created:
            return
        sql = BulkSql(conn)
        now = dt.datetime.now(dt.UTC)
        touched = updated + created

        company_names = {
            rec.state["company"]: resolver.company_names[rec.state["company"]]
            for rec in touched
            if rec.state.get("company") and (rec.id is None or "company" in rec.before)
        }
        await self._ensure(conn, Company, self.company_cache, company_names)
        tag_names = {k: v for rec in touched for k, v in rec.new_tags.items()}
        await self._ensure(conn, Tag, self.tag_cache, tag_names)

        if updated:
            # Updates first: an overwrite may free an identifier that a new contact then takes.
            await sql.update_contacts(
                self.tenant_id,
                [(*contact_values(rec, self.company_cache), rec.id) for rec in updated],
            )
        if sql.pg:
            # Back to cached plans: foreign-key checks of the inserts below run one planned query
            # per row, and re-planning each of those would double the cost of the batch.
            await conn.execute_script("SET LOCAL plan_cache_mode = auto")
        if created:
            consts = [
                ("tenant_id", self.tenant_id),
                ("score", 0),
                # Like a contact created by hand: the member who imports it owns it.
                ("owner_id", self.actor.user_id),
                ("created_at", now),
                ("updated_at", now),
            ]
            columns = [c for c, _ in CONTACT_WRITE_COLUMNS]
            values = [contact_values(rec, self.company_cache) for rec in created]
            if sql.pg:
                # Ids drawn from the sequence up front let the rows go in by COPY.
                ids = await sql.next_ids("contact", len(created))
                for rec, contact_id in zip(created, ids, strict=True):
                    rec.id = contact_id
                rows = [(rec.id, *v) for rec, v in zip(created, values, strict=True)]
                await sql.insert("contact", consts, ["id", *columns], rows)
            else:
                returning = "id, " + ", ".join(IDENTIFIER_FIELDS)
                for data in await sql.insert(
                    "contact", consts, columns, values, returning=returning
                ):
                    # RETURNING order is not promised: match rows back by an identifier.
                    for name in IDENTIFIER_FIELDS:
                        if data[name] is not None:
                            resolver.index[(name, data[name])].id = data["id"]
                            break

        links = [(rec.id, self.tag_cache[k]) for rec in touched for k in rec.new_tags]
        await sql.insert("contact_tag", [], ["contact_id", "tag_id"], links)
        notes = [(rec.id, body) for rec in touched for body in rec.new_notes]
        await sql.insert(
            "note",
            [
                ("tenant_id", self.tenant_id),
                ("author_id", self.actor.user_id),
                ("created_at", now),
                ("updated_at", now),
            ],
            ["contact_id", "body"],
            notes,
        )
        events: list[tuple[Any, ...]] = []
        names = resolver.company_names
        for rec in created:
            events.append(
                (ContactCreated.type, rec.id, None, to_json(created_snapshot(rec, names)))
            )
        for rec in updated:
            before, after = update_snapshots(rec, names)
            events.append((ContactUpdated.type, rec.id, to_json(before), to_json(after)))
        # Per-contact audit rows only: the one summary event below goes through the outbox.
        # Written in bulk past record_event: both types' payloads are snapshots (plain dicts).
        await sql.insert(
            "event",
            [
                ("tenant_id", self.tenant_id),
                ("entity_type", ContactCreated.entity_type),
                ("actor_type", self.actor.actor_type.value),
                ("actor_user_id", self.actor.user_id),
                ("actor_api_key_id", self.actor.api_key_id),
                ("created_at", now),
            ],
            ["type", "entity_id", "before", "after"],
            events,
        )


@asynccontextmanager
async def _batch_transaction() -> AsyncIterator[BaseDBAsyncClient]:
    async with in_transaction() as conn:
        if conn.capabilities.dialect == "postgres":
            # Plan each statement for the table as it is now: a generic plan cached while an
            # import fills an empty table assumes it tiny and scans a whole tenant per lookup.
            await conn.execute_script("SET LOCAL plan_cache_mode = force_custom_plan")
        yield conn
