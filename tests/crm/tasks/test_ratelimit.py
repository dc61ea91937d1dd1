"""The Redis rate limiter keeps one pace for a connection across independent limiters."""

from __future__ import annotations

import itertools
import time
import uuid

import pytest

from crm.tasks.ratelimit import RedisRateLimiter
from tests.support.redis import REDIS_URL, redis_unreachable


async def test_two_workers_share_one_pace() -> None:
    reason = await redis_unreachable()
    if reason:
        pytest.skip(reason)
    namespace = f"crm-test-rate:{uuid.uuid4().hex[:8]}"
    first, second = RedisRateLimiter(REDIS_URL, namespace), RedisRateLimiter(REDIS_URL, namespace)
    try:
        # 20 sends at 50/s reserved by two "workers" in turn: one slot every 20 ms between them,
        # so the last comes about 380 ms after the first (alone, each would have reserved only
        # 10 slots). Measured as when each slot comes, not how long each waits, so a slow
        # machine (reservations taking longer) does not change the verdict.
        start = time.monotonic()
        waits, comes_at = [], []
        for limiter in [first, second] * 10:
            wait = await limiter.reserve("connection:1", 50)
            waits.append(wait)
            comes_at.append(time.monotonic() - start + wait)
        assert waits[0] == 0
        assert comes_at[-1] >= 0.37
        assert all(later >= earlier - 0.002 for earlier, later in itertools.pairwise(comes_at))
        # Another connection keeps its own pace.
        assert await first.reserve("connection:2", 50) == 0
    finally:
        await first.aclose()
        await second.aclose()
