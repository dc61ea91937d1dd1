"""Helpers shared by the benchmarks: a throw-away PostgreSQL database and percentile timing."""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

DEFAULT_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def admin_url() -> str:
    """The maintenance database used to create and drop benchmark databases."""
    return os.environ.get("CRM_BENCH_ADMIN_URL", DEFAULT_ADMIN_URL)


async def create_database(prefix: str) -> str:
    """Create an empty database and return its tortoise URL."""
    base = admin_url().rpartition("/")[0]
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_url().replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{base}/{name}"


async def drop_database(url: str) -> None:
    """Drop a database made by create_database."""
    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(admin_url().replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def asyncpg_url(url: str) -> str:
    """asyncpg wants postgresql://."""
    return url.replace("postgres://", "postgresql://", 1)


@dataclass(frozen=True)
class Timing:
    """Latency percentiles of one measured operation, in milliseconds."""

    p50: float
    p95: float
    runs: int


async def measure(
    operation: Callable[[int], Awaitable[object]], runs: int, warmup: int = 10
) -> Timing:
    """Time ``operation(i)`` for i in range(runs) after a warm-up; percentiles in ms."""
    for i in range(warmup):
        await operation(i)
    samples = []
    for i in range(runs):
        start = time.perf_counter()
        await operation(i)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return Timing(
        p50=statistics.median(samples), p95=samples[int(len(samples) * 0.95) - 1], runs=runs
    )
