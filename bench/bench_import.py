"""CSV import on PostgreSQL: rows/s and peak RSS of the importer, against COPY of the same rows.

For each size (25k, 50k, 100k rows, 10% of them duplicates of earlier rows) a CSV file is
generated in a temp dir and imported by a fresh process into a fresh tenant, so each peak RSS is
that import's own. The baseline is PostgreSQL COPY of the same file into a plain table.
Run: ``python -m bench.bench_import`` (env CRM_BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/crm_bench: a throw-away database created and dropped here).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import psutil

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/crm_bench"
SIZES = (25_000, 50_000, 100_000)
DUPLICATE_SHARE = 0.10
HEADER = ["First Name", "Last Name", "Email", "Phone Number", "Company Name", "Job Title", "Tags"]
FIRST = ["Ivan", "Anna", "John", "Maria", "Peter", "Olga", "James", "Elena", "Li", "Sofia"]
LAST = ["Petrov", "Smith", "Ivanova", "Garcia", "Muller", "Brown", "Rossi", "Chen", "Khan", "Berg"]
TITLES = ["CEO", "CTO", "Head of Sales", "Buyer", "Founder", "", "", ""]
TAGS = ["lead", "conference", "partner", "vip", "cold", ""]
AREA_CODES = ["212", "415", "646", "718", "312", "617", "202", "305", "213", "512"]


def _pg(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


def _phone(i: int) -> str:
    # Distinct valid US numbers: area code, exchange 201..999 (not 555), line 0000..9999.
    area = AREA_CODES[i % len(AREA_CODES)]
    rest = i // len(AREA_CODES)
    exchange = 201 + (rest // 10_000) % 790
    exchange = exchange + 1 if exchange == 555 else exchange
    line = rest % 10_000
    # Half written the way people type them, half already international.
    if i % 2:
        return f"({area}) {exchange}-{line:04d}"
    return f"+1 {area} {exchange} {line:04d}"


def generate_csv(path: Path, rows: int, seed: int = 7) -> None:
    """``rows`` data rows; a tenth repeat an earlier person (email in another case, more data)."""
    rng = random.Random(seed)
    unique = int(rows * (1 - DUPLICATE_SHARE))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        written = 0
        people = 0
        while written < rows:
            if people < unique and (people < 100 or rng.random() >= DUPLICATE_SHARE):
                i = people
                people += 1
                title = rng.choice(TITLES)
                email = f"person{i}@example{i % 97}.com"
            else:
                # A duplicate: the same person again, sometimes with a title now known.
                i = rng.randrange(people)
                title = rng.choice(TITLES)
                email = f"Person{i}@Example{i % 97}.com"
            writer.writerow(
                [
                    FIRST[i % len(FIRST)],
                    LAST[(i // len(FIRST)) % len(LAST)],
                    email,
                    _phone(i),
                    f"Company {i % 2000}",
                    title,
                    rng.choice(TAGS),
                ]
            )
            written += 1


class PeakRss:
    """Samples the RSS of this process every few ms in a thread (CPU-bound code can't starve it)."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


async def child(url: str, csv_path: str) -> dict[str, Any]:
    """One import in this fresh process: seconds, counts and RSS growth."""
    from crm.db import close_db, init_db
    from crm.models import Role
    from crm.services.access import Actor
    from crm.services.accounts.workspaces import do_create_tenant
    from crm.services.contacts.csv_import import do_import_contacts

    await init_db(url)
    created = await do_create_tenant(f"bench {os.getpid()}", owner_telegram_id=None)
    actor = Actor(tenant_id=created.tenant.id, user_id=created.owner.id, role=Role.OWNER)
    with open(csv_path, "rb") as f, PeakRss() as rss:
        start = time.perf_counter()
        result = await do_import_contacts(actor, f)
        seconds = time.perf_counter() - start
    await close_db()
    return {
        "seconds": seconds,
        "created": result.created,
        "updated": result.updated,
        "skipped": result.skipped,
        "rejected": result.rejected,
        "rss_start_mb": rss.start / 2**20,
        "rss_growth_mb": (rss.peak - rss.start) / 2**20,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


async def copy_baseline(url: str, csv_path: Path) -> float:
    """Seconds for COPY of the same file into a plain table (no indexes, no constraints)."""
    conn = await asyncpg.connect(_pg(url))
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS plain_contact; CREATE TABLE plain_contact (first_name text, "
            "last_name text, email text, phone text, company text, title text, tags text)"
        )
        start = time.perf_counter()
        with csv_path.open("rb") as f:
            await conn.copy_to_table("plain_contact", source=f, format="csv", header=True)
        return time.perf_counter() - start
    finally:
        await conn.close()


async def copy_into_contact_table(url: str, csv_path: Path) -> tuple[int, float]:
    """Rows and seconds for COPY of the file's distinct people straight into ``contact``.

    The same table the importer fills, with its unique and search indexes and foreign keys:
    the floor for any importer on this schema. Normalizing is done before the clock starts.
    """
    import datetime as dt

    from crm.services.contacts.identifiers import (
        build_search_text,
        normalize_email,
        normalize_phone,
    )

    now = dt.datetime.now(dt.UTC)
    conn = await asyncpg.connect(_pg(url))
    try:
        tenant_id = await conn.fetchval(
            "INSERT INTO tenant (name, default_region, default_currency, created_at) "
            "VALUES ('copy baseline', 'US', 'USD', now()) RETURNING id"
        )
        records: dict[str, tuple[Any, ...]] = {}
        with csv_path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                email = normalize_email(row["Email"])
                if email in records:
                    continue
                phone = normalize_phone(row["Phone Number"])
                name = f"{row['First Name']} {row['Last Name']}"
                records[str(email)] = (
                    tenant_id,
                    name,
                    row["Job Title"] or None,
                    phone,
                    email,
                    "{}",
                    "unknown",
                    0,
                    build_search_text(name, email, phone, None),
                    now,
                    now,
                )
        columns = [
            "tenant_id",
            "name",
            "title",
            "phone",
            "email",
            "custom_fields",
            "consent",
            "score",
            "search_text",
            "created_at",
            "updated_at",
        ]
        start = time.perf_counter()
        await conn.copy_records_to_table("contact", records=list(records.values()), columns=columns)
        return len(records), time.perf_counter() - start
    finally:
        await conn.close()


async def _create_database(url: str) -> None:
    base, _, name = url.rpartition("/")
    admin = await asyncpg.connect(_pg(base + "/postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def _drop_database(url: str) -> None:
    base, _, name = url.rpartition("/")
    admin = await asyncpg.connect(_pg(base + "/postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _run_child(url: str, csv_path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_import", "--child", url, str(csv_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


async def main() -> None:
    """Generate, import and COPY each size; print one table."""
    from crm.db import migrate_db

    url = os.environ.get("CRM_BENCH_DATABASE_URL", DEFAULT_URL)
    await _create_database(url)
    try:
        await migrate_db(url)
        print(f"CSV import benchmark on {url.rpartition('@')[2]}, {DUPLICATE_SHARE:.0%} duplicates")
        header = (
            f"{'rows':>8} {'created':>8} {'updated':>8} {'skipped':>8} {'import s':>9} "
            f"{'rows/s':>9} {'RSS +MB':>8} {'COPY rows/s':>12} {'COPY/import':>12}"
        )
        print(header)
        print("-" * len(header))
        with tempfile.TemporaryDirectory(prefix="crm-bench-import-") as tmp:
            for size in SIZES:
                path = Path(tmp) / f"contacts_{size}.csv"
                generate_csv(path, size)
                r = await asyncio.to_thread(_run_child, url, path)
                copy_seconds = await copy_baseline(url, path)
                rate = size / r["seconds"]
                copy_rate = size / copy_seconds
                print(
                    f"{size:>8} {r['created']:>8} {r['updated']:>8} {r['skipped']:>8} "
                    f"{r['seconds']:>9.2f} {rate:>9.0f} {r['rss_growth_mb']:>8.1f} "
                    f"{copy_rate:>12.0f} {copy_rate / rate:>11.1f}x",
                    flush=True,
                )
                path.unlink()
        print(
            "RSS +MB: peak resident memory of the importing process above its size before the "
            "import (sampled every 5 ms). Target: >= 25000 rows/s at 100k, RSS flat in size."
        )
        with tempfile.TemporaryDirectory(prefix="crm-bench-import-") as tmp:
            path = Path(tmp) / "contacts.csv"
            generate_csv(path, SIZES[-1])
            rows, seconds = await copy_into_contact_table(url, path)
        print(
            f"Floor on this schema: COPY of the {rows} distinct people (pre-normalized) straight "
            f"into the contact table: {rows / seconds:.0f} rows/s ({seconds:.2f} s), no audit "
            "events, tags or dedupe."
        )
    finally:
        await _drop_database(url)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(asyncio.run(child(sys.argv[2], sys.argv[3]))))
    else:
        asyncio.run(main())
