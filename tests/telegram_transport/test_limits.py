"""Flood control: the limiter's computed waits (fake clock) and the 429 retry middleware."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramRetryAfter, TelegramServerError
from aiogram.methods import GetMe, SendMessage, TelegramMethod

from channels.telegram import TelegramAdapter
from crm.messaging import OutboundMessage
from telegram_transport.limits import (
    PAID_BROADCAST_PER_SECOND,
    FloodControlMiddleware,
    RateLimits,
    SendRateLimiter,
)
from tests.support.telegram import CONNECTION_ID, LEAD, OTHER_LEAD, Sandbox


class FakeClock:
    """A clock that only moves when told; sleeps are recorded, not waited."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def test_one_private_chat_is_spaced_one_second_apart() -> None:
    clock = FakeClock()
    limiter = SendRateLimiter(clock=clock)
    waits = [limiter.chat_delay(1, LEAD) for _ in range(3)]
    assert waits == [0.0, 1.0, 2.0]
    # Another chat is not held up by the first one's queue.
    assert limiter.chat_delay(1, OTHER_LEAD) == 0.0
    # Nor is the same lead on another bot, or in a rep's business chat.
    assert limiter.chat_delay(2, LEAD) == 0.0
    assert limiter.chat_delay(1, LEAD, "bc-1") == 0.0

    clock.now += 10  # the queue has drained
    assert limiter.chat_delay(1, LEAD) == 0.0


def test_group_chats_allow_bursts_of_twenty_a_minute() -> None:
    clock = FakeClock()
    limiter = SendRateLimiter(clock=clock)
    waits = [limiter.chat_delay(1, -100200) for _ in range(21)]
    assert waits[:20] == [0.0] * 20
    assert waits[20] == 60.0


def test_bot_wide_limit_is_thirty_a_second() -> None:
    clock = FakeClock()
    limiter = SendRateLimiter(clock=clock)
    waits = [limiter.bot_delay(1) for _ in range(61)]
    assert waits[:30] == [0.0] * 30
    assert waits[30:60] == [1.0] * 30
    assert waits[60] == 2.0
    assert limiter.bot_delay(2) == 0.0


async def test_concurrent_sends_wait_per_chat_not_for_each_other() -> None:
    clock = FakeClock()
    limiter = SendRateLimiter(clock=clock, sleep=clock.sleep)
    await asyncio.gather(
        limiter.acquire(1, LEAD),
        limiter.acquire(1, LEAD),
        limiter.acquire(1, OTHER_LEAD),
        limiter.acquire(1, LEAD),
    )
    # Only the second and third message to LEAD wait; the other chat's message does not.
    assert sorted(clock.sleeps) == [1.0, 2.0]


def _retry_after(seconds: int) -> TelegramRetryAfter:
    return TelegramRetryAfter(
        method=SendMessage(chat_id=LEAD, text="x"),
        message=f"Too Many Requests: retry after {seconds}",
        retry_after=seconds,
    )


class FlakyApi:
    """A stand-in for aiogram's request: fails with the given errors, then succeeds."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self, bot: Bot, method: TelegramMethod[Any]) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "sent"


BOT = Bot("42:middleware-test-token")


async def test_middleware_waits_out_429_then_sends() -> None:
    clock = FakeClock()
    middleware = FloodControlMiddleware(max_attempts=3, sleep=clock.sleep)
    api = FlakyApi(_retry_after(2), _retry_after(1))
    assert await middleware(api, BOT, SendMessage(chat_id=LEAD, text="x")) == "sent"
    assert (api.calls, clock.sleeps) == (3, [2.0, 1.0])


async def test_middleware_gives_up_after_its_attempts_or_a_long_wait() -> None:
    clock = FakeClock()
    middleware = FloodControlMiddleware(max_attempts=2, max_wait=30, sleep=clock.sleep)
    api = FlakyApi(_retry_after(1), _retry_after(1), _retry_after(1))
    with pytest.raises(TelegramRetryAfter):
        await middleware(api, BOT, SendMessage(chat_id=LEAD, text="x"))
    assert api.calls == 2

    long_wait = FlakyApi(_retry_after(300))
    with pytest.raises(TelegramRetryAfter):
        await middleware(long_wait, BOT, SendMessage(chat_id=LEAD, text="x"))
    assert long_wait.calls == 1


async def test_middleware_does_not_retry_server_errors() -> None:
    clock = FakeClock()
    middleware = FloodControlMiddleware(sleep=clock.sleep)
    method = SendMessage(chat_id=LEAD, text="x")
    api = FlakyApi(TelegramServerError(method=method, message="Internal Server Error"))
    with pytest.raises(TelegramServerError):
        await middleware(api, BOT, method)
    assert (api.calls, clock.sleeps) == (1, [])


async def test_middleware_limits_only_message_sends() -> None:
    clock = FakeClock()
    limiter = SendRateLimiter(clock=clock, sleep=clock.sleep)
    middleware = FloodControlMiddleware(limiter, sleep=clock.sleep)
    api = FlakyApi()
    for _ in range(3):
        await middleware(api, BOT, GetMe())
    assert clock.sleeps == []
    for _ in range(3):
        await middleware(api, BOT, SendMessage(chat_id=LEAD, text="x"))
    assert clock.sleeps == [1.0, 2.0]


async def test_real_sends_keep_per_chat_order_and_do_not_block_other_chats(
    sandbox: Sandbox,
) -> None:
    await sandbox.lead_says("hi")
    await sandbox.lead_says("hi", from_user_id=OTHER_LEAD)
    adapter = TelegramAdapter(limits=RateLimits(private_window=0.3))
    try:
        await asyncio.gather(
            *(
                adapter.send(sandbox.connection, OutboundMessage(to=str(LEAD), text=f"m{i}"))
                for i in (1, 2, 3)
            ),
            adapter.send(sandbox.connection, OutboundMessage(to=str(OTHER_LEAD), text="other")),
        )
    finally:
        await adapter.close()
    everything = sandbox.emulator.sent(str(CONNECTION_ID))
    order = [row["text"] for row in everything]
    assert [t for t in order if t != "other"] == ["m1", "m2", "m3"]
    # The other chat's message went out while LEAD's queue was still waiting.
    assert order.index("other") < order.index("m2")


async def test_paid_broadcast_marks_sends_and_leaves_other_calls_alone() -> None:
    seen: list[TelegramMethod[Any]] = []

    async def api(bot: Bot, method: TelegramMethod[Any]) -> str:
        seen.append(method)
        return "sent"

    paid = FloodControlMiddleware(paid_broadcast=True)
    await paid(api, BOT, SendMessage(chat_id=LEAD, text="x"))
    await paid(api, BOT, GetMe())
    await FloodControlMiddleware()(api, BOT, SendMessage(chat_id=LEAD, text="y"))
    first, get_me, plain = seen
    assert isinstance(first, SendMessage) and first.allow_paid_broadcast is True
    assert not hasattr(get_me, "allow_paid_broadcast")
    assert isinstance(plain, SendMessage) and plain.allow_paid_broadcast is None


def test_paid_broadcast_budget_is_a_thousand_a_second() -> None:
    clock = FakeClock()
    limiter = SendRateLimiter(RateLimits(per_bot=PAID_BROADCAST_PER_SECOND), clock=clock)
    waits = [limiter.bot_delay(1) for _ in range(PAID_BROADCAST_PER_SECOND + 1)]
    assert max(waits[:-1]) == 0 and waits[-1] == pytest.approx(1.0)
