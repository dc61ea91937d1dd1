"""The Telegram Bot API emulator, driven by a real aiogram Bot over loopback HTTP."""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BufferedInputFile,
    FSInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    MenuButtonWebApp,
    ReplyParameters,
    WebAppInfo,
)
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from sandbox.telegram import (
    SECRET_HEADER,
    TelegramEmulator,
    check_html,
    check_markdown_v2,
    create_emulator_app,
)
from tests.support.servers import serve
from tests.support.telegram import OTHER_TOKEN, sandbox_bot

TOKEN = "4242:emulator-test-token"
CONN = "lead"
USER = 9001
GROUP = -1001234567890


@pytest.fixture(autouse=True)
def clean_database() -> None:
    """These tests need no database (overrides the suite's autouse fixture)."""


@dataclass
class Hook:
    """A webhook receiver: records pushes, can fail on purpose or answer with a method."""

    received: list[tuple[dict[str, Any], str | None]] = field(default_factory=list)
    fail_next: int = 0
    reply: dict[str, Any] | None = None


@dataclass
class Env:
    emulator: TelegramEmulator
    base_url: str
    http: httpx.AsyncClient
    bot: Bot
    hook: Hook

    async def post(self, path: str, **payload: Any) -> dict[str, Any]:
        response = await self.http.post(f"/sandbox/telegram/{path}", json=payload)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def user_says(self, text: str, **extra: Any) -> dict[str, Any]:
        return await self.post("updates", connection_id=CONN, from_user_id=USER, text=text, **extra)

    async def sent(self, chat_id: int = USER) -> list[dict[str, Any]]:
        response = await self.http.get(
            "/sandbox/telegram/sent", params={"connection_id": CONN, "chat_id": chat_id}
        )
        rows: list[dict[str, Any]] = response.json()
        return rows


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    emulator = TelegramEmulator(webhook_retry_delays=(0.01, 0.02), rng=random.Random(5))
    hook = Hook()
    app = create_emulator_app(emulator)

    @app.post("/hook")
    async def receive(request: Request) -> Response:
        if hook.fail_next > 0:
            hook.fail_next -= 1
            return Response(status_code=500)
        hook.received.append((await request.json(), request.headers.get(SECRET_HEADER)))
        return JSONResponse(hook.reply or {})

    async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        emulator.register_bot(CONN, TOKEN, "lead_test_bot")
        bot = sandbox_bot(base_url, TOKEN)
        try:
            yield Env(emulator, base_url, http, bot, hook)
        finally:
            await bot.session.close()


async def test_get_me_and_auth_errors(env: Env) -> None:
    me = await env.bot.get_me()
    assert (me.id, me.is_bot, me.username) == (4242, True, "lead_test_bot")

    stranger = sandbox_bot(env.base_url, OTHER_TOKEN)
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await stranger.get_me()
    finally:
        await stranger.session.close()

    response = await env.http.post(f"/sandbox/telegram/bot{TOKEN}/noSuchMethod")
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


async def test_json_and_get_requests_are_understood(env: Env) -> None:
    await env.user_says("hi")
    response = await env.http.post(
        f"/sandbox/telegram/bot{TOKEN}/sendMessage",
        json={"chat_id": USER, "text": "json body", "reply_markup": {"remove_keyboard": True}},
    )
    assert response.json()["result"]["text"] == "json body"
    got = await env.http.get(f"/sandbox/telegram/bot{TOKEN}/getMe")
    assert got.json()["result"]["username"] == "lead_test_bot"


async def test_send_message_with_keyboard_and_reply(env: Env) -> None:
    asked = await env.user_says("How much is it?")
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Call me", callback_data="call")]]
    )
    first = await env.bot.send_message(
        USER,
        "It is 10 EUR",
        reply_markup=markup,
        reply_parameters=ReplyParameters(message_id=asked["message_id"]),
    )
    second = await env.bot.send_message(USER, "Anything else?")

    assert first.chat.id == USER and first.chat.type == "private"
    assert first.from_user is not None and first.from_user.id == 4242
    assert first.reply_to_message is not None
    assert first.reply_to_message.text == "How much is it?"
    assert first.reply_markup is not None
    assert first.reply_markup.inline_keyboard[0][0].callback_data == "call"
    # Message ids are per chat and shared with the user's own messages.
    assert [asked["message_id"], first.message_id, second.message_id] == [1, 2, 3]

    rows = await env.sent()
    assert [r["text"] for r in rows] == ["It is 10 EUR", "Anything else?"]
    assert rows[0]["reply_markup"] == {
        "inline_keyboard": [[{"text": "Call me", "callback_data": "call"}]]
    }
    assert rows[0]["reply_to_message_id"] == asked["message_id"]
    assert rows[0]["method"] == "sendMessage" and rows[0]["parse_mode"] is None

    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await env.bot.send_message(31337, "to nobody")
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        too_long = InlineKeyboardButton(text="x", callback_data="x" * 65)
        await env.bot.send_message(
            USER, "bad", reply_markup=InlineKeyboardMarkup(inline_keyboard=[[too_long]])
        )


async def test_blocked_user_answers_403(env: Env) -> None:
    await env.user_says("hi")
    await env.post("blocks", connection_id=CONN, user_id=USER)
    with pytest.raises(TelegramForbiddenError, match="blocked"):
        await env.bot.send_message(USER, "still there?")


async def test_send_photo_upload_get_file_and_download(env: Env, tmp_path: Path) -> None:
    await env.user_says("send me the brochure")
    image = tmp_path / "offer.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0fake-jpeg-bytes")
    message = await env.bot.send_photo(USER, FSInputFile(image), caption="Our offer")

    assert message.caption == "Our offer"
    assert message.photo is not None and len(message.photo) == 2
    largest = message.photo[-1]
    file = await env.bot.get_file(largest.file_id)
    assert file.file_path is not None
    buffer = io.BytesIO()
    await env.bot.download_file(file.file_path, destination=buffer)
    assert buffer.getvalue() == image.read_bytes()

    doc = await env.bot.send_document(USER, FSInputFile(image, filename="terms.pdf"))
    assert doc.document is not None and doc.document.file_name == "terms.pdf"
    assert doc.document.mime_type == "application/pdf"
    # Resending by file_id reuses the stored file.
    again = await env.bot.send_document(USER, doc.document.file_id)
    assert again.document is not None and again.document.file_id == doc.document.file_id

    rows = await env.sent()
    assert [r["method"] for r in rows] == ["sendPhoto", "sendDocument", "sendDocument"]
    assert rows[0]["caption"] == "Our offer" and rows[0]["media"]["kind"] == "photo"

    with pytest.raises(TelegramBadRequest, match="invalid file_id"):
        await env.bot.get_file("nope")


async def test_edit_and_delete(env: Env) -> None:
    await env.user_says("hi")
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Yes", callback_data="yes")]]
    )
    message = await env.bot.send_message(USER, "Draft v1", reply_markup=markup)
    edited = await env.bot.edit_message_text(
        text="Draft v2", chat_id=USER, message_id=message.message_id, reply_markup=markup
    )
    assert not isinstance(edited, bool) and edited.text == "Draft v2"
    assert edited.edit_date is not None

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await env.bot.edit_message_text(
            text="Draft v2", chat_id=USER, message_id=message.message_id, reply_markup=markup
        )
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await env.bot.edit_message_text(text="x", chat_id=USER, message_id=999)

    # Editing without reply_markup drops the keyboard, as Telegram does.
    await env.bot.edit_message_text(text="Draft v3", chat_id=USER, message_id=message.message_id)
    await env.bot.edit_message_reply_markup(
        chat_id=USER, message_id=message.message_id, reply_markup=markup
    )
    rows = await env.sent()
    assert len(rows) == 1
    assert rows[0]["text"] == "Draft v3" and rows[0]["edited"] is True
    assert rows[0]["reply_markup"] == {
        "inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}]]
    }

    assert await env.bot.delete_message(USER, message.message_id) is True
    assert (await env.sent())[0]["deleted"] is True
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await env.bot.delete_message(USER, message.message_id)


async def test_parse_mode_errors_surface_escaping_bugs(env: Env) -> None:
    await env.user_says("hi")
    ok = await env.bot.send_message(USER, "<b>Lead:</b> Tom &amp; Co", parse_mode="HTML")
    assert ok.text == "<b>Lead:</b> Tom &amp; Co"
    assert (await env.sent())[0]["parse_mode"] == "HTML"

    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await env.bot.send_message(USER, "<b>Lead: <script>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await env.bot.send_message(USER, "Total: 5.00!", parse_mode="MarkdownV2")
    # Without parse_mode the same text is plain.
    await env.bot.send_message(USER, "<b>Lead: <script> 5.00!")


def test_formatting_checkers() -> None:
    assert check_html("<b>x</b> <a href='https://x'>y</a> <i><u>z</u></i>") is None
    assert check_html("<b>open") is not None
    assert check_html("a < b") is not None
    assert check_html("<b><i>x</b></i>") is not None
    assert check_markdown_v2(r"*bold* _it_ \. [link](https://x.y/a\)) `a.b` ```py\nx.y```") is None
    assert check_markdown_v2("*never closed") is not None
    assert check_markdown_v2("1+1") is not None


async def test_commands_per_scope_and_language(env: Env) -> None:
    await env.user_says("hi")
    en = [BotCommand(command="inbox", description="Open the inbox")]
    de = [BotCommand(command="inbox", description="Posteingang öffnen")]
    assert await env.bot.set_my_commands(en)
    assert await env.bot.set_my_commands(de, language_code="de")
    assert await env.bot.set_my_commands(en[:1], scope=BotCommandScopeChat(chat_id=USER))

    assert [c.description for c in await env.bot.get_my_commands(language_code="de")] == [
        "Posteingang öffnen"
    ]
    assert [c.command for c in await env.bot.get_my_commands()] == ["inbox"]
    listed = await env.http.get("/sandbox/telegram/commands", params={"connection_id": CONN})
    entries = listed.json()
    assert {(e["scope"]["type"], e["language_code"]) for e in entries} == {
        ("default", ""),
        ("default", "de"),
        ("chat", ""),
    }

    assert await env.bot.delete_my_commands(language_code="de")
    assert await env.bot.get_my_commands(language_code="de") == []
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await env.bot.set_my_commands([BotCommand(command="Not Valid", description="x")])

    button = MenuButtonWebApp(text="Open CRM", web_app=WebAppInfo(url="https://crm.example/app"))
    assert await env.bot.set_chat_menu_button(menu_button=button)
    assert (await env.bot.get_chat_menu_button()).type == "web_app"


async def test_forum_topics(env: Env) -> None:
    await env.post("chats", connection_id=CONN, chat_id=GROUP, title="Leads", is_forum=True)
    topic = await env.bot.create_forum_topic(GROUP, "Lead: Anna")
    assert topic.name == "Lead: Anna" and topic.message_thread_id > 0
    posted = await env.bot.send_message(
        GROUP, "New message", message_thread_id=topic.message_thread_id
    )
    assert posted.message_thread_id == topic.message_thread_id and posted.is_topic_message

    assert await env.bot.edit_forum_topic(GROUP, topic.message_thread_id, name="Lead: Anna B.")
    assert await env.bot.close_forum_topic(GROUP, topic.message_thread_id)
    with pytest.raises(TelegramBadRequest, match="TOPIC_NOT_MODIFIED"):
        await env.bot.close_forum_topic(GROUP, topic.message_thread_id)
    assert await env.bot.reopen_forum_topic(GROUP, topic.message_thread_id)

    listed = await env.http.get(
        "/sandbox/telegram/topics", params={"connection_id": CONN, "chat_id": GROUP}
    )
    assert [(t["name"], t["is_closed"]) for t in listed.json()] == [("Lead: Anna B.", False)]
    assert (await env.sent(GROUP))[0]["message_thread_id"] == topic.message_thread_id

    assert await env.bot.delete_forum_topic(GROUP, topic.message_thread_id)
    with pytest.raises(TelegramBadRequest, match="message thread not found"):
        await env.bot.send_message(GROUP, "x", message_thread_id=topic.message_thread_id)

    await env.post("chats", connection_id=CONN, chat_id=-4001, title="Plain group")
    with pytest.raises(TelegramBadRequest, match="not a forum"):
        await env.bot.create_forum_topic(-4001, "x")

    chat = await env.bot.get_chat(GROUP)
    assert chat.type == "supergroup" and chat.is_forum
    member = await env.bot.get_chat_member(GROUP, 4242)
    assert member.status == "administrator"


async def test_get_updates_long_poll(env: Env) -> None:
    poll = asyncio.create_task(env.bot.get_updates(offset=0, timeout=10))
    await asyncio.sleep(0.1)
    assert not poll.done()  # no update yet: the request is held open
    posted = await env.user_says("/start", language_code="de", username="Anna_K")
    updates = await asyncio.wait_for(poll, 10)

    assert [u.update_id for u in updates] == [posted["update_id"]]
    message = updates[0].message
    assert message is not None and message.text == "/start"
    assert message.entities is not None and message.entities[0].type == "bot_command"
    assert message.from_user is not None and message.from_user.language_code == "de"

    # The offset confirms what was read.
    second = await env.user_says("hello")
    after = await env.bot.get_updates(offset=posted["update_id"] + 1, timeout=0)
    assert [u.update_id for u in after] == [second["update_id"]]


async def test_webhook_push_with_secret_duplicates_and_retries(env: Env) -> None:
    url = f"{env.base_url}/hook"
    assert await env.bot.set_webhook(url, secret_token="s3cret", allowed_updates=["message"])
    info = await env.bot.get_webhook_info()
    assert info.url == url and info.allowed_updates == ["message"]
    with pytest.raises(TelegramConflictError):
        await env.bot.get_updates()

    env.hook.fail_next = 2  # two 500s: the emulator retries
    first = await env.user_says("one")
    await env.emulator.drain()
    assert [(u["update_id"], secret) for u, secret in env.hook.received] == [
        (first["update_id"], "s3cret")
    ]
    assert env.hook.received[0][0]["message"]["text"] == "one"

    await env.post("delivery", duplicates=2)
    await env.user_says("two")
    await env.post("drain")
    texts = [u["message"]["text"] for u, _ in env.hook.received]
    assert texts == ["one", "two", "two", "two"]

    # Not in allowed_updates: never pushed.
    await env.post("business_connections", connection_id=CONN, user_id=77)
    await env.emulator.drain()
    assert len(env.hook.received) == 4

    env.hook.fail_next = 10
    await env.post("delivery", duplicates=0)
    await env.user_says("lost")
    await env.emulator.drain()
    info = await env.bot.get_webhook_info()
    assert info.last_error_message is not None and "500" in info.last_error_message

    assert await env.bot.delete_webhook()
    await env.user_says("polled")
    assert [u.message.text for u in await env.bot.get_updates() if u.message] == ["polled"]


async def test_shuffled_delivery_reorders_but_keeps_every_update(env: Env) -> None:
    await env.bot.set_webhook(f"{env.base_url}/hook")
    env.emulator.set_delivery(shuffle=True, duplicates=1)
    # Posted back to back (no await yields in between), so the whole burst is queued at once.
    ids = [
        (await env.emulator.post_update({"connection_id": CONN, "from_user_id": USER, "text": t}))[
            "update_id"
        ]
        for t in "abcdefgh"
    ]
    await env.emulator.drain()
    pushed = [u["update_id"] for u, _ in env.hook.received]
    assert sorted(pushed) == sorted(ids * 2)
    assert pushed != sorted(pushed)


async def test_callback_query_and_webhook_reply_method(env: Env) -> None:
    await env.user_says("hi")
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Book a call", callback_data="book")]]
    )
    message = await env.bot.send_message(USER, "Pick one", reply_markup=markup)
    await env.bot.set_webhook(f"{env.base_url}/hook")
    env.hook.reply = None

    pressed = await env.post("updates", connection_id=CONN, from_user_id=USER, callback_data="book")
    await env.emulator.drain()
    update = env.hook.received[-1][0]
    query = update["callback_query"]
    assert query["data"] == "book" and query["message"]["message_id"] == message.message_id
    assert pressed["callback_query_id"] == query["id"]

    assert await env.bot.answer_callback_query(query["id"], text="Thanks!")
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await env.bot.answer_callback_query(query["id"])

    # A webhook may answer with a method call; the emulator runs it.
    env.hook.reply = {"method": "answerCallbackQuery", "callback_query_id": "PLACEHOLDER"}
    second = await env.post("updates", connection_id=CONN, from_user_id=USER, callback_data="book")
    env.hook.reply["callback_query_id"] = second["callback_query_id"]
    await env.emulator.drain()
    answers = (
        await env.http.get("/sandbox/telegram/callback_answers", params={"connection_id": CONN})
    ).json()
    assert [a["callback_query_id"] for a in answers] == [
        query["id"],
        second["callback_query_id"],
    ]

    bad = await env.http.post(
        "/sandbox/telegram/updates",
        json={"connection_id": CONN, "from_user_id": USER, "callback_data": "nope"},
    )
    assert bad.status_code == 400


async def test_inline_query(env: Env) -> None:
    posted = await env.post("updates", connection_id=CONN, from_user_id=USER, inline_query="acme")
    updates = await env.bot.get_updates()
    assert updates[0].inline_query is not None and updates[0].inline_query.query == "acme"
    ok = await env.bot.answer_inline_query(posted["inline_query_id"], results=[])
    assert ok is True


async def test_business_connection_messages_edits_and_deletions(env: Env) -> None:
    connected = await env.post(
        "business_connections", connection_id=CONN, user_id=77, first_name="Rita"
    )
    bcid = connected["business_connection_id"]
    said = await env.user_says("Hi Rita", business_connection_id=bcid)
    await env.post(
        "updates",
        connection_id=CONN,
        from_user_id=USER,
        text="Hi Rita!",
        business_connection_id=bcid,
        edit=True,
        message_id=said["message_id"],
    )
    await env.post(
        "updates",
        connection_id=CONN,
        from_user_id=USER,
        business_connection_id=bcid,
        delete_message_ids=[said["message_id"]],
    )
    updates = await env.bot.get_updates()
    kinds = [u.event_type for u in updates]
    assert kinds == [
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
    ]
    connection = updates[0].business_connection
    assert connection is not None and connection.rights is not None
    assert connection.rights.can_reply and connection.user.first_name == "Rita"
    assert updates[1].business_message is not None
    assert updates[1].business_message.business_connection_id == bcid
    assert updates[2].edited_business_message is not None
    assert updates[2].edited_business_message.text == "Hi Rita!"

    reply = await env.bot.send_message(USER, "Hello!", business_connection_id=bcid)
    assert reply.business_connection_id == bcid
    assert reply.from_user is not None and reply.from_user.id == 77
    rows = await env.sent()
    assert rows[-1]["business_connection_id"] == bcid
    fetched = await env.bot.get_business_connection(bcid)
    assert fetched.user_chat_id == 77

    with pytest.raises(TelegramBadRequest, match="BUSINESS_CONNECTION_INVALID"):
        await env.bot.send_message(USER, "x", business_connection_id="nope")


async def test_faults_rate_limit_server_error_and_slow(env: Env) -> None:
    await env.user_says("hi")
    await env.post("faults", kind="rate_limit", count=1, retry_after=3)
    with pytest.raises(TelegramRetryAfter) as caught:
        await env.bot.send_message(USER, "first try")
    assert caught.value.retry_after == 3

    await env.post("faults", kind="server_error", count=1, status=502)
    with pytest.raises(TelegramServerError):
        await env.bot.send_message(USER, "second try")
    assert await env.sent() == []

    await env.post("faults", kind="slow", count=1, delay=0.05)
    await env.bot.send_message(USER, "slow but sent")
    assert [r["text"] for r in await env.sent()] == ["slow but sent"]

    await env.post("faults", kind="server_error", count=5)
    cleared = await env.http.delete("/sandbox/telegram/faults")
    assert cleared.status_code == 200
    await env.bot.send_message(USER, "after clearing")
    assert len(await env.sent()) == 2


async def test_enforced_limits_answer_429(env: Env) -> None:
    await env.user_says("hi")
    await env.post("limits", enforce=True)
    await env.bot.send_message(USER, "one")
    with pytest.raises(TelegramRetryAfter):
        await env.bot.send_message(USER, "two, too soon")


async def test_reset_keeps_bots_and_forgets_chats(env: Env) -> None:
    await env.user_says("hi")
    await env.bot.send_message(USER, "hello")
    await env.post("reset")
    assert (await env.bot.get_me()).id == 4242
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await env.bot.send_message(USER, "after reset")
    missing = await env.http.get("/sandbox/telegram/sent", params={"connection_id": "nobody"})
    assert missing.status_code == 404


async def test_re_registering_with_a_new_token_replaces_the_bot(env: Env) -> None:
    answer = await env.post("bots", connection_id=CONN, token=OTHER_TOKEN)
    assert answer["id"] == 987654321
    with pytest.raises(TelegramUnauthorizedError):
        await env.bot.get_me()
    bad = await env.http.post("/sandbox/telegram/bots", json={"connection_id": "x", "token": "t"})
    assert bad.status_code == 400


async def test_unknown_method_via_aiogram_is_not_found(env: Env) -> None:
    with pytest.raises(TelegramNotFound):
        await env.bot.get_chat_administrators(USER)


async def test_set_webhook_from_python(env: Env) -> None:
    await env.user_says("queued before the webhook")
    env.emulator.set_webhook(TOKEN, f"{env.base_url}/hook", "wired-secret")
    await env.emulator.drain()
    # What waited for getUpdates moves to the webhook.
    assert [(u["message"]["text"], s) for u, s in env.hook.received] == [
        ("queued before the webhook", "wired-secret")
    ]
    with pytest.raises(ValueError, match="no bot"):
        env.emulator.set_webhook("1:unknown", "http://127.0.0.1/hook")
    with pytest.raises(ValueError, match="unallowed"):
        env.emulator.set_webhook(TOKEN, "http://127.0.0.1/hook", "not allowed!")


async def test_state_survives_a_restart_and_message_ids_go_on(tmp_path: Path) -> None:
    state = tmp_path / "sandbox" / "telegram.json"
    first = TelegramEmulator(state_path=state)
    async with (
        serve(create_emulator_app(first)) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        first.register_bot(CONN, TOKEN, "lead_test_bot")
        started = await http.post(
            "/sandbox/telegram/updates",
            json={
                "connection_id": CONN,
                "from_user_id": USER,
                "first_name": "Olga",
                "text": "/start",
            },
        )
        assert started.status_code == 200, started.text
        bot = sandbox_bot(base_url, TOKEN)
        try:
            await bot.send_message(USER, "one")
            two = await bot.send_message(USER, "two")
            document = await bot.send_document(
                USER, BufferedInputFile(b"%PDF-1.4 offer", filename="offer.pdf")
            )
        finally:
            await bot.session.close()
    assert document.document is not None
    # The service stopped: a new emulator on the same file, as after `crm up` restarts.
    second = TelegramEmulator(state_path=state)
    async with (
        serve(create_emulator_app(second)) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        bot = sandbox_bot(base_url, TOKEN)
        try:
            assert (await bot.get_me()).username == "lead_test_bot"
            # The user who pressed Start is still known: no "chat not found".
            three = await bot.send_message(USER, "three")
            assert three.message_id > document.message_id > two.message_id
            assert three.chat.first_name == "Olga"
            # The user replies to a message sent before the restart.
            replied = await http.post(
                "/sandbox/telegram/updates",
                json={
                    "connection_id": CONN,
                    "from_user_id": USER,
                    "text": "yes",
                    "reply_to_message_id": two.message_id,
                },
            )
            assert replied.status_code == 200, replied.text
            assert replied.json()["message_id"] > three.message_id
            assert replied.json()["update_id"] == started.json()["update_id"] + 1
            file = await bot.get_file(document.document.file_id)
            assert file.file_path is not None
            buffer = io.BytesIO()
            await bot.download_file(file.file_path, destination=buffer)
            assert buffer.getvalue() == b"%PDF-1.4 offer"
        finally:
            await bot.session.close()
        sent = (
            await http.get(
                "/sandbox/telegram/sent", params={"connection_id": CONN, "chat_id": USER}
            )
        ).json()
        assert [m.get("text") for m in sent] == ["one", "two", None, "three"]
    assert state.stat().st_mode & 0o077 == 0  # it holds bot tokens: owner only


@pytest.mark.parametrize(
    ("path", "payload", "field_name"),
    [
        ("chats", {"connection_id": CONN}, "chat_id"),
        ("chats", {"connection_id": CONN, "chat_id": "abc"}, "chat_id"),
        ("chats", {"connection_id": CONN, "chat_id": 5, "bot_rights": [1]}, "bot_rights"),
        ("blocks", {"connection_id": CONN}, "user_id"),
        ("blocks", {"connection_id": CONN, "user_id": "1e9"}, "user_id"),
        ("updates", {"connection_id": CONN, "text": "hi"}, "from_user_id"),
        ("updates", {"connection_id": CONN, "from_user_id": "anna", "text": "hi"}, "from_user_id"),
        ("updates", {"connection_id": CONN, "from_user_id": 5, "text": ["hi"]}, "text"),
        (
            "updates",
            {"connection_id": CONN, "from_user_id": 5, "text": "x", "chat_id": 1.5},
            "chat_id",
        ),
        (
            "updates",
            {"connection_id": CONN, "from_user_id": 5, "location": {"latitude": "north"}},
            "latitude",
        ),
        ("business_connections", {"connection_id": CONN, "user_id": "rep"}, "user_id"),
        ("faults", {"kind": "slow", "delay": None}, "delay"),
        ("delivery", {"duplicates": "many"}, "duplicates"),
    ],
)
async def test_control_api_names_the_bad_field(
    env: Env, path: str, payload: dict[str, Any], field_name: str
) -> None:
    response = await env.http.post(f"/sandbox/telegram/{path}", json=payload)
    assert response.status_code == 422, response.text
    assert field_name in response.json()["detail"]
