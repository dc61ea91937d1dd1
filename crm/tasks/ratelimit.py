"""A send-rate limiter shared by every worker through Redis.

Each key holds the next free slot (milliseconds on Redis's own clock, so the workers' clocks do
not matter). A caller reserves the slot atomically and sleeps until it comes: with N workers the
connection still sends at most ``rate`` messages a second in total.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

# KEYS[1]: the key; ARGV[1]: the interval in ms. Returns how many ms the caller must wait.
_RESERVE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now_ms then slot = now_ms end
local interval = tonumber(ARGV[1])
redis.call('SET', KEYS[1], slot + interval, 'PX', math.max(1000, slot + interval - now_ms + 1000))
return slot - now_ms
"""


class RedisRateLimiter:
    """``crm.services.inbox.outbound.RateLimiter`` across processes."""

    def __init__(self, redis_url: str, namespace: str = "crm") -> None:
        self._redis = Redis.from_url(redis_url)
        self._namespace = namespace
        self._script = self._redis.register_script(_RESERVE)

    async def reserve(self, key: str, rate: int) -> float:
        """Reserve the next slot of ``key``; returns the seconds until it comes."""
        interval_ms = max(1, round(1000 / rate))
        redis_key = f"{self._namespace}:rate:{key}"
        wait_ms = int(await self._script(keys=[redis_key], args=[interval_ms]))
        return max(0, wait_ms) / 1000

    async def acquire(self, key: str, rate: int) -> None:
        """Reserve the next slot of ``key`` and sleep until it comes."""
        wait = await self.reserve(key, rate)
        if wait > 0:
            await asyncio.sleep(wait)

    async def aclose(self) -> None:
        """Close the Redis connection pool."""
        await self._redis.aclose()
