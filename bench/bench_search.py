"""Contact search and filtered lists on PostgreSQL: the CRM service against raw asyncpg.

Phase 1: 100k contacts in one tenant. Phase 2: 1M contacts over 100 tenants (the 100k tenant
plus 99 tenants of ~9.1k). For each query the same SQL runs through raw asyncpg as the baseline.
Run: ``python -m bench.bench_search`` (env CRM_BENCH_ADMIN_URL to point at another server).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx

from bench.common import Timing, asyncpg_url, create_database, drop_database, measure
from crm.app import create_app
from crm.db import close_db, init_db, migrate_db
from crm.models import Role
from crm.services.access import Actor
from crm.services.accounts.api_keys import do_create_api_key
from crm.services.accounts.workspaces import do_add_member, do_create_tenant
from crm.services.contacts.contacts import ContactFilters, list_contacts
from crm.services.contacts.identifiers import build_search_text
from crm.settings import Settings

FIRST = [
    "ivan",
    "anna",
    "john",
    "maria",
    "peter",
    "olga",
    "james",
    "elena",
    "li",
    "sofia",
    "dmitry",
    "emma",
    "alexei",
    "laura",
    "chen",
    "fatima",
    "oliver",
    "nina",
    "mark",
    "irina",
]
LAST = [
    "petrov",
    "smith",
    "ivanova",
    "garcia",
    "muller",
    "kuznetsov",
    "brown",
    "rossi",
    "novak",
    "wang",
    "kowalski",
    "silva",
    "popescu",
    "jensen",
    "dubois",
    "tanaka",
]
RUNS = 300
PAGE = 50


def _contact_rows(
    tenant_id: int, count: int, start_id: int, owners: list[int], rng: random.Random
) -> list[tuple[Any, ...]]:
    base = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    rows = []
    for i in range(count):
        cid = start_id + i
        name = f"{rng.choice(FIRST).title()} {rng.choice(LAST).title()} {cid}"
        email = f"{name.split()[0].lower()}.{cid}@example{cid % 97}.com"
        phone = f"+1415{cid:07d}"[:12]
        username = f"user{cid}"
        created = base + dt.timedelta(seconds=cid * 7)
        rows.append(
            (
                cid,
                tenant_id,
                name,
                None,
                None,
                phone,
                email,
                username,
                None,
                None,
                "{}",
                rng.choice(owners),
                "import",
                "unknown",
                None,
                None,
                0,
                build_search_text(name, email, phone, username),
                created,
                created,
            )
        )
    return rows


COLUMNS = [
    "id",
    "tenant_id",
    "name",
    "title",
    "company_id",
    "phone",
    "email",
    "telegram_username",
    "telegram_id",
    "whatsapp_id",
    "custom_fields",
    "owner_id",
    "source",
    "consent",
    "opted_out_at",
    "timezone",
    "score",
    "search_text",
    "created_at",
    "updated_at",
]


async def _load(
    conn: asyncpg.Connection,
    tenant_id: int,
    count: int,
    start_id: int,
    owners: list[int],
    rng: random.Random,
) -> None:
    for offset in range(0, count, 50_000):
        chunk = _contact_rows(
            tenant_id, min(50_000, count - offset), start_id + offset, owners, rng
        )
        await conn.copy_records_to_table("contact", records=chunk, columns=COLUMNS)


async def _tag(conn: asyncpg.Connection, tenant_id: int, share: int) -> None:
    tag_id = await conn.fetchval(
        "INSERT INTO tag (tenant_id, name, name_key, created_at) VALUES ($1,'VIP','vip',now()) "
        "RETURNING id",
        tenant_id,
    )
    await conn.execute(
        "INSERT INTO contact_tag (contact_id, tag_id) SELECT id, $1 FROM contact "
        "WHERE tenant_id=$2 AND id % $3 = 0",
        tag_id,
        tenant_id,
        share,
    )


RAW_SEARCH = (
    "SELECT * FROM contact WHERE tenant_id=$1 AND search_text LIKE $2 "
    "ORDER BY created_at DESC, id DESC LIMIT $3"
)
RAW_OWNER = (
    "SELECT * FROM contact WHERE tenant_id=$1 AND owner_id=$2 "
    "ORDER BY created_at DESC, id DESC LIMIT $3"
)
RAW_TAG = (
    "SELECT c.* FROM contact c JOIN contact_tag ct ON ct.contact_id=c.id "
    "JOIN tag t ON t.id=ct.tag_id WHERE c.tenant_id=$1 AND t.name_key=$2 "
    "ORDER BY c.created_at DESC, c.id DESC LIMIT $3"
)
RAW_TAGS_OF_PAGE = (
    "SELECT ct.contact_id, t.name FROM contact_tag ct JOIN tag t ON t.id=ct.tag_id "
    "WHERE ct.contact_id = ANY($1::int[])"
)


def _needles(rng: random.Random, n: int) -> list[str]:
    needles = []
    for _ in range(n):
        kind = rng.randrange(3)
        if kind == 0:
            needles.append(rng.choice(LAST)[: rng.randint(4, 6)])
        elif kind == 1:
            needles.append(f"{rng.choice(FIRST)} {rng.choice(LAST)}"[:9])
        else:
            needles.append(f"{rng.randint(100, 999)}{rng.randint(0, 9)}")
    return needles


async def _suite(
    label: str,
    pool: asyncpg.Pool,
    http: httpx.AsyncClient,
    token: str,
    tenant_id: int,
    owner_ids: list[int],
) -> list[tuple[str, str, Timing, Timing, Timing]]:
    actor = Actor(tenant_id=tenant_id, user_id=owner_ids[0], role=Role.OWNER)
    rng = random.Random(7)
    needles = _needles(rng, RUNS + 20)
    headers = {"Authorization": f"Bearer {token}"}

    async def raw(
        sql: str, args: Callable[[int], tuple[Any, ...]], *, custom_plan: bool = False
    ) -> Callable[[int], Awaitable[object]]:
        async def run(i: int) -> object:
            async with pool.acquire() as conn:
                if custom_plan:
                    # What the service does for a search: plan it for its own term.
                    async with conn.transaction():
                        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
                        rows = await conn.fetch(sql, *args(i))
                else:
                    rows = await conn.fetch(sql, *args(i))
                # the service also loads each contact's tags: the baseline does the same work
                return await conn.fetch(RAW_TAGS_OF_PAGE, [r["id"] for r in rows])

        return run

    cases: list[
        tuple[
            str,
            Callable[[int], Awaitable[object]],
            Callable[[int], Awaitable[object]],
            Callable[[int], Awaitable[object]],
        ]
    ] = [
        (
            "search q=",
            lambda i: list_contacts(actor, ContactFilters(q=needles[i]), limit=PAGE),
            await raw(
                RAW_SEARCH, lambda i: (tenant_id, f"%{needles[i]}%", PAGE + 1), custom_plan=True
            ),
            lambda i: http.get(
                "/api/v1/contacts", params={"q": needles[i], "limit": PAGE}, headers=headers
            ),
        ),
        (
            "owner filter",
            lambda i: list_contacts(
                actor, ContactFilters(owner_id=owner_ids[i % len(owner_ids)]), limit=PAGE
            ),
            await raw(RAW_OWNER, lambda i: (tenant_id, owner_ids[i % len(owner_ids)], PAGE + 1)),
            lambda i: http.get(
                "/api/v1/contacts",
                params={"owner_id": owner_ids[i % len(owner_ids)], "limit": PAGE},
                headers=headers,
            ),
        ),
        (
            "tag filter",
            lambda i: list_contacts(actor, ContactFilters(tag="vip"), limit=PAGE),
            await raw(RAW_TAG, lambda i: (tenant_id, "vip", PAGE + 1)),
            lambda i: http.get(
                "/api/v1/contacts", params={"tag": "vip", "limit": PAGE}, headers=headers
            ),
        ),
    ]
    results = []
    for name, service_op, raw_op, http_op in cases:
        results.append(
            (
                label,
                name,
                await measure(service_op, RUNS),
                await measure(raw_op, RUNS),
                await measure(http_op, RUNS),
            )
        )
    return results


def _print(results: list[tuple[str, str, Timing, Timing, Timing]]) -> None:
    print(
        f"\n{'dataset':<34}{'query':<14}{'service p50/p95 ms':>20}{'raw asyncpg p50/p95':>22}"
        f"{'ratio p95':>11}{'HTTP p50/p95 ms':>18}"
    )
    for label, name, svc, raw, http in results:
        print(
            f"{label:<34}{name:<14}{svc.p50:>9.2f} /{svc.p95:>7.2f}  {raw.p50:>10.2f} /"
            f"{raw.p95:>7.2f}  {svc.p95 / raw.p95:>9.2f}x{http.p50:>9.2f} /{http.p95:>6.2f}"
        )


async def main() -> None:
    """Load, measure, print, drop."""
    url = await create_database("crm_bench_search")
    try:
        await migrate_db(url)
        await init_db(url)
        rng = random.Random(1)
        big = await do_create_tenant("Big", owner_telegram_id=1)
        owner_actor = Actor(tenant_id=big.tenant.id, user_id=big.owner.id, role=Role.OWNER)
        owners = [big.owner.id]
        for n in range(4):
            m = await do_add_member(owner_actor, Role.BIDI, telegram_id=100 + n)
            owners.append(m.user_id)
        issued = await do_create_api_key(owner_actor, "bench", ["read"])
        pool = await asyncpg.create_pool(asyncpg_url(url), min_size=2, max_size=4)
        assert pool is not None
        async with pool.acquire() as conn:
            await _load(conn, big.tenant.id, 100_000, 1, owners, rng)
            await _tag(conn, big.tenant.id, 20)
            await conn.execute("SELECT setval('contact_id_seq', 2000000)")
            await conn.execute("VACUUM ANALYZE")  # flush GIN pending lists, as autovacuum would
        app = create_app(
            Settings(database_url=url, _env_file=None),  # type: ignore[call-arg]
            manage_db=False,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            results = await _suite(
                "100k contacts, 1 tenant", pool, http, issued.token, big.tenant.id, owners
            )
            _print(results)
            print("\nloading 900k more contacts over 99 tenants ...", flush=True)
            small_tenants = []
            next_id = 100_001
            for n in range(99):
                t = await do_create_tenant(f"T{n}", owner_telegram_id=1000 + n)
                small_tenants.append((t.tenant.id, t.owner.id))
            async with pool.acquire() as conn:
                for tenant_id, owner_id in small_tenants:
                    await _load(conn, tenant_id, 9_091, next_id, [owner_id], rng)
                    next_id += 9_091
                await _tag(conn, small_tenants[0][0], 20)
                await conn.execute("VACUUM ANALYZE")  # flush GIN pending lists, as autovacuum would
                total = await conn.fetchval("SELECT count(*) FROM contact")
            small_actor = Actor(
                tenant_id=small_tenants[0][0], user_id=small_tenants[0][1], role=Role.OWNER
            )
            small_key = await do_create_api_key(small_actor, "bench", ["read"])
            results += await _suite(
                f"{total // 1000}k/100 tenants: 100k one",
                pool,
                http,
                issued.token,
                big.tenant.id,
                owners,
            )
            results += await _suite(
                f"{total // 1000}k/100 tenants: 9k one",
                pool,
                http,
                small_key.token,
                small_tenants[0][0],
                [small_tenants[0][1]],
            )
        print(
            f"\nContact search and filtered lists, PostgreSQL, {RUNS} runs each, page {PAGE}; "
            "service = crm.services.contacts.contacts.list_contacts (ORM, with tags),"
        )
        print(
            "raw asyncpg = the same SQL plus the page's tags through one pooled connection; "
            "HTTP = GET /api/v1/contacts through the ASGI app in-process."
        )
        _print(results)
        await pool.close()
    finally:
        await close_db()
        await drop_database(url)


if __name__ == "__main__":
    asyncio.run(main())
