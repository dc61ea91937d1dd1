"""Waiting for background work in tests: poll with a deadline, never sleep a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], Awaitable[bool]],
    within: float = 30.0,
    *,
    tolerate_errors: bool = False,
    interval: float = 0.02,
) -> None:
    """Poll ``check`` until it holds; fail after ``within`` seconds.

    With ``tolerate_errors`` an exception counts as "not yet" and each attempt runs as a fresh
    task (for checks whose own connection may be among those just killed).
    """
    deadline = time.monotonic() + within

    async def attempt() -> bool:
        return bool(await check())

    while True:
        if tolerate_errors:
            try:
                if await asyncio.create_task(attempt()):
                    return
            except Exception:
                pass
        elif await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)
