"""The operator bot's transport: long texts, the flood limit per user, FSM storage, background jobs.

split_text is checked on examples and on a few thousand seeded random texts (the properties:
every part fits, nothing is lost, no tag or entity is cut, every part parses as Telegram HTML).
The flood limit and send_long run end to end through the sandbox emulator; the FSM storage test
runs two OperatorBots, one after the other, on the same Redis (skipped when Redis is unreachable).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram import Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Message
from redis.asyncio import Redis

from bot.background import BackgroundTasks
from bot.dependencies import BotServices
from bot.long_messages import _units, send_long, split_text, visible_text
from bot.middlewares import FloodLimiter
from bot.operator_bot import OperatorBot, OperatorBotConfig, fsm_storage
from crm.settings import Settings
from crm.tasks.handlers import HandlerRegistry
from crm.wiring import build_channels, build_operator_bot
from sandbox.telegram import TelegramEmulator, check_html
from tests.support.bot import OPERATOR, buttons, onboard_owner, press, say, sent, wait_for
from tests.support.polling import eventually
from tests.support.service import RunningService

REDIS_URL = os.environ.get("CRM_TEST_REDIS_URL", "redis://127.0.0.1:6379/6")
OWNER = 6401
RU_OWNER = 6402
TOO_MANY = "Too many requests: wait a few seconds."
TOO_MANY_RU = "Слишком много запросов: подождите несколько секунд."
ENTITY = re.compile(r"&(?:[a-zA-Z][a-zA-Z0-9]*|#[0-9]+|#[xX][0-9a-fA-F]+);")


# --------------------------------------------------------------------------- split_text


def test_a_short_text_is_one_part() -> None:
    assert split_text("hello") == ["hello"]
    assert split_text("x" * 4096) == ["x" * 4096]


def test_paragraphs_come_before_lines_and_words() -> None:
    paragraph = ("word " * 15).strip()  # 74 characters
    text = "\n\n".join([paragraph] * 6)
    parts = split_text(text, 200)
    assert all(part.endswith("\n\n") for part in parts[:-1])
    assert "".join(parts) == text
    assert [len(p) for p in parts] == [152, 152, 150]

    lines = "\n".join(["line of some words"] * 20)
    parts = split_text(lines, 100)
    assert all(part.endswith("\n") for part in parts[:-1])
    assert "".join(parts) == lines

    words = " ".join(["word"] * 100)
    parts = split_text(words, 42)
    assert all(part.endswith(" ") and len(part) <= 42 for part in parts[:-1])
    assert "".join(parts) == words


def test_a_paragraph_break_too_early_gives_way_to_a_fuller_part() -> None:
    text = "Title\n\n" + " ".join(["word"] * 60)
    parts = split_text(text, 100)
    assert len(parts[0]) > 50  # not "Title\n\n" alone
    assert "".join(parts) == text


def test_a_word_longer_than_the_limit_is_cut_hard() -> None:
    assert split_text("a" * 10, 3) == ["aaa", "aaa", "aaa", "a"]
    # Astral characters count twice (UTF-16) and are never halved.
    parts = split_text("😀" * 5, 4)
    assert parts == ["😀😀", "😀😀", "😀"]


def test_tags_are_closed_and_reopened_across_parts() -> None:
    text = (
        "<b>"
        + "bold words " * 600
        + '</b>and <a href="https://x.test/?a=1&amp;b=2">'
        + ("link text " * 500)
        + "</a>"
    )
    parts = split_text(text, 4096)
    assert len(parts) > 2
    for part in parts:
        assert _units(part) <= 4096
        assert check_html(part) is None, part[:80]
    assert parts[1].startswith("<b>")
    assert parts[0].endswith("</b>")
    assert any(p.startswith('<a href="https://x.test/?a=1&amp;b=2">') for p in parts[1:])
    assert "".join(visible_text(p) for p in parts) == visible_text(text)


def test_entities_and_tags_are_never_cut() -> None:
    text = "&amp;" * 50 + "<i>" + "&lt;x&gt;" * 40 + "</i>"
    for limit in range(12, 60):
        parts = split_text(text, limit)
        for part in parts:
            assert _units(part) <= limit
            assert check_html(part) is None
            assert part.count("&") == len(ENTITY.findall(part))
        assert "".join(visible_text(p) for p in parts) == visible_text(text)


def test_plain_text_keeps_angle_brackets_as_text() -> None:
    text = "a <b> b " * 100
    parts = split_text(text, 50, html=False)
    assert "".join(parts) == text
    assert all(len(p) <= 50 for p in parts)


def test_a_limit_too_small_for_the_markup_is_an_error() -> None:
    with pytest.raises(ValueError):
        split_text("<b>" + "x" * 20 + "</b>", 7)


_WORDS = ["word", "слово", "a", "longerwordhere", "😀", "x&amp;y", "&lt;tag&gt;", "&#128512;"]


def _random_html(rng: random.Random) -> str:
    """Nested b/i/code/a spans over words, spaces, line and paragraph breaks."""
    out: list[str] = []
    stack: list[str] = []
    for _ in range(rng.randint(1, 400)):
        roll = rng.random()
        if roll < 0.06 and len(stack) < 3:
            tag = rng.choice([t for t in ("b", "i", "code", "a") if t not in stack])
            out.append('<a href="https://e.test/?q=1&amp;r=2">' if tag == "a" else f"<{tag}>")
            stack.append(tag)
        elif roll < 0.12 and stack:
            out.append(f"</{stack.pop()}>")
        elif roll < 0.2:
            out.append(rng.choice(["\n", "\n\n", "\n\n\n", "  "]))
        else:
            out.append(rng.choice(_WORDS) + (" " if rng.random() < 0.8 else ""))
    out.extend(f"</{tag}>" for tag in reversed(stack))
    return "".join(out)


def test_random_html_texts_keep_every_property() -> None:
    rng = random.Random(20240611)
    for _ in range(1500):
        text = _random_html(rng)
        limit = rng.randint(80, 600)
        parts = split_text(text, limit)
        assert check_html(text) is None
        for part in parts:
            assert _units(part) <= limit, (text, limit)
            assert check_html(part) is None, (text, limit, part)
            assert part.count("&") == len(ENTITY.findall(part)), (text, limit, part)
        assert "".join(visible_text(p) for p in parts) == visible_text(text), (text, limit)
        if _units(text) <= limit:
            assert parts == [text]


def test_random_plain_texts_join_back_exactly() -> None:
    rng = random.Random(7)
    alphabet = ["word", "слово", " ", " ", "\n", "\n\n", "😀", "<", "&", "x" * 30]
    for _ in range(1500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 300)))
        limit = rng.randint(2, 300)
        parts = split_text(text, limit, html=False)
        assert "".join(parts) == text
        assert all(_units(p) <= limit for p in parts)
        assert all(parts), parts


# --------------------------------------------------------------------------- the service


def operator_of(service: RunningService) -> OperatorBot:
    operator = service.app.state.operator.bot
    assert isinstance(operator, OperatorBot)
    return operator


def emulator_of(service: RunningService) -> TelegramEmulator:
    emulator = service.app.state.channels.telegram_emulator
    assert isinstance(emulator, TelegramEmulator)
    return emulator


async def test_send_long_sends_parts_in_order_with_the_keyboard_last(
    service: RunningService,
) -> None:
    await onboard_owner(service, OWNER, "Olga")
    before = len(await sent(service, OWNER))
    text = "<b>Report</b>\n\n" + "\n\n".join(
        f"<i>Section {n}</i>: " + "figures & facts ".replace("&", "&amp;") * 40 for n in range(14)
    )
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="OK", callback_data="ok")]]
    )
    messages = await send_long(
        operator_of(service).bot, OWNER, text, reply_markup=keyboard, parse_mode="HTML"
    )
    assert len(messages) == len(split_text(text)) > 2
    delivered = (await sent(service, OWNER))[before:]
    assert [m["message_id"] for m in delivered] == [m.message_id for m in messages]
    assert [buttons(m) for m in delivered] == [[]] * (len(delivered) - 1) + [["ok"]]
    assert all(m["parse_mode"] == "HTML" for m in delivered)
    # The emulator parsed each part as Telegram does; together they show the whole text.
    shown = "".join(visible_text(m["text"]) for m in delivered).replace("&amp;", "&")
    assert shown.split() == visible_text(text).replace("&amp;", "&").split()


async def test_the_flood_limit_drops_a_burst_and_says_so_once(service: RunningService) -> None:
    emulator = emulator_of(service)
    limiter = operator_of(service).flood
    assert (limiter.burst, limiter.window) == (20, 10.0)
    # A burst of 5 here: the bot paces its answers to one private chat (about 1 per second).
    limiter.burst = 5
    now = [1000.0]
    limiter.clock = lambda: now[0]

    await onboard_owner(service, OWNER, "Olga")  # 1
    await say(service, OWNER, "/workspace")  # 2
    listing = await wait_for(service, OWNER, "Your workspaces")
    for _ in range(3):  # 3..5
        await say(service, OWNER, "/help")
    await emulator.drain()
    allowed = len(await sent(service, OWNER))
    assert allowed == 2 + 3

    await say(service, OWNER, "/help")  # dropped, the sender is told
    (data,) = buttons(listing)
    pressed = await press(service, OWNER, data, listing["message_id"])  # dropped, answered
    await say(service, OWNER, "/help")  # dropped silently
    await emulator.drain()
    after = await sent(service, OWNER)
    assert [m["text"] for m in after[allowed:]] == [TOO_MANY]
    answers = [
        a
        for a in emulator.callback_answers(OPERATOR)
        if a["callback_query_id"] == pressed["callback_query_id"]
    ]
    assert answers == [
        {
            "callback_query_id": pressed["callback_query_id"],
            "data": data,
            "text": None,
            "show_alert": False,
            "url": None,
            "cache_time": None,
        }
    ]

    now[0] += 10.0  # a window later the user is heard again
    await say(service, OWNER, "/help")
    await emulator.drain()
    assert len(await sent(service, OWNER)) == len(after) + 1
    assert "/workspace" in (await sent(service, OWNER))[-1]["text"]


async def test_a_dropped_button_press_is_answered_with_the_notice_in_russian(
    service: RunningService,
) -> None:
    emulator = emulator_of(service)
    limiter = operator_of(service).flood
    limiter.burst = 3
    now = [50.0]
    limiter.clock = lambda: now[0]
    await say(service, RU_OWNER, "/start", first_name="Ирина", language_code="ru")  # 1
    await say(service, RU_OWNER, "/workspace", language_code="ru")  # 2
    listing = await workspace_list(service, RU_OWNER)
    await say(service, RU_OWNER, "/help", language_code="ru")  # 3
    await emulator.drain()
    (data,) = buttons(listing)
    pressed = await press(service, RU_OWNER, data, listing["message_id"])
    await emulator.drain()
    (answer,) = [
        a
        for a in emulator.callback_answers(OPERATOR)
        if a["callback_query_id"] == pressed["callback_query_id"]
    ]
    assert answer["text"] == TOO_MANY_RU
    # Told once: the notice went with the answer, no message follows.
    await say(service, RU_OWNER, "/help", language_code="ru")
    await emulator.drain()
    assert TOO_MANY_RU not in [m.get("text") for m in await sent(service, RU_OWNER)]


async def workspace_list(service: RunningService, chat_id: int) -> dict[str, Any]:
    """The bot's /workspace list in ``chat_id`` (workspace buttons), once there."""
    found: list[dict[str, Any]] = []

    async def arrived() -> bool:
        found[:] = [
            m for m in await sent(service, chat_id) if any(b.startswith("ws:") for b in buttons(m))
        ]
        return bool(found)

    await eventually(arrived)
    return found[0]


def test_the_flood_limiter_slides_and_forgets_idle_senders() -> None:
    now = [0.0]
    limiter = FloodLimiter(burst=3, window=10.0, clock=lambda: now[0], max_senders=2)
    verdicts = [limiter.hit(1) for _ in range(5)]
    assert [v.allowed for v in verdicts] == [True, True, True, False, False]
    assert [v.tell for v in verdicts] == [False, False, False, True, False]
    assert limiter.hit(2).allowed  # another user has their own budget
    now[0] = 9.9
    assert not limiter.hit(1).allowed and not limiter.hit(1).tell
    now[0] = 10.0  # the first three slid out of the window
    assert limiter.hit(1).allowed
    now[0] = 30.0
    assert limiter.hit(3).allowed  # a third sender: the idle ones are forgotten
    assert set(limiter._senders) == {3}


# --------------------------------------------------------------------------- FSM storage


async def test_the_fsm_storage_is_memory_without_redis(service: RunningService) -> None:
    assert isinstance(operator_of(service).dispatcher.storage, MemoryStorage)


async def test_the_fsm_storage_is_redis_when_the_service_has_redis(settings: Settings) -> None:
    configured = settings.model_copy(update={"redis_url": REDIS_URL})
    wiring = build_channels(configured)
    operator = build_operator_bot(wiring)
    try:
        assert operator is not None
        assert isinstance(operator.dispatcher.storage, RedisStorage)
    finally:
        if operator is not None:
            await operator.stop()
        await wiring.close()


class Dialogue(StatesGroup):
    waiting = State()


def dialogue_router(seen: list[tuple[str, ...]]) -> Router:
    """``/fsm_remember X`` starts a dialogue; ``/fsm_recall`` answers only inside it."""
    router = Router(name="fsm-test")

    @router.message(Command("fsm_remember"))
    async def remember(message: Message, command: CommandObject, state: FSMContext) -> None:
        await state.set_state(Dialogue.waiting)
        await state.update_data(note=command.args or "")
        seen.append(("remembered", command.args or ""))

    @router.message(Command("fsm_recall"), StateFilter(Dialogue.waiting))
    async def recall(message: Message, state: FSMContext) -> None:
        data = await state.get_data()
        seen.append(("recalled", str(data.get("note"))))
        await state.clear()

    return router


def update(update_id: int, user_id: int, text: str) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 0,
            "chat": {"id": user_id, "type": "private", "first_name": "Olga"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Olga"},
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
        },
    }


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test alone on the test Redis; its keys are deleted after."""
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({exc!r}); set CRM_TEST_REDIS_URL")
    prefix = f"crm-test:fsm:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    try:
        yield prefix
    finally:
        keys = [k async for k in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_a_dialogue_survives_a_bot_restart_on_redis(
    redis_prefix: str, database_url: str
) -> None:
    config = OperatorBotConfig(token="7000000099:" + "a" * 35, webhook_secret="s" * 32)
    seen: list[tuple[str, ...]] = []

    def new_bot() -> OperatorBot:
        return OperatorBot(
            config,
            BotServices(),
            extra_routers=(dialogue_router(seen),),
            handlers=HandlerRegistry(),
            storage=fsm_storage(REDIS_URL, prefix=redis_prefix),
        )

    first = new_bot()
    await first.feed(update(1, OWNER, "/fsm_recall"))  # no dialogue yet: nothing answers
    await first.feed(update(2, OWNER, "/fsm_remember milk"))
    await first.stop()
    assert seen == [("remembered", "milk")]

    second = new_bot()  # the restarted bot: a new process would build exactly this
    try:
        await second.feed(update(3, OWNER, "/fsm_recall"))
        assert seen[-1] == ("recalled", "milk")
        await second.feed(update(4, OWNER, "/fsm_recall"))  # the dialogue ended
        assert len(seen) == 2
    finally:
        await second.stop()
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(f"{redis_prefix}:*")]
    finally:
        await client.aclose()
    assert keys == []  # state.clear() removed the dialogue


# --------------------------------------------------------------------------- background jobs


async def test_background_jobs_are_keyed_and_cancelled_on_close() -> None:
    tasks = BackgroundTasks()
    started = asyncio.Event()
    cancelled: list[str] = []

    async def job(name: str) -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    async def fails() -> None:
        raise RuntimeError("boom")

    tasks.spawn(job("a"), key=("import", 1))
    failing = tasks.spawn(fails())
    await started.wait()
    with pytest.raises(RuntimeError):
        await failing
    assert tasks.running(("import", 1)) and not tasks.running(("import", 2))

    async def gone() -> bool:
        return len(tasks) == 1

    await eventually(gone)
    await tasks.close()
    assert cancelled == ["a"] and len(tasks) == 0
    work = job("late")
    with pytest.raises(RuntimeError):
        tasks.spawn(work)
