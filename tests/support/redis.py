"""The Redis the tests may use (``CRM_TEST_REDIS_URL``), and whether it answers."""

from __future__ import annotations

import os

from redis.asyncio import Redis

REDIS_URL = os.environ.get("CRM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def redis_unreachable() -> str | None:
    """Why the test Redis cannot be used, or None when it answers."""
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.ping()
    except Exception as exc:
        return f"Redis at {REDIS_URL} is unreachable ({exc!r}); set CRM_TEST_REDIS_URL"
    finally:
        await client.aclose()
    return None
