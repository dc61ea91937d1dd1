"""A local Telegram Bot API: the parts the product uses, on loopback (DESIGN section 6).

aiogram reaches it unchanged through ``TelegramAPIServer.from_base(".../sandbox/telegram")``:
bot methods arrive at ``/sandbox/telegram/bot{token}/{method}`` and file downloads at
``/sandbox/telegram/file/bot{token}/{file_path}``. A control API under the same prefix plays the
users (``POST /updates``), connects Telegram Business accounts, injects faults and shows what
the bots sent (``GET /sent``), so tests, benchmarks and the sandbox page can drive both sides.

State lives in memory, per registered bot, and with a ``state_path`` also on disk (bots, users,
chats, messages, files, undelivered updates), so a restarted service keeps its chats and its
message ids go on increasing. Answers are real Bot API objects and errors carry Telegram's
status codes and descriptions, so the SDK's own error handling runs as in production.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import logging
import math
import mimetypes
import random
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from channels.sandbox.persist import StateFile

logger = logging.getLogger(__name__)

PREFIX = "/sandbox/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

# Telegram's default when allowed_updates is empty: everything but these three.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_TOPIC_COLORS = (7322096, 16766590, 13338331, 9367192, 16749490, 16478047)
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a content and reply markup of the current message"
)
_QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
_MEDIA_FIELDS = ("photo", "document", "voice", "audio", "video", "sticker")
# Limits the emulator enforces only when asked to (``enforce_limits``).
_LIMIT_BOT = (30, 1.0)
_LIMIT_BOT_PAID = (1000, 1.0)  # sends with allow_paid_broadcast
_LIMIT_PRIVATE = (1, 1.0)
_LIMIT_GROUP = (20, 60.0)
# How many of a chat's latest messages survive a restart.
PERSISTED_MESSAGES_PER_CHAT = 1000


class TelegramApiError(Exception):
    """A Bot API error answer: HTTP status, description and optional parameters."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None):
        self.status = status
        self.description = description
        self.parameters = parameters
        super().__init__(f"{status}: {description}")

    def body(self) -> dict[str, Any]:
        """The JSON body Telegram answers with."""
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _bad(description: str) -> TelegramApiError:
    return TelegramApiError(400, f"Bad Request: {description}")


def _now() -> int:
    return int(time.time())


_INT64 = 2**63


def _control_int(payload: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    """An integer field of a control API request, or a 422 that names it."""
    value = payload.get(name)
    if value is None or value == "":
        if required:
            raise HTTPException(422, f"{name}: field required")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"-?\d{1,19}", value.strip()):
        number = int(value)
    else:
        raise HTTPException(422, f"{name}: must be an integer, not {value!r:.40}")
    if not -_INT64 <= number < _INT64:
        raise HTTPException(422, f"{name}: out of range")
    return number


def _control_float(payload: dict[str, Any], name: str) -> float:
    """A number field of a control API request, or a 422 that names it."""
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise HTTPException(422, f"{name}: must be a number")
    try:
        number = float(value)
    except ValueError:
        raise HTTPException(422, f"{name}: must be a number") from None
    if not math.isfinite(number):
        raise HTTPException(422, f"{name}: must be a finite number")
    return number


def _control_ids(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with its id fields checked and made integers (a 422 names a bad one)."""
    checked = dict(payload)
    for name in (
        "from_user_id",
        "chat_id",
        "message_id",
        "message_thread_id",
        "reply_to_message_id",
        "user_id",
    ):
        if name in checked:
            checked[name] = _control_int(checked, name)
    for name in (
        "connection_id",
        "text",
        "business_connection_id",
        "first_name",
        "last_name",
        "username",
        "language_code",
        "chat_title",
        "filename",
        "mime_type",
        *(f"{kind}_base64" for kind in _MEDIA_FIELDS),
    ):
        value = checked.get(name)
        if name == "connection_id" and isinstance(value, int) and not isinstance(value, bool):
            continue
        if value is not None and not isinstance(value, str):
            raise HTTPException(422, f"{name}: must be a string")
    ids = checked.get("delete_message_ids")
    if ids is not None:
        if not isinstance(ids, list):
            raise HTTPException(422, "delete_message_ids: must be a list of message ids")
        checked["delete_message_ids"] = [
            _control_int({"delete_message_ids": i}, "delete_message_ids", required=True)
            for i in ids
        ]
    return checked


# --------------------------------------------------------------------------------------------
# Formatting checks: enough to surface escaping bugs, not a renderer.

_HTML_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "tg-emoji",
        "code",
        "pre",
        "blockquote",
        "tg-time",
    }
)
_HTML_TAG_RE = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)(\s[^<>]*)?>")
_MDV2_ALWAYS_ESCAPED = frozenset("#+-={}.!")


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def check_html(text: str) -> str | None:
    """Why Telegram would refuse ``text`` as HTML, or None when it parses."""
    stack: list[str] = []
    index = 0
    while (start := text.find("<", index)) >= 0:
        match = _HTML_TAG_RE.match(text, start)
        if match is None:
            word = text[start + 1 :].split(maxsplit=1)
            name = word[0] if word else ""
            return f'Unsupported start tag "{name}" at byte offset {_byte_offset(text, start)}'
        closing, name = match.group(1), match.group(2).lower()
        if name not in _HTML_TAGS:
            return f'Unsupported start tag "{name}" at byte offset {_byte_offset(text, start)}'
        if closing:
            if not stack or stack[-1] != name:
                expected = f'"</{stack[-1]}>"' if stack else "nothing"
                return (
                    f"Unmatched end tag at byte offset {_byte_offset(text, start)}, "
                    f'expected {expected}, found "</{name}>"'
                )
            stack.pop()
        else:
            stack.append(name)
        index = match.end()
    if stack:
        return f'Can\'t find end tag corresponding to start tag "{stack[-1]}"'
    return None


def check_markdown_v2(text: str) -> str | None:
    """Why Telegram would refuse ``text`` as MarkdownV2, or None when it parses."""
    styles: list[tuple[str, int]] = []
    in_link = -1
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if text.startswith("```", i):
            end = text.find("```", i + 3)
            if end < 0:
                return f"Can't find end of Pre entity at byte offset {_byte_offset(text, i)}"
            i = end + 3
            continue
        if c == "`":
            end = i + 1
            while end < n and text[end] != "`":
                end += 2 if text[end] == "\\" else 1
            if end >= n:
                return f"Can't find end of Code entity at byte offset {_byte_offset(text, i)}"
            i = end + 1
            continue
        marker = text[i : i + 2] if text[i : i + 2] in ("__", "||") else c
        if marker in ("*", "_", "__", "~", "||"):
            opened = [m for m, _ in styles]
            if marker in opened:
                if opened[-1] != marker:
                    return f"Can't parse entities: unclosed {opened[-1]!r} before {marker!r}"
                styles.pop()
            else:
                styles.append((marker, i))
            i += len(marker)
            continue
        if c == "[" and in_link < 0:
            in_link = i
        elif c == "]" and in_link >= 0:
            if not text.startswith("(", i + 1):
                return f"Can't find end of the link entity at byte offset {_byte_offset(text, i)}"
            end = i + 2
            while end < n and text[end] != ")":
                end += 2 if text[end] == "\\" else 1
            if end >= n:
                return f"Can't find end of a URL at byte offset {_byte_offset(text, i)}"
            in_link = -1
            i = end + 1
            continue
        elif (
            c in "[]()|"
            or c in _MDV2_ALWAYS_ESCAPED
            or (c == ">" and i > 0 and text[i - 1] != "\n")
        ):
            return f"Character '{c}' is reserved and must be escaped with the preceding '\\'"
        i += 1
    if styles:
        _, at = styles[-1]
        return f"Can't find end of the entity starting at byte offset {_byte_offset(text, at)}"
    if in_link >= 0:
        return f"Can't find end of the link entity at byte offset {_byte_offset(text, in_link)}"
    return None


def check_markdown(text: str) -> str | None:
    """Why Telegram would refuse ``text`` as legacy Markdown, or None when it parses."""
    open_at: dict[str, int] = {}
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c in "*_`[":
            closer = "]" if c == "[" else c
            end = text.find(closer, i + 1)
            if end < 0:
                open_at[c] = i
                break
            i = end + 1
            continue
        i += 1
    if open_at:
        at = min(open_at.values())
        return f"Can't find end of the entity starting at byte offset {_byte_offset(text, at)}"
    return None


def _check_parse_mode(text: str | None, parse_mode: str | None) -> None:
    if not text or not parse_mode:
        return
    mode = parse_mode.lower()
    if mode == "html":
        error = check_html(text)
    elif mode == "markdownv2":
        error = check_markdown_v2(text)
    elif mode == "markdown":
        error = check_markdown(text)
    else:
        raise _bad(f"unsupported parse_mode {parse_mode!r}")
    if error is not None:
        raise _bad(f"can't parse entities: {error}")


# --------------------------------------------------------------------------------------------
# State


@dataclass
class _File:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    mime_type: str | None = None
    filename: str | None = None
    url: str | None = None


@dataclass
class _Message:
    data: dict[str, Any]
    seq: int
    outgoing: bool
    method: str
    parse_mode: str | None = None
    reply_markup: dict[str, Any] | None = None
    deleted: bool = False
    edited: bool = False
    # When the emulator took the call (epoch seconds, sub-millisecond): benchmarks time it.
    received_at: float = field(default_factory=time.time)

    @property
    def message_id(self) -> int:
        return int(self.data["message_id"])


@dataclass
class _Chat:
    id: int
    type: str
    business_connection_id: str | None = None
    title: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None
    is_forum: bool = False
    # The bot's membership in a group: "administrator" (the default) or "member", and rights
    # of an administrator that differ from "all granted" (e.g. can_manage_topics False).
    bot_status: str = "administrator"
    bot_rights: dict[str, bool] = field(default_factory=dict)
    next_message_id: int = 1
    messages: dict[int, _Message] = field(default_factory=dict)
    topics: dict[int, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        for key in ("title", "first_name", "last_name", "username"):
            if (value := getattr(self, key)) is not None:
                data[key] = value
        if self.is_forum:
            data["is_forum"] = True
        return data

    def allocate_id(self, wanted: int | None = None) -> int:
        message_id = wanted if wanted is not None else self.next_message_id
        self.next_message_id = max(self.next_message_id, message_id + 1)
        return message_id


@dataclass
class _Webhook:
    url: str
    secret_token: str | None
    allowed_updates: list[str] | None
    max_connections: int = 40
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class _BotState:
    connection_id: str
    token: str
    user: dict[str, Any]
    next_update_id: int = 1
    chats: dict[tuple[str, int], _Chat] = field(default_factory=dict)
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    pending: deque[dict[str, Any]] = field(default_factory=deque)
    outbox: deque[dict[str, Any]] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None
    webhook: _Webhook | None = None
    poll_allowed_updates: list[str] | None = None
    commands: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    menu_buttons: dict[int | None, dict[str, Any]] = field(default_factory=dict)
    callback_queries: dict[str, dict[str, Any]] = field(default_factory=dict)
    callback_answers: list[dict[str, Any]] = field(default_factory=list)
    inline_queries: dict[str, dict[str, Any]] = field(default_factory=dict)
    inline_answers: list[dict[str, Any]] = field(default_factory=list)
    chat_actions: list[dict[str, Any]] = field(default_factory=list)
    business_connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, _File] = field(default_factory=dict)
    # Bounded: a sandbox left running for days must not grow without limit.
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10_000))
    failed_deliveries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1_000))
    send_times: dict[str, deque[float]] = field(default_factory=dict)
    poll_signal: asyncio.Event | None = None

    @property
    def id(self) -> int:
        return int(self.user["id"])


@dataclass
class _Fault:
    kind: str
    remaining: int
    connection_id: str | None = None
    retry_after: int = 1
    delay: float = 0.0
    status: int = 500
    methods: frozenset[str] | None = None

    def applies(self, connection_id: str, method: str) -> bool:
        if self.connection_id is not None and self.connection_id != connection_id:
            return False
        if self.methods is not None:
            return method in self.methods
        return method.startswith(("send", "edit", "copy", "forward", "delete", "answer")) and (
            method != "sendchataction"
        )


def _is_message_producing(method: str) -> bool:
    return method.startswith(("send", "copy", "forward")) and method != "sendchataction"


# --------------------------------------------------------------------------------------------
# Request parameters: aiogram posts forms whose nested objects are JSON strings.


class _Params:
    """Typed access to a Bot API call's parameters, whatever the encoding."""

    def __init__(self, raw: dict[str, Any], files: dict[str, UploadedFile]):
        self.raw = raw
        self.files = files

    def has(self, name: str) -> bool:
        return self.raw.get(name) not in (None, "")

    def string(self, name: str, *, required: bool = False) -> str | None:
        value = self.raw.get(name)
        if value is None or value == "":
            if required:
                raise _bad(f"{name} is empty")
            return None
        return value if isinstance(value, str) else json.dumps(value)

    def integer(self, name: str, *, required: bool = False) -> int | None:
        value = self.raw.get(name)
        if value is None or value == "":
            if required:
                raise _bad(f"{name} is empty")
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _bad(f"invalid {name} specified") from None

    def flag(self, name: str) -> bool:
        value = self.raw.get(name)
        if isinstance(value, str):
            return value.lower() in ("true", "1")
        return bool(value)

    def value(self, name: str) -> Any:
        value = self.raw.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise _bad(f"can't parse {name} JSON object") from None
        return value


@dataclass(frozen=True)
class UploadedFile:
    """A multipart upload of a Bot API call."""

    data: bytes
    filename: str | None
    content_type: str | None


# --------------------------------------------------------------------------------------------


class TelegramEmulator:
    """In-memory Telegram Bot API with a control API for playing the users."""

    def __init__(
        self,
        *,
        webhook_retry_delays: Iterable[float] = (0.05, 0.25, 1.0),
        webhook_timeout: float = 10.0,
        enforce_limits: bool = False,
        shuffle_window: float = 0.05,
        rng: random.Random | None = None,
        state_path: Path | None = None,
    ) -> None:
        """``rng`` makes shuffled delivery reproducible; ``shuffle_window`` batches pushes.

        With ``state_path`` the state is loaded from that file and saved to it as it changes.
        """
        self.webhook_retry_delays = tuple(webhook_retry_delays)
        self.shuffle_window = shuffle_window
        self._rng = rng or random.Random()
        self.webhook_timeout = webhook_timeout
        self.enforce_limits = enforce_limits
        self._bots: dict[str, _BotState] = {}
        self._by_token: dict[str, _BotState] = {}
        self._faults: list[_Fault] = []
        self._duplicates = 0
        self._shuffle = False
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self._client: httpx.AsyncClient | None = None
        self._methods: dict[str, Callable[[_BotState, _Params], Any]] = {
            name.removeprefix("_m_"): getattr(self, name)
            for name in dir(self)
            if name.startswith("_m_")
        }
        self._state = StateFile(state_path, self._snapshot) if state_path is not None else None
        if self._state is not None and (saved := self._state.load()) is not None:
            self._restore(saved)
        self.router = self._build_router()

    # ---- persistence -----------------------------------------------------------------------

    def _changed(self) -> None:
        if self._state is not None:
            self._state.changed()

    @staticmethod
    def _peek(counter: itertools.count[int]) -> tuple[int, itertools.count[int]]:
        value = next(counter)
        return value, itertools.count(value)

    def _snapshot(self) -> dict[str, Any]:
        assert self._state is not None
        next_seq, self._seq = self._peek(self._seq)
        next_id, self._ids = self._peek(self._ids)
        bots = []
        for bot in self._bots.values():
            for record in bot.files.values():
                if record.data:
                    self._state.put_blob(record.file_id, record.data)
            hook = bot.webhook
            bots.append(
                {
                    "connection_id": bot.connection_id,
                    "token": bot.token,
                    "user": bot.user,
                    "next_update_id": bot.next_update_id,
                    "users": list(bot.users.values()),
                    "blocked": sorted(bot.blocked),
                    # Not delivered yet: handed on after the restart, like Telegram keeps them.
                    "pending": [*bot.pending, *bot.outbox],
                    "webhook": None
                    if hook is None
                    else {
                        "url": hook.url,
                        "secret_token": hook.secret_token,
                        "allowed_updates": hook.allowed_updates,
                        "max_connections": hook.max_connections,
                    },
                    "poll_allowed_updates": bot.poll_allowed_updates,
                    "commands": [[*key, value] for key, value in bot.commands.items()],
                    "menu_buttons": [[key, value] for key, value in bot.menu_buttons.items()],
                    "business_connections": bot.business_connections,
                    "files": [
                        {
                            "file_id": f.file_id,
                            "file_unique_id": f.file_unique_id,
                            "file_path": f.file_path,
                            "mime_type": f.mime_type,
                            "filename": f.filename,
                            "url": f.url,
                            "stored": bool(f.data),
                        }
                        for f in bot.files.values()
                    ],
                    "chats": [self._chat_snapshot(chat) for chat in bot.chats.values()],
                }
            )
        return {"next_seq": next_seq, "next_id": next_id, "bots": bots}

    @staticmethod
    def _chat_snapshot(chat: _Chat) -> dict[str, Any]:
        return {
            "id": chat.id,
            "type": chat.type,
            "business_connection_id": chat.business_connection_id,
            "title": chat.title,
            "first_name": chat.first_name,
            "last_name": chat.last_name,
            "username": chat.username,
            "is_forum": chat.is_forum,
            "bot_status": chat.bot_status,
            "bot_rights": chat.bot_rights,
            "next_message_id": chat.next_message_id,
            "topics": [[key, topic] for key, topic in chat.topics.items()],
            # The latest messages only (what a reply or a button press may still point at); the
            # next id is kept apart, so ids go on increasing all the same.
            "messages": [
                {
                    "data": m.data,
                    "seq": m.seq,
                    "outgoing": m.outgoing,
                    "method": m.method,
                    "parse_mode": m.parse_mode,
                    "reply_markup": m.reply_markup,
                    "deleted": m.deleted,
                    "edited": m.edited,
                    "received_at": m.received_at,
                }
                for m in itertools.islice(
                    reversed(chat.messages.values()), PERSISTED_MESSAGES_PER_CHAT
                )
            ][::-1],
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        assert self._state is not None
        self._seq = itertools.count(int(saved.get("next_seq", 1)))
        self._ids = itertools.count(int(saved.get("next_id", 1)))
        for raw in saved.get("bots", []):
            bot = _BotState(
                connection_id=raw["connection_id"],
                token=raw["token"],
                user=raw["user"],
                next_update_id=int(raw["next_update_id"]),
            )
            bot.users = {int(u["id"]): u for u in raw.get("users", [])}
            bot.blocked = {int(i) for i in raw.get("blocked", [])}
            bot.pending.extend(raw.get("pending", []))
            if (hook := raw.get("webhook")) is not None:
                bot.webhook = _Webhook(
                    url=hook["url"],
                    secret_token=hook["secret_token"],
                    allowed_updates=hook["allowed_updates"],
                    max_connections=int(hook["max_connections"]),
                )
            bot.poll_allowed_updates = raw.get("poll_allowed_updates")
            bot.commands = {(c[0], c[1]): c[2] for c in raw.get("commands", [])}
            bot.menu_buttons = {m[0]: m[1] for m in raw.get("menu_buttons", [])}
            bot.business_connections = dict(raw.get("business_connections", {}))
            for f in raw.get("files", []):
                data = (self._state.get_blob(f["file_id"]) or b"") if f["stored"] else b""
                bot.files[f["file_id"]] = _File(
                    file_id=f["file_id"],
                    file_unique_id=f["file_unique_id"],
                    file_path=f["file_path"],
                    data=data,
                    mime_type=f["mime_type"],
                    filename=f["filename"],
                    url=f["url"],
                )
            for c in raw.get("chats", []):
                chat = _Chat(
                    id=int(c["id"]),
                    type=c["type"],
                    business_connection_id=c["business_connection_id"],
                    title=c["title"],
                    first_name=c["first_name"],
                    last_name=c["last_name"],
                    username=c["username"],
                    is_forum=bool(c["is_forum"]),
                    bot_status=c["bot_status"],
                    bot_rights=dict(c["bot_rights"]),
                    next_message_id=int(c["next_message_id"]),
                )
                chat.topics = {int(key): topic for key, topic in c.get("topics", [])}
                for m in c.get("messages", []):
                    message = _Message(
                        data=m["data"],
                        seq=int(m["seq"]),
                        outgoing=bool(m["outgoing"]),
                        method=m["method"],
                        parse_mode=m["parse_mode"],
                        reply_markup=m["reply_markup"],
                        deleted=bool(m["deleted"]),
                        edited=bool(m["edited"]),
                        received_at=float(m["received_at"]),
                    )
                    chat.messages[message.message_id] = message
                bot.chats[(chat.business_connection_id or "", chat.id)] = chat
            self._bots[bot.connection_id] = bot
            self._by_token[bot.token] = bot

    def save(self) -> None:
        """Write the state file now (no-op without a ``state_path``)."""
        if self._state is not None:
            self._state.save()

    # ---- bots ------------------------------------------------------------------------------

    def register_bot(
        self, connection_id: str, token: str, username: str | None = None
    ) -> dict[str, Any]:
        """Register (or replace) the bot of ``connection_id``; returns its User object."""
        bot_id, sep, secret = token.partition(":")
        if not sep or not bot_id.isdigit() or not secret:
            raise ValueError("a bot token looks like '<digits>:<secret>'")
        old = self._bots.get(connection_id)
        name = username or f"sandbox_{re.sub(r'[^A-Za-z0-9_]', '_', connection_id)}_bot"
        user = {
            "id": int(bot_id),
            "is_bot": True,
            "first_name": f"Sandbox {connection_id}",
            "username": name,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": True,
            "can_connect_to_business": True,
            "has_main_web_app": False,
        }
        if old is not None and old.token == token:
            # The same bot registering again (a restart) keeps its chats.
            old.user = user
            self._changed()
            return dict(user)
        if old is not None:
            self._by_token.pop(old.token, None)
        state = _BotState(connection_id=connection_id, token=token, user=user)
        self._bots[connection_id] = state
        self._by_token[token] = state
        self._changed()
        return dict(user)

    def set_webhook(
        self,
        token: str,
        url: str,
        secret_token: str | None = None,
        allowed_updates: list[str] | None = None,
    ) -> None:
        """``setWebhook`` from Python, for wiring that runs before any bot makes a call."""
        bot = self._by_token.get(token)
        if bot is None:
            raise ValueError("no bot is registered with this token")
        raw: dict[str, Any] = {"url": url, "secret_token": secret_token}
        if allowed_updates is not None:
            raw["allowed_updates"] = allowed_updates
        try:
            self._m_setwebhook(bot, _Params(raw, {}))
        except TelegramApiError as exc:
            raise ValueError(exc.description) from None
        self._changed()

    def _bot(self, connection_id: str) -> _BotState:
        state = self._bots.get(connection_id)
        if state is None:
            raise HTTPException(404, f"no bot registered for connection_id {connection_id!r}")
        return state

    # ---- chats -----------------------------------------------------------------------------

    def register_chat(
        self,
        connection_id: str,
        chat_id: int,
        *,
        chat_type: str | None = None,
        title: str | None = None,
        is_forum: bool | None = None,
        first_name: str | None = None,
        username: str | None = None,
        bot_status: str | None = None,
        bot_rights: dict[str, bool] | None = None,
    ) -> dict[str, Any]:
        """Make a chat known to the bot (a group it was added to, a user who pressed Start).

        In a group the bot is an administrator with every right unless ``bot_status`` is
        "member" or ``bot_rights`` takes rights away (``{"can_manage_topics": False}``).
        """
        bot = self._bot(connection_id)
        chat = self._ensure_chat(bot, chat_id, None, title=title, chat_type=chat_type)
        if is_forum is not None:
            chat.is_forum = is_forum
        if bot_status is not None:
            if bot_status not in ("administrator", "member"):
                raise HTTPException(400, "bot_status is administrator or member")
            chat.bot_status = bot_status
        if bot_rights is not None:
            chat.bot_rights = {str(k): bool(v) for k, v in bot_rights.items()}
        if first_name is not None:
            chat.first_name = first_name
        if username is not None:
            chat.username = username
        if chat.type == "private":
            bot.users.setdefault(
                chat_id, {"id": chat_id, "is_bot": False, "first_name": chat.first_name}
            )
        self._changed()
        return chat.as_dict()

    def block_user(self, connection_id: str, user_id: int, blocked: bool = True) -> None:
        """The user blocks (or unblocks) the bot: sends to them answer 403."""
        bot = self._bot(connection_id)
        if blocked:
            bot.blocked.add(user_id)
        else:
            bot.blocked.discard(user_id)
        self._changed()

    def _ensure_chat(
        self,
        bot: _BotState,
        chat_id: int,
        business_connection_id: str | None,
        *,
        title: str | None = None,
        chat_type: str | None = None,
    ) -> _Chat:
        key = (business_connection_id or "", chat_id)
        chat = bot.chats.get(key)
        if chat is not None:
            return chat
        if chat_type is None:
            if chat_id > 0:
                chat_type = "private"
            else:
                chat_type = "supergroup" if chat_id < -(10**12) else "group"
        chat = _Chat(id=chat_id, type=chat_type, business_connection_id=business_connection_id)
        if chat_type == "private":
            user = bot.users.get(chat_id, {})
            chat.first_name = user.get("first_name") or f"User {chat_id}"
            chat.last_name = user.get("last_name")
            chat.username = user.get("username")
        else:
            chat.title = title or f"Sandbox group {chat_id}"
            chat.is_forum = chat_type == "supergroup"
        bot.chats[key] = chat
        return chat

    def _find_chat(self, bot: _BotState, params: _Params, *, name: str = "chat_id") -> _Chat:
        business_connection_id = params.string("business_connection_id")
        raw = params.raw.get(name)
        if raw is None or raw == "":
            raise _bad(f"{name} is empty")
        if isinstance(raw, str) and raw.startswith("@"):
            for known in bot.chats.values():
                if known.username and f"@{known.username}".lower() == raw.lower():
                    return known
            raise _bad("chat not found")
        chat_id = params.integer(name, required=True)
        assert chat_id is not None
        if business_connection_id:
            self._business_connection(bot, business_connection_id, sending=True)
        chat = bot.chats.get((business_connection_id or "", chat_id))
        if chat is None:
            raise _bad("chat not found")
        if chat.type == "private" and chat.id in bot.blocked and not business_connection_id:
            raise TelegramApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _business_connection(
        self, bot: _BotState, business_connection_id: str, *, sending: bool = False
    ) -> dict[str, Any]:
        connection = bot.business_connections.get(business_connection_id)
        if connection is None:
            raise _bad("BUSINESS_CONNECTION_INVALID")
        if sending and not connection["is_enabled"]:
            raise _bad("BUSINESS_CONNECTION_INVALID")
        if sending and not connection.get("rights", {}).get("can_reply"):
            raise TelegramApiError(403, "Forbidden: BUSINESS_CONNECTION_NOT_ALLOWED")
        return connection

    # ---- files -----------------------------------------------------------------------------

    def _store_file(
        self,
        bot: _BotState,
        data: bytes,
        *,
        kind: str,
        filename: str | None,
        mime_type: str | None,
        url: str | None = None,
    ) -> _File:
        n = next(self._ids)
        ext = ""
        if filename and "." in filename:
            ext = "." + filename.rsplit(".", 1)[1]
        elif kind == "photo":
            ext = ".jpg"
        digest = hashlib.sha256(data + str(n).encode()).hexdigest()
        record = _File(
            file_id=f"{kind[:3].upper()}{bot.id}_{n}_{digest[:16]}",
            file_unique_id=f"U{digest[16:28]}",
            file_path=f"{kind}s/file_{n}{ext}",
            data=data,
            mime_type=mime_type or (mimetypes.guess_type(filename)[0] if filename else None),
            filename=filename,
            url=url,
        )
        bot.files[record.file_id] = record
        return record

    def _media_object(self, bot: _BotState, kind: str, record: _File) -> Any:
        """The Bot API object (or PhotoSize list) describing a stored file."""
        base = {
            "file_id": record.file_id,
            "file_unique_id": record.file_unique_id,
            "file_size": len(record.data),
        }
        if kind == "photo":
            thumb = self._store_file(
                bot, record.data, kind="photo", filename=record.filename, mime_type="image/jpeg"
            )
            small = {
                "file_id": thumb.file_id,
                "file_unique_id": thumb.file_unique_id,
                "file_size": len(thumb.data),
                "width": 90,
                "height": 90,
            }
            return [small, {**base, "width": 800, "height": 800}]
        if kind == "sticker":
            return {
                **base,
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
                "emoji": "🙂",
            }
        obj = dict(base)
        if record.mime_type:
            obj["mime_type"] = record.mime_type
        if kind in ("document", "audio", "video") and record.filename:
            obj["file_name"] = record.filename
        if kind in ("voice", "audio", "video"):
            obj["duration"] = 1
        if kind == "video":
            obj["width"], obj["height"] = 640, 360
        return obj

    def _input_file(self, bot: _BotState, params: _Params, kind: str) -> _File:
        """Resolve a media parameter: an upload (``attach://``), a file_id or a URL."""
        raw = params.raw.get(kind)
        upload: UploadedFile | None = None
        if isinstance(raw, str) and raw.startswith("attach://"):
            upload = params.files.get(raw.removeprefix("attach://"))
            if upload is None:
                raise _bad(f"file {raw!r} not found in the request")
        elif raw is None and kind in params.files:
            upload = params.files[kind]
        if upload is not None:
            if not upload.data:
                raise _bad("file must be non-empty")
            return self._store_file(
                bot,
                upload.data,
                kind=kind,
                filename=upload.filename,
                mime_type=upload.content_type
                if upload.content_type not in (None, "application/octet-stream")
                else None,
            )
        if not isinstance(raw, str) or not raw:
            raise _bad(f"there is no {kind} in the request")
        if raw in bot.files:
            return bot.files[raw]
        if raw.startswith(("http://", "https://")):
            name = raw.rsplit("/", 1)[-1].split("?", 1)[0] or None
            return self._store_file(bot, b"", kind=kind, filename=name, mime_type=None, url=raw)
        raise _bad("wrong file identifier/HTTP URL specified")

    # ---- messages --------------------------------------------------------------------------

    def _validate_markup(self, markup: Any) -> dict[str, Any] | None:
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list):
                raise _bad('can\'t parse inline keyboard button: field "inline_keyboard"')
            for row in rows:
                for button in row:
                    if not isinstance(button, dict) or not button.get("text"):
                        raise _bad("can't parse inline keyboard button: Text buttons are unallowed")
                    data = button.get("callback_data")
                    if data is not None and not (1 <= len(str(data).encode()) <= 64):
                        raise _bad("BUTTON_DATA_INVALID")
                    actions = set(button) - {"text", "style", "icon_custom_emoji_id"}
                    if len(actions) != 1:
                        raise _bad(
                            "can't parse inline keyboard button: "
                            "exactly one of the optional fields must be used"
                        )
        elif "keyboard" in markup:
            for row in markup["keyboard"]:
                for button in row:
                    text = button if isinstance(button, str) else button.get("text")
                    if not text:
                        raise _bad("keyboard button text is empty")
        elif not ({"remove_keyboard", "force_reply"} & set(markup)):
            raise _bad("can't parse reply keyboard markup JSON object")
        return markup

    @staticmethod
    def _check_text(text: str | None, *, caption: bool) -> None:
        if text is None:
            return
        limit = 1024 if caption else 4096
        if len(text.encode("utf-16-le")) // 2 > limit:
            raise _bad("message caption is too long" if caption else "message is too long")

    def _reply_to(self, chat: _Chat, params: _Params) -> dict[str, Any] | None:
        reply = params.value("reply_parameters")
        message_id: int | None
        allow_missing = params.flag("allow_sending_without_reply")
        if isinstance(reply, dict):
            message_id = int(reply["message_id"]) if "message_id" in reply else None
            allow_missing = bool(reply.get("allow_sending_without_reply", allow_missing))
        else:
            message_id = params.integer("reply_to_message_id")
        if message_id is None:
            return None
        target = chat.messages.get(message_id)
        if target is None or target.deleted:
            if allow_missing:
                return None
            raise _bad("message to be replied not found")
        quoted = {k: v for k, v in target.data.items() if k != "reply_to_message"}
        return quoted

    def _thread(self, chat: _Chat, params: _Params) -> int | None:
        thread_id = params.integer("message_thread_id")
        if thread_id is None:
            return None
        if chat.type == "private":
            return None
        if thread_id not in chat.topics:
            raise _bad("message thread not found")
        return thread_id

    def _new_outgoing(
        self,
        bot: _BotState,
        chat: _Chat,
        params: _Params,
        *,
        method: str,
        content: dict[str, Any],
        parse_mode: str | None,
        markup: dict[str, Any] | None,
    ) -> _Message:
        reply_to = self._reply_to(chat, params)
        thread_id = self._thread(chat, params)
        self._check_limits(bot, chat, paid=params.flag("allow_paid_broadcast"))
        data: dict[str, Any] = {
            "message_id": chat.allocate_id(),
            "date": _now(),
            "chat": chat.as_dict(),
        }
        business_connection_id = params.string("business_connection_id")
        if business_connection_id:
            connection = bot.business_connections[business_connection_id]
            # On behalf of the business account: the rep is the sender, the bot is named.
            data["from"] = connection["user"]
            data["sender_business_bot"] = bot.user
            data["business_connection_id"] = business_connection_id
        else:
            data["from"] = bot.user
        if thread_id is not None:
            data["message_thread_id"] = thread_id
            data["is_topic_message"] = True
        if reply_to is not None:
            data["reply_to_message"] = reply_to
        data.update(content)
        if markup and "inline_keyboard" in markup:
            data["reply_markup"] = markup
        message = _Message(
            data=data,
            seq=next(self._seq),
            outgoing=True,
            method=method,
            parse_mode=parse_mode,
            reply_markup=markup,
        )
        chat.messages[message.message_id] = message
        return message

    def _content_text(self, params: _Params) -> dict[str, Any]:
        text = params.string("text")
        if text is None or not text.strip():
            raise _bad("message text is empty")
        self._check_text(text, caption=False)
        _check_parse_mode(text, params.string("parse_mode"))
        content: dict[str, Any] = {"text": text}
        if (entities := params.value("entities")) is not None:
            content["entities"] = entities
        if (preview := params.value("link_preview_options")) is not None:
            content["link_preview_options"] = preview
        return content

    def _content_caption(self, params: _Params) -> dict[str, Any]:
        caption = params.string("caption")
        if caption is None:
            return {}
        self._check_text(caption, caption=True)
        _check_parse_mode(caption, params.string("parse_mode"))
        content: dict[str, Any] = {"caption": caption}
        if (entities := params.value("caption_entities")) is not None:
            content["caption_entities"] = entities
        return content

    def _check_limits(self, bot: _BotState, chat: _Chat, *, paid: bool = False) -> None:
        if not self.enforce_limits:
            return
        now = time.monotonic()
        rules = [("bot", *(_LIMIT_BOT_PAID if paid else _LIMIT_BOT))]
        rules.append(
            (f"chat:{chat.id}", *(_LIMIT_PRIVATE if chat.type == "private" else _LIMIT_GROUP))
        )
        for key, limit, window in rules:
            times = bot.send_times.setdefault(key, deque())
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) >= limit:
                wait = max(1, math.ceil(times[0] + window - now))
                raise TelegramApiError(
                    429, f"Too Many Requests: retry after {wait}", {"retry_after": wait}
                )
        for key, _, _ in rules:
            bot.send_times[key].append(now)

    def _send(
        self, bot: _BotState, params: _Params, method: str, kind: str | None
    ) -> dict[str, Any]:
        chat = self._find_chat(bot, params)
        markup = self._validate_markup(params.value("reply_markup"))
        if kind is None:
            content = self._content_text(params)
        else:
            content = self._content_caption(params)
            record = self._input_file(bot, params, kind)
            content[kind] = self._media_object(bot, kind, record)
        message = self._new_outgoing(
            bot,
            chat,
            params,
            method=method,
            content=content,
            parse_mode=params.string("parse_mode"),
            markup=markup,
        )
        return message.data

    def _m_sendmessage(self, bot: _BotState, params: _Params) -> Any:
        return self._send(bot, params, "sendMessage", None)

    def _m_sendphoto(self, bot: _BotState, params: _Params) -> Any:
        return self._send(bot, params, "sendPhoto", "photo")

    def _m_senddocument(self, bot: _BotState, params: _Params) -> Any:
        return self._send(bot, params, "sendDocument", "document")

    def _m_sendvoice(self, bot: _BotState, params: _Params) -> Any:
        return self._send(bot, params, "sendVoice", "voice")

    def _m_sendaudio(self, bot: _BotState, params: _Params) -> Any:
        return self._send(bot, params, "sendAudio", "audio")

    def _m_sendvideo(self, bot: _BotState, params: _Params) -> Any:
        return self._send(bot, params, "sendVideo", "video")

    def _m_sendsticker(self, bot: _BotState, params: _Params) -> Any:
        return self._send(bot, params, "sendSticker", "sticker")

    def _m_sendchataction(self, bot: _BotState, params: _Params) -> Any:
        chat = self._find_chat(bot, params)
        action = params.string("action", required=True)
        if action not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        bot.chat_actions.append(
            {
                "chat_id": chat.id,
                "action": action,
                "message_thread_id": params.integer("message_thread_id"),
                "business_connection_id": params.string("business_connection_id"),
                "date": _now(),
            }
        )
        return True

    def _source_message(self, bot: _BotState, params: _Params, verb: str) -> _Message:
        from_chat_id = params.integer("from_chat_id", required=True)
        message_id = params.integer("message_id", required=True)
        assert from_chat_id is not None and message_id is not None
        source_chat = bot.chats.get(("", from_chat_id))
        if source_chat is None:
            raise _bad("chat not found")
        source = source_chat.messages.get(message_id)
        if source is None or source.deleted:
            raise _bad(f"message to {verb} not found")
        return source

    def _m_copymessage(self, bot: _BotState, params: _Params) -> Any:
        source = self._source_message(bot, params, "copy")
        chat = self._find_chat(bot, params)
        markup = self._validate_markup(params.value("reply_markup"))
        content = {
            k: v for k, v in source.data.items() if k in ("text", "entities", *_MEDIA_FIELDS)
        }
        if params.has("caption"):
            content.update(self._content_caption(params))
        elif "caption" in source.data:
            content["caption"] = source.data["caption"]
        message = self._new_outgoing(
            bot,
            chat,
            params,
            method="copyMessage",
            content=content,
            parse_mode=params.string("parse_mode"),
            markup=markup,
        )
        return {"message_id": message.message_id}

    def _m_forwardmessage(self, bot: _BotState, params: _Params) -> Any:
        source = self._source_message(bot, params, "forward")
        chat = self._find_chat(bot, params)
        content = {
            k: v
            for k, v in source.data.items()
            if k in ("text", "entities", "caption", "caption_entities", *_MEDIA_FIELDS)
        }
        sender = source.data.get("from")
        if sender is not None:
            content["forward_origin"] = {
                "type": "user",
                "sender_user": sender,
                "date": source.data["date"],
            }
        else:
            content["forward_origin"] = {
                "type": "chat",
                "sender_chat": source.data["chat"],
                "date": source.data["date"],
            }
        message = self._new_outgoing(
            bot,
            chat,
            params,
            method="forwardMessage",
            content=content,
            parse_mode=None,
            markup=None,
        )
        return message.data

    def _editable(self, bot: _BotState, params: _Params) -> _Message:
        if params.has("inline_message_id"):
            raise _bad("inline messages are not emulated")
        chat = self._find_chat(bot, params)
        message_id = params.integer("message_id", required=True)
        assert message_id is not None
        message = chat.messages.get(message_id)
        if message is None or message.deleted:
            raise _bad("message to edit not found")
        if not message.outgoing:
            raise _bad("message can't be edited")
        return message

    def _apply_edit(
        self,
        message: _Message,
        changes: dict[str, Any],
        markup: dict[str, Any] | None,
        parse_mode: str | None,
        *,
        drop: Iterable[str] = (),
    ) -> dict[str, Any]:
        data = dict(message.data)
        for key in drop:
            data.pop(key, None)
        data.update(changes)
        # Editing without reply_markup removes an inline keyboard, as Telegram does.
        if markup and "inline_keyboard" in markup:
            data["reply_markup"] = markup
        else:
            data.pop("reply_markup", None)
        if data == message.data:
            raise _bad(_NOT_MODIFIED.removeprefix("Bad Request: "))
        data["edit_date"] = _now()
        message.data = data
        message.reply_markup = markup
        message.parse_mode = parse_mode if parse_mode is not None else message.parse_mode
        message.edited = True
        return data

    def _m_editmessagetext(self, bot: _BotState, params: _Params) -> Any:
        message = self._editable(bot, params)
        if "text" not in message.data:
            raise _bad("there is no text in the message to edit")
        markup = self._validate_markup(params.value("reply_markup"))
        content = self._content_text(params)
        return self._apply_edit(
            message, content, markup, params.string("parse_mode"), drop=("entities",)
        )

    def _m_editmessagecaption(self, bot: _BotState, params: _Params) -> Any:
        message = self._editable(bot, params)
        if not any(kind in message.data for kind in _MEDIA_FIELDS):
            raise _bad("there is no caption in the message to edit")
        markup = self._validate_markup(params.value("reply_markup"))
        content = self._content_caption(params)
        return self._apply_edit(
            message,
            content,
            markup,
            params.string("parse_mode"),
            drop=("caption", "caption_entities"),
        )

    def _m_editmessagereplymarkup(self, bot: _BotState, params: _Params) -> Any:
        message = self._editable(bot, params)
        markup = self._validate_markup(params.value("reply_markup"))
        return self._apply_edit(message, {}, markup, None)

    def _m_deletemessage(self, bot: _BotState, params: _Params) -> Any:
        chat = self._find_chat(bot, params)
        message_id = params.integer("message_id", required=True)
        assert message_id is not None
        message = chat.messages.get(message_id)
        if message is None or message.deleted:
            raise _bad("message to delete not found")
        message.deleted = True
        return True

    def _m_deletemessages(self, bot: _BotState, params: _Params) -> Any:
        chat = self._find_chat(bot, params)
        for message_id in params.value("message_ids") or []:
            message = chat.messages.get(int(message_id))
            if message is not None:
                message.deleted = True
        return True

    # ---- queries ---------------------------------------------------------------------------

    def _m_answercallbackquery(self, bot: _BotState, params: _Params) -> Any:
        query_id = params.string("callback_query_id", required=True)
        assert query_id is not None
        query = bot.callback_queries.get(query_id)
        if query is None or query["answered"]:
            raise _bad(_QUERY_TOO_OLD.removeprefix("Bad Request: "))
        query["answered"] = True
        bot.callback_answers.append(
            {
                "callback_query_id": query_id,
                "data": query.get("data"),
                "text": params.string("text"),
                "show_alert": params.flag("show_alert"),
                "url": params.string("url"),
                "cache_time": params.integer("cache_time"),
            }
        )
        return True

    def _m_answerinlinequery(self, bot: _BotState, params: _Params) -> Any:
        query_id = params.string("inline_query_id", required=True)
        assert query_id is not None
        query = bot.inline_queries.get(query_id)
        if query is None or query["answered"]:
            raise _bad(_QUERY_TOO_OLD.removeprefix("Bad Request: "))
        results = params.value("results")
        if not isinstance(results, list):
            raise _bad("can't parse inline query results JSON object")
        query["answered"] = True
        bot.inline_answers.append(
            {
                "inline_query_id": query_id,
                "query": query.get("query"),
                "results": results,
                "cache_time": params.integer("cache_time"),
                "is_personal": params.flag("is_personal"),
                "button": params.value("button"),
            }
        )
        return True

    # ---- bot settings ----------------------------------------------------------------------

    def _m_getme(self, bot: _BotState, params: _Params) -> Any:
        return bot.user

    def _m_logout(self, bot: _BotState, params: _Params) -> Any:
        return True

    def _m_close(self, bot: _BotState, params: _Params) -> Any:
        return True

    @staticmethod
    def _scope_key(params: _Params) -> tuple[str, str]:
        scope = params.value("scope") or {"type": "default"}
        if not isinstance(scope, dict) or "type" not in scope:
            raise _bad("can't parse BotCommandScope JSON object")
        language = params.string("language_code") or ""
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise _bad("invalid language code specified")
        return json.dumps(scope, sort_keys=True), language

    def _m_setmycommands(self, bot: _BotState, params: _Params) -> Any:
        commands = params.value("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad("can't parse commands JSON object")
        for command in commands:
            if not isinstance(command, dict) or not _COMMAND_RE.match(
                str(command.get("command", ""))
            ):
                raise _bad("BOT_COMMAND_INVALID")
            if not (1 <= len(str(command.get("description", ""))) <= 256):
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._scope_key(params)
        if commands:
            bot.commands[key] = [
                {"command": c["command"], "description": c["description"]} for c in commands
            ]
        else:
            bot.commands.pop(key, None)
        return True

    def _m_getmycommands(self, bot: _BotState, params: _Params) -> Any:
        return bot.commands.get(self._scope_key(params), [])

    def _m_deletemycommands(self, bot: _BotState, params: _Params) -> Any:
        bot.commands.pop(self._scope_key(params), None)
        return True

    def _m_setchatmenubutton(self, bot: _BotState, params: _Params) -> Any:
        chat_id = params.integer("chat_id")
        if chat_id is not None and ("", chat_id) not in bot.chats:
            raise _bad("chat not found")
        button = params.value("menu_button") or {"type": "default"}
        if not isinstance(button, dict) or button.get("type") not in (
            "default",
            "commands",
            "web_app",
        ):
            raise _bad("can't parse menu button JSON object")
        if button["type"] == "web_app" and not (
            button.get("text") and isinstance(button.get("web_app"), dict)
        ):
            raise _bad("can't parse menu button JSON object")
        bot.menu_buttons[chat_id] = button
        return True

    def _m_getchatmenubutton(self, bot: _BotState, params: _Params) -> Any:
        chat_id = params.integer("chat_id")
        return bot.menu_buttons.get(chat_id) or bot.menu_buttons.get(None) or {"type": "default"}

    # ---- webhook and updates ---------------------------------------------------------------

    def _m_setwebhook(self, bot: _BotState, params: _Params) -> Any:
        url = params.string("url") or ""
        if not url:
            return self._remove_webhook(bot, drop=params.flag("drop_pending_updates"))
        if not url.startswith(("http://", "https://")):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.string("secret_token")
        if secret is not None and not _SECRET_RE.match(secret):
            raise _bad("bad webhook: secret token contains unallowed characters")
        allowed = params.value("allowed_updates")
        if allowed is not None and not isinstance(allowed, list):
            raise _bad("can't parse allowed_updates JSON object")
        previous = bot.webhook
        bot.webhook = _Webhook(
            url=url,
            secret_token=secret,
            allowed_updates=allowed
            if allowed is not None
            else (previous.allowed_updates if previous else None),
            max_connections=params.integer("max_connections") or 40,
        )
        if params.flag("drop_pending_updates"):
            bot.pending.clear()
            self._drop_outbox(bot)
        else:
            # Updates waiting for getUpdates now go to the webhook.
            while bot.pending:
                self._enqueue_push(bot, bot.pending.popleft(), copies=1)
        return True

    def _m_deletewebhook(self, bot: _BotState, params: _Params) -> Any:
        return self._remove_webhook(bot, drop=params.flag("drop_pending_updates"))

    def _remove_webhook(self, bot: _BotState, *, drop: bool) -> bool:
        bot.webhook = None
        waiting = list(bot.outbox)
        self._drop_outbox(bot)
        if drop:
            bot.pending.clear()
        else:
            seen: set[int] = set()
            for update in waiting:
                if update["update_id"] not in seen:
                    seen.add(update["update_id"])
                    bot.pending.append(update)
        return True

    def _drop_outbox(self, bot: _BotState) -> None:
        dropped = len(bot.outbox)
        bot.outbox.clear()
        self._settle(dropped)

    def _m_getwebhookinfo(self, bot: _BotState, params: _Params) -> Any:
        hook = bot.webhook
        info: dict[str, Any] = {
            "url": hook.url if hook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(bot.pending) + len(bot.outbox),
        }
        if hook is not None:
            info["max_connections"] = hook.max_connections
            if hook.allowed_updates:
                info["allowed_updates"] = hook.allowed_updates
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
        return info

    async def _m_getupdates(self, bot: _BotState, params: _Params) -> Any:
        if bot.webhook is not None:
            raise TelegramApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = params.integer("offset")
        limit = max(1, min(100, params.integer("limit") or 100))
        timeout = max(0, params.integer("timeout") or 0)
        allowed = params.value("allowed_updates")
        if allowed is not None:
            bot.poll_allowed_updates = allowed or None
        if offset is not None:
            if offset < 0:
                while len(bot.pending) > -offset:
                    bot.pending.popleft()
            else:
                while bot.pending and bot.pending[0]["update_id"] < offset:
                    bot.pending.popleft()
        if not bot.pending and timeout:
            signal = bot.poll_signal = bot.poll_signal or asyncio.Event()
            signal.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), timeout)
        return list(itertools.islice(bot.pending, limit))

    # ---- chats, members, topics, files, business ------------------------------------------

    def _m_getchat(self, bot: _BotState, params: _Params) -> Any:
        chat = self._find_chat(bot, params)
        info = chat.as_dict()
        info.update(
            {
                "accent_color_id": 0,
                "max_reaction_count": 11,
                "accepted_gift_types": {
                    "unlimited_gifts": False,
                    "limited_gifts": False,
                    "unique_gifts": False,
                    "premium_subscription": False,
                    "gifts_from_channels": False,
                },
            }
        )
        return info

    def _m_getchatmember(self, bot: _BotState, params: _Params) -> Any:
        chat = self._find_chat(bot, params)
        user_id = params.integer("user_id", required=True)
        if user_id == bot.id:
            if chat.type == "private":
                return {"status": "member", "user": bot.user}
            rights = {
                name: True
                for name in (
                    "can_manage_chat",
                    "can_delete_messages",
                    "can_manage_video_chats",
                    "can_restrict_members",
                    "can_promote_members",
                    "can_change_info",
                    "can_invite_users",
                    "can_post_stories",
                    "can_edit_stories",
                    "can_delete_stories",
                    "can_send_welcome_messages",
                    "can_pin_messages",
                    "can_manage_topics",
                )
            }
            rights.update(chat.bot_rights)
            if chat.bot_status == "member":
                return {"status": "member", "user": bot.user}
            return {
                "status": "administrator",
                "user": bot.user,
                "can_be_edited": False,
                "is_anonymous": False,
                **rights,
            }
        user = bot.users.get(int(user_id or 0))
        if user is None:
            raise _bad("user not found")
        if chat.type == "private" and user["id"] in bot.blocked:
            return {"status": "kicked", "user": user, "until_date": 0}
        return {"status": "member", "user": user}

    def _forum(self, bot: _BotState, params: _Params) -> _Chat:
        chat = self._find_chat(bot, params)
        if chat.type != "supergroup" or not chat.is_forum:
            raise _bad("the chat is not a forum")
        if chat.bot_status != "administrator" or not chat.bot_rights.get("can_manage_topics", True):
            raise _bad("not enough rights to manage topics")
        return chat

    def _topic(self, chat: _Chat, params: _Params) -> dict[str, Any]:
        thread_id = params.integer("message_thread_id", required=True)
        topic = chat.topics.get(int(thread_id or 0))
        if topic is None:
            raise _bad("message thread not found")
        return topic

    def _m_createforumtopic(self, bot: _BotState, params: _Params) -> Any:
        chat = self._forum(bot, params)
        name = params.string("name", required=True) or ""
        if not (1 <= len(name) <= 128):
            raise _bad("TOPIC_TITLE_EMPTY" if not name else "TOPIC_TITLE_TOO_LONG")
        color = params.integer("icon_color") or _TOPIC_COLORS[0]
        if color not in _TOPIC_COLORS:
            raise _bad("TOPIC_COLOR_INVALID")
        # A topic is identified by the id of its service message "topic created".
        thread_id = chat.allocate_id()
        topic: dict[str, Any] = {"message_thread_id": thread_id, "name": name, "icon_color": color}
        if emoji := params.string("icon_custom_emoji_id"):
            topic["icon_custom_emoji_id"] = emoji
        service = {
            "message_id": thread_id,
            "date": _now(),
            "chat": chat.as_dict(),
            "from": bot.user,
            "message_thread_id": thread_id,
            "is_topic_message": True,
            "forum_topic_created": {"name": name, "icon_color": color},
        }
        chat.messages[thread_id] = _Message(
            data=service, seq=next(self._seq), outgoing=False, method="createForumTopic"
        )
        chat.topics[thread_id] = {**topic, "is_closed": False}
        return topic

    def _m_editforumtopic(self, bot: _BotState, params: _Params) -> Any:
        chat = self._forum(bot, params)
        topic = self._topic(chat, params)
        name = params.string("name")
        emoji = params.raw.get("icon_custom_emoji_id")
        if name is None and emoji is None:
            raise _bad("TOPIC_NOT_MODIFIED")
        if name is not None:
            if not (1 <= len(name) <= 128):
                raise _bad("TOPIC_TITLE_TOO_LONG")
            topic["name"] = name
        if emoji is not None:
            topic["icon_custom_emoji_id"] = emoji
        return True

    def _set_closed(self, bot: _BotState, params: _Params, closed: bool) -> bool:
        chat = self._forum(bot, params)
        topic = self._topic(chat, params)
        if topic["is_closed"] == closed:
            raise _bad("TOPIC_NOT_MODIFIED")
        topic["is_closed"] = closed
        return True

    def _m_closeforumtopic(self, bot: _BotState, params: _Params) -> Any:
        return self._set_closed(bot, params, True)

    def _m_reopenforumtopic(self, bot: _BotState, params: _Params) -> Any:
        return self._set_closed(bot, params, False)

    def _m_deleteforumtopic(self, bot: _BotState, params: _Params) -> Any:
        chat = self._forum(bot, params)
        topic = self._topic(chat, params)
        thread_id = topic["message_thread_id"]
        del chat.topics[thread_id]
        for message in chat.messages.values():
            if message.data.get("message_thread_id") == thread_id:
                message.deleted = True
        return True

    def _m_getfile(self, bot: _BotState, params: _Params) -> Any:
        file_id = params.string("file_id", required=True)
        record = bot.files.get(file_id or "")
        if record is None:
            raise _bad("invalid file_id")
        return {
            "file_id": record.file_id,
            "file_unique_id": record.file_unique_id,
            "file_size": len(record.data),
            "file_path": record.file_path,
        }

    def _m_getbusinessconnection(self, bot: _BotState, params: _Params) -> Any:
        business_connection_id = params.string("business_connection_id", required=True)
        return self._business_connection(bot, business_connection_id or "")

    # ---- dispatch --------------------------------------------------------------------------

    async def call_method(
        self,
        token: str,
        method: str,
        params: dict[str, Any],
        files: dict[str, UploadedFile] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Run one Bot API call; returns the HTTP status and the JSON body Telegram sends."""
        bot = self._by_token.get(token)
        if bot is None:
            return 401, TelegramApiError(401, "Unauthorized").body()
        name = method.lower()
        handler = self._methods.get(name)
        if handler is None:
            return 404, TelegramApiError(404, "Not Found").body()
        try:
            await self._apply_fault(bot, name)
            result = handler(bot, _Params(params, files or {}))
            if asyncio.iscoroutine(result):
                result = await result
        except TelegramApiError as exc:
            return exc.status, exc.body()
        self._changed()
        return 200, {"ok": True, "result": result}

    async def _apply_fault(self, bot: _BotState, method: str) -> None:
        for fault in self._faults:
            if fault.remaining <= 0 or not fault.applies(bot.connection_id, method):
                continue
            fault.remaining -= 1
            if fault.kind == "slow":
                await asyncio.sleep(fault.delay)
                continue
            if fault.kind == "rate_limit":
                raise TelegramApiError(
                    429,
                    f"Too Many Requests: retry after {fault.retry_after}",
                    {"retry_after": fault.retry_after},
                )
            description = "Bad Gateway" if fault.status == 502 else "Internal Server Error"
            raise TelegramApiError(fault.status, description)
        self._faults = [f for f in self._faults if f.remaining > 0]

    # ---- updates from users ----------------------------------------------------------------

    def _user(self, bot: _BotState, payload: dict[str, Any]) -> dict[str, Any]:
        user_id = int(payload["from_user_id"])
        known = bot.users.get(user_id, {})
        user: dict[str, Any] = {
            "id": user_id,
            "is_bot": False,
            "first_name": payload.get("first_name") or known.get("first_name") or "Lead",
        }
        for key in ("last_name", "username", "language_code"):
            value = payload.get(key) or known.get(key)
            if value:
                user[key] = value
        bot.users[user_id] = user
        return user

    def _next_update(self, bot: _BotState, kind: str, body: Any) -> dict[str, Any]:
        update = {"update_id": bot.next_update_id, kind: body}
        bot.next_update_id += 1
        return update

    def _user_content(self, bot: _BotState, payload: dict[str, Any]) -> dict[str, Any]:
        content: dict[str, Any] = {}
        text = payload.get("text")
        media_kind = next((k for k in _MEDIA_FIELDS if payload.get(f"{k}_base64")), None)
        if media_kind is not None:
            try:
                data = base64.b64decode(payload[f"{media_kind}_base64"], validate=True)
            except ValueError:
                raise HTTPException(400, f"{media_kind}_base64 is not base64") from None
            record = self._store_file(
                bot,
                data,
                kind=media_kind,
                filename=payload.get("filename"),
                mime_type=payload.get("mime_type"),
            )
            content[media_kind] = self._media_object(bot, media_kind, record)
            if text:
                content["caption"] = text
        elif isinstance(payload.get("contact"), dict):
            contact = dict(payload["contact"])
            if "phone_number" not in contact:
                raise HTTPException(422, "contact.phone_number: field required")
            contact.setdefault("first_name", payload.get("first_name") or "Lead")
            # The "share my phone number" button: the contact is the sender's own.
            contact.setdefault("user_id", int(payload["from_user_id"]))
            if contact["user_id"] is None:
                del contact["user_id"]
            content["contact"] = contact
        elif isinstance(payload.get("location"), dict):
            location = payload["location"]
            content["location"] = {
                "latitude": _control_float(location, "latitude"),
                "longitude": _control_float(location, "longitude"),
            }
        elif text:
            content["text"] = text
            if (entities := payload.get("entities")) is not None:
                content["entities"] = entities
            elif text.startswith("/"):
                command = text.split(maxsplit=1)[0]
                content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        else:
            raise HTTPException(400, "an update needs text, media, contact or location")
        return content

    async def post_update(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Play a user: build the Update ``payload`` describes and deliver it to the bot."""
        bot = self._bot(str(payload.get("connection_id", "")))
        payload = _control_ids(payload)
        if payload.get("from_user_id") is None:
            raise HTTPException(422, "from_user_id: field required")
        if "inline_query" in payload:
            return self._post_inline_query(bot, payload)
        user = self._user(bot, payload)
        business_connection_id = payload.get("business_connection_id")
        if business_connection_id:
            connection = bot.business_connections.get(business_connection_id)
            if connection is None:
                raise HTTPException(400, "unknown business_connection_id")
            if not connection["is_enabled"]:
                raise HTTPException(400, "the business connection is disabled")
        chat_id = int(payload.get("chat_id") or user["id"])
        chat = self._ensure_chat(
            bot, chat_id, business_connection_id, title=payload.get("chat_title")
        )
        if chat.type == "private" and chat.id == user["id"]:
            chat.first_name = user["first_name"]
            chat.last_name = user.get("last_name")
            chat.username = user.get("username")
        if payload.get("delete_message_ids") is not None:
            return self._post_deletion(bot, chat, payload)
        if payload.get("callback_data") is not None:
            return self._post_callback(bot, chat, user, payload)
        if payload.get("edit"):
            return self._post_edit(bot, chat, user, payload)
        content = self._user_content(bot, payload)
        wanted = payload.get("message_id")
        if wanted is not None and int(wanted) in chat.messages:
            raise HTTPException(400, f"message_id {wanted} is already used in this chat")
        data: dict[str, Any] = {
            "message_id": chat.allocate_id(int(wanted) if wanted is not None else None),
            "from": user,
            "chat": chat.as_dict(),
            "date": _now(),
        }
        if business_connection_id:
            data["business_connection_id"] = business_connection_id
        thread_id = payload.get("message_thread_id")
        if thread_id is not None:
            if int(thread_id) not in chat.topics:
                raise HTTPException(400, "message thread not found")
            data["message_thread_id"] = int(thread_id)
            data["is_topic_message"] = True
        reply_id = payload.get("reply_to_message_id")
        if reply_id is None and thread_id is not None and int(thread_id) in chat.messages:
            # Like Telegram: a message in a topic replies to the topic's "created" message.
            reply_id = int(thread_id)
        if reply_id is not None:
            target = chat.messages.get(int(reply_id))
            if target is None:
                raise HTTPException(400, f"no message {reply_id} in this chat to reply to")
            data["reply_to_message"] = {
                k: v for k, v in target.data.items() if k != "reply_to_message"
            }
        data.update(content)
        message = _Message(data=data, seq=next(self._seq), outgoing=False, method="user")
        chat.messages[message.message_id] = message
        kind = "business_message" if business_connection_id else "message"
        update = self._next_update(bot, kind, data)
        self._emit(bot, update)
        return {"update_id": update["update_id"], "message_id": message.message_id}

    def _post_edit(
        self, bot: _BotState, chat: _Chat, user: dict[str, Any], payload: dict[str, Any]
    ) -> dict[str, Any]:
        message_id = payload.get("message_id")
        message = chat.messages.get(int(message_id)) if message_id is not None else None
        if message is None or message.deleted:
            raise HTTPException(400, "edit needs the message_id of a message in this chat")
        if message.outgoing or message.data.get("from", {}).get("id") != user["id"]:
            raise HTTPException(400, "a user can only edit their own messages")
        text = payload.get("text")
        if not text:
            raise HTTPException(400, "edit needs text")
        data = dict(message.data)
        data["caption" if "text" not in data else "text"] = text
        data.pop("entities", None)
        data["edit_date"] = _now()
        message.data = data
        message.edited = True
        kind = "edited_business_message" if chat.business_connection_id else "edited_message"
        update = self._next_update(bot, kind, data)
        self._emit(bot, update)
        return {"update_id": update["update_id"], "message_id": message.message_id}

    def _post_deletion(
        self, bot: _BotState, chat: _Chat, payload: dict[str, Any]
    ) -> dict[str, Any]:
        if not chat.business_connection_id:
            raise HTTPException(
                400, "bots learn of deletions only in business chats: pass business_connection_id"
            )
        ids = [int(i) for i in payload["delete_message_ids"]]
        for message_id in ids:
            if (message := chat.messages.get(message_id)) is not None:
                message.deleted = True
        body = {
            "business_connection_id": chat.business_connection_id,
            "chat": chat.as_dict(),
            "message_ids": ids,
        }
        update = self._next_update(bot, "deleted_business_messages", body)
        self._emit(bot, update)
        return {"update_id": update["update_id"]}

    @staticmethod
    def _buttons_data(message: _Message) -> list[str]:
        markup = message.data.get("reply_markup") or {}
        return [
            str(button["callback_data"])
            for row in markup.get("inline_keyboard", [])
            for button in row
            if "callback_data" in button
        ]

    def _post_callback(
        self, bot: _BotState, chat: _Chat, user: dict[str, Any], payload: dict[str, Any]
    ) -> dict[str, Any]:
        data = str(payload["callback_data"])
        message_id = payload.get("message_id")
        message: _Message | None
        if message_id is not None:
            message = chat.messages.get(int(message_id))
            if message is None or message.deleted or not message.outgoing:
                raise HTTPException(400, f"the bot has no message {message_id} in this chat")
            if data not in self._buttons_data(message):
                raise HTTPException(400, "that message has no button with this callback_data")
        else:
            candidates = [
                m
                for m in chat.messages.values()
                if m.outgoing and not m.deleted and data in self._buttons_data(m)
            ]
            if not candidates:
                raise HTTPException(400, "no message of the bot has a button with this data")
            message = max(candidates, key=lambda m: m.message_id)
        query_id = str(next(self._ids) * 1000003 + bot.id)
        instance = hashlib.sha256(f"{bot.id}:{chat.id}".encode()).hexdigest()[:16]
        body = {
            "id": query_id,
            "from": user,
            "message": message.data,
            "chat_instance": instance,
            "data": data,
        }
        bot.callback_queries[query_id] = {"answered": False, "data": data}
        update = self._next_update(bot, "callback_query", body)
        self._emit(bot, update)
        return {
            "update_id": update["update_id"],
            "callback_query_id": query_id,
            "message_id": message.message_id,
        }

    def _post_inline_query(self, bot: _BotState, payload: dict[str, Any]) -> dict[str, Any]:
        user = self._user(bot, payload)
        query_id = str(next(self._ids) * 1000003 + bot.id)
        body = {
            "id": query_id,
            "from": user,
            "query": str(payload["inline_query"]),
            "offset": "",
            "chat_type": "sender",
        }
        bot.inline_queries[query_id] = {"answered": False, "query": body["query"]}
        update = self._next_update(bot, "inline_query", body)
        self._emit(bot, update)
        return {"update_id": update["update_id"], "inline_query_id": query_id}

    async def connect_business(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A rep connects (or disconnects) the bot to their account: a business_connection."""
        bot = self._bot(str(payload.get("connection_id", "")))
        user_id = _control_int(payload, "user_id", required=True)
        assert user_id is not None
        business_connection_id = str(
            payload.get("business_connection_id") or f"BC{bot.id}x{next(self._ids)}"
        )
        user: dict[str, Any] = {
            "id": user_id,
            "is_bot": False,
            "first_name": payload.get("first_name") or "Rep",
        }
        for key in ("last_name", "username"):
            if payload.get(key):
                user[key] = payload[key]
        rights: dict[str, Any] = {}
        if payload.get("can_reply", True):
            rights["can_reply"] = True
            rights["can_read_messages"] = True
        connection = {
            "id": business_connection_id,
            "user": user,
            "user_chat_id": user_id,
            "date": _now(),
            "rights": rights,
            "is_enabled": bool(payload.get("enabled", True)),
        }
        bot.business_connections[business_connection_id] = connection
        update = self._next_update(bot, "business_connection", connection)
        self._emit(bot, update)
        return {"update_id": update["update_id"], "business_connection_id": business_connection_id}

    # ---- delivery --------------------------------------------------------------------------

    @staticmethod
    def _kind_of(update: dict[str, Any]) -> str:
        return next(k for k in update if k != "update_id")

    def _emit(self, bot: _BotState, update: dict[str, Any]) -> None:
        self._changed()
        bot.history.append(update)
        allowed = bot.webhook.allowed_updates if bot.webhook else bot.poll_allowed_updates
        kind = self._kind_of(update)
        if allowed:
            if kind not in allowed:
                return
        elif kind in _OPT_IN_UPDATES:
            return
        if bot.webhook is None:
            bot.pending.append(update)
            if bot.poll_signal is not None:
                bot.poll_signal.set()
            return
        self._enqueue_push(bot, update, copies=1 + self._duplicates)

    def _enqueue_push(self, bot: _BotState, update: dict[str, Any], *, copies: int) -> None:
        bot.outbox.extend([update] * copies)
        self._in_flight += copies
        if self._idle is not None:
            self._idle.clear()
        if bot.worker is None or bot.worker.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # wiring outside a loop: the next update starts the pusher
            bot.worker = loop.create_task(self._push_loop(bot))

    def _settle(self, count: int) -> None:
        self._in_flight = max(0, self._in_flight - count)
        if self._in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def _push_loop(self, bot: _BotState) -> None:
        # Telegram pushes one bot's updates one at a time; a slow receiver delays the rest.
        if self._shuffle:
            await asyncio.sleep(self.shuffle_window)  # let a burst land so it can be reordered
        while bot.outbox and bot.webhook is not None:
            if self._shuffle:
                bot.outbox.rotate(-self._rng.randrange(len(bot.outbox)))
            update = bot.outbox.popleft()
            try:
                await self._push(bot, update)
            finally:
                self._settle(1)
                self._changed()

    async def _push(self, bot: _BotState, update: dict[str, Any]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.webhook_timeout)
        body = json.dumps(update).encode()
        for delay in (0.0, *self.webhook_retry_delays):
            if delay:
                await asyncio.sleep(delay)
            hook = bot.webhook
            if hook is None:
                bot.pending.append(update)
                return
            headers = {"Content-Type": "application/json"}
            if hook.secret_token:
                headers[SECRET_HEADER] = hook.secret_token
            try:
                response = await self._client.post(hook.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                hook.last_error_date = _now()
                hook.last_error_message = f"Connection failed: {type(exc).__name__}"
                continue
            if 200 <= response.status_code < 300:
                await self._run_webhook_reply(bot, response)
                return
            hook.last_error_date = _now()
            hook.last_error_message = (
                f"Wrong response from the webhook: {response.status_code} {response.reason_phrase}"
            )
        logger.warning(
            "sandbox telegram: update %s of %s not delivered to its webhook",
            update["update_id"],
            bot.connection_id,
        )
        bot.failed_deliveries.append(update)

    async def _run_webhook_reply(self, bot: _BotState, response: httpx.Response) -> None:
        """A webhook may answer with a Bot API call: Telegram runs it."""
        if not response.headers.get("content-type", "").startswith("application/json"):
            return
        try:
            reply = response.json()
        except ValueError:
            return
        if isinstance(reply, dict) and isinstance(reply.get("method"), str):
            params = {k: v for k, v in reply.items() if k != "method"}
            status, body = await self.call_method(bot.token, reply["method"], params)
            if status != 200:
                logger.info(
                    "sandbox telegram: webhook reply %s failed: %s",
                    reply["method"],
                    body.get("description"),
                )

    async def drain(self, within: float = 30.0) -> None:
        """Wait (up to ``within`` seconds) until every pending webhook push was delivered."""
        if self._in_flight == 0:
            return
        if self._idle is None:
            self._idle = asyncio.Event()
        self._idle.clear()
        if self._in_flight == 0:
            return
        await asyncio.wait_for(self._idle.wait(), within)

    # ---- faults and delivery settings ------------------------------------------------------

    def add_fault(
        self,
        kind: str,
        count: int = 1,
        *,
        connection_id: str | None = None,
        retry_after: int = 1,
        delay: float = 1.0,
        status: int = 500,
        methods: Iterable[str] | None = None,
    ) -> None:
        """Make the next ``count`` matching bot calls fail (or answer late)."""
        if kind not in ("rate_limit", "server_error", "slow"):
            raise ValueError(f"unknown fault kind {kind!r}")
        if status not in (500, 502, 503, 504):
            raise ValueError("status must be a 5xx code")
        self._faults.append(
            _Fault(
                kind=kind,
                remaining=count,
                connection_id=connection_id,
                retry_after=retry_after,
                delay=delay,
                status=status,
                methods=frozenset(m.lower() for m in methods) if methods else None,
            )
        )

    def clear_faults(self) -> None:
        """Forget every injected fault."""
        self._faults.clear()

    def set_delivery(self, *, duplicates: int = 0, shuffle: bool = False) -> None:
        """Push every webhook update ``1 + duplicates`` times, optionally out of order."""
        self._duplicates = max(0, duplicates)
        self._shuffle = shuffle

    def reset(self, *, keep_bots: bool = True) -> None:
        """Forget chats, updates, faults and settings; registered bots stay unless asked."""
        for bot in self._bots.values():
            if bot.worker is not None:
                bot.worker.cancel()
        registered = [(b.connection_id, b.token, b.user["username"]) for b in self._bots.values()]
        self._bots.clear()
        self._by_token.clear()
        self._faults.clear()
        self._duplicates = 0
        self._shuffle = False
        self.enforce_limits = False
        self._in_flight = 0
        if self._idle is not None:
            self._idle.set()
        if keep_bots:
            for connection_id, token, username in registered:
                self.register_bot(connection_id, token, username)
        self._changed()

    async def aclose(self) -> None:
        """Stop pushing, save the state and close the HTTP client."""
        for bot in self._bots.values():
            if bot.worker is not None:
                bot.worker.cancel()
        self.save()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ---- inspection ------------------------------------------------------------------------

    def sent(self, connection_id: str, chat_id: int | None = None) -> list[dict[str, Any]]:
        """What the bot sent (latest state of each message), oldest first."""
        bot = self._bot(connection_id)
        rows: list[_Message] = [
            message
            for (_, cid), chat in bot.chats.items()
            if chat_id is None or cid == chat_id
            for message in chat.messages.values()
            if message.outgoing
        ]
        return [self._sent_entry(m) for m in sorted(rows, key=lambda m: m.seq)]

    @staticmethod
    def _sent_entry(message: _Message) -> dict[str, Any]:
        data = message.data
        entry: dict[str, Any] = {
            "message_id": message.message_id,
            "chat_id": data["chat"]["id"],
            "method": message.method,
            "reply_markup": message.reply_markup,
            "message_thread_id": data.get("message_thread_id"),
            "business_connection_id": data.get("business_connection_id"),
            "parse_mode": message.parse_mode,
            "reply_to_message_id": (data.get("reply_to_message") or {}).get("message_id"),
            "deleted": message.deleted,
            "edited": message.edited,
            "date": data["date"],
            "received_at": message.received_at,
        }
        if "text" in data:
            entry["text"] = data["text"]
        else:
            entry["caption"] = data.get("caption")
        for kind in _MEDIA_FIELDS:
            if kind in data:
                obj = data[kind][-1] if kind == "photo" else data[kind]
                entry["media"] = {
                    "kind": kind,
                    "file_id": obj["file_id"],
                    "file_name": obj.get("file_name"),
                    "mime_type": obj.get("mime_type"),
                    "file_size": obj.get("file_size"),
                }
        return entry

    def commands(self, connection_id: str) -> list[dict[str, Any]]:
        """The command lists the bot set, per scope and language."""
        bot = self._bot(connection_id)
        return [
            {"scope": json.loads(scope), "language_code": language, "commands": commands}
            for (scope, language), commands in sorted(bot.commands.items())
        ]

    def topics(self, connection_id: str, chat_id: int) -> list[dict[str, Any]]:
        """The forum topics of a chat, oldest first."""
        bot = self._bot(connection_id)
        chat = bot.chats.get(("", chat_id))
        if chat is None:
            return []
        return [dict(topic) for _, topic in sorted(chat.topics.items())]

    def callback_answers(self, connection_id: str) -> list[dict[str, Any]]:
        """Every answered callback query, oldest first."""
        return list(self._bot(connection_id).callback_answers)

    def updates(self, connection_id: str) -> list[dict[str, Any]]:
        """Every update the emulator built for the bot, oldest first."""
        return list(self._bot(connection_id).history)

    def state(self, connection_id: str) -> dict[str, Any]:
        """Everything else worth inspecting about a bot."""
        bot = self._bot(connection_id)
        hook = bot.webhook
        return {
            "bot": bot.user,
            "webhook": None
            if hook is None
            else {
                "url": hook.url,
                "has_secret": hook.secret_token is not None,
                "allowed_updates": hook.allowed_updates,
                "last_error_message": hook.last_error_message,
            },
            "pending_updates": len(bot.pending),
            "failed_deliveries": len(bot.failed_deliveries),
            "menu_buttons": [
                {"chat_id": chat_id, "menu_button": button}
                for chat_id, button in bot.menu_buttons.items()
            ],
            "callback_answers": bot.callback_answers,
            "inline_answers": bot.inline_answers,
            "chat_actions": bot.chat_actions,
            "business_connections": list(bot.business_connections.values()),
        }

    # ---- HTTP ------------------------------------------------------------------------------

    async def _read_params(
        self, request: Request
    ) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
        params: dict[str, Any] = dict(request.query_params)
        files: dict[str, UploadedFile] = {}
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            body = await request.body()
            if body:
                try:
                    loaded = json.loads(body)
                except ValueError:
                    raise TelegramApiError(400, "Bad Request: can't parse JSON") from None
                if not isinstance(loaded, dict):
                    raise TelegramApiError(400, "Bad Request: JSON body must be an object")
                params.update(loaded)
        elif content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            async with request.form() as form:  # closes the spooled upload files
                for key, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        files[key] = UploadedFile(
                            await value.read(), value.filename, value.content_type
                        )
                    else:
                        params[key] = value
        return params, files

    def _build_router(self) -> APIRouter:
        router = APIRouter()
        emulator = self

        @router.api_route(
            PREFIX + "/bot{token}/{method}", methods=["GET", "POST"], include_in_schema=False
        )
        async def bot_api(token: str, method: str, request: Request) -> Response:
            try:
                params, files = await emulator._read_params(request)
            except TelegramApiError as exc:
                return JSONResponse(exc.body(), status_code=exc.status)
            status, body = await emulator.call_method(token, method, params, files)
            return JSONResponse(body, status_code=status)

        @router.get(PREFIX + "/file/bot{token}/{file_path:path}", include_in_schema=False)
        async def download(token: str, file_path: str) -> Response:
            bot = emulator._by_token.get(token)
            if bot is None:
                return JSONResponse(TelegramApiError(401, "Unauthorized").body(), 401)
            for record in bot.files.values():
                if record.file_path == file_path:
                    return Response(
                        record.data, media_type=record.mime_type or "application/octet-stream"
                    )
            return JSONResponse(TelegramApiError(404, "Not Found").body(), 404)

        @router.post(PREFIX + "/bots")
        async def register(payload: dict[str, Any]) -> dict[str, Any]:
            try:
                return emulator.register_bot(
                    str(payload["connection_id"]), str(payload["token"]), payload.get("username")
                )
            except (KeyError, ValueError) as exc:
                raise HTTPException(400, f"connection_id and a valid token needed: {exc}") from None

        @router.post(PREFIX + "/chats")
        async def chats(payload: dict[str, Any]) -> dict[str, Any]:
            chat_id = _control_int(payload, "chat_id", required=True)
            assert chat_id is not None
            bot_rights = payload.get("bot_rights")
            if bot_rights is not None and not isinstance(bot_rights, dict):
                raise HTTPException(422, "bot_rights: must be an object of right names")
            return emulator.register_chat(
                str(payload.get("connection_id", "")),
                chat_id,
                chat_type=payload.get("type"),
                title=payload.get("title"),
                is_forum=payload.get("is_forum"),
                bot_status=payload.get("bot_status"),
                bot_rights=bot_rights,
                first_name=payload.get("first_name"),
                username=payload.get("username"),
            )

        @router.post(PREFIX + "/blocks")
        async def blocks(payload: dict[str, Any]) -> dict[str, bool]:
            user_id = _control_int(payload, "user_id", required=True)
            assert user_id is not None
            emulator.block_user(
                str(payload.get("connection_id", "")), user_id, bool(payload.get("blocked", True))
            )
            return {"ok": True}

        @router.post(PREFIX + "/updates")
        async def post_update(payload: dict[str, Any]) -> dict[str, Any]:
            return await emulator.post_update(payload)

        @router.get(PREFIX + "/updates")
        async def list_updates(connection_id: str) -> list[dict[str, Any]]:
            return emulator.updates(connection_id)

        @router.post(PREFIX + "/business_connections")
        async def business(payload: dict[str, Any]) -> dict[str, Any]:
            return await emulator.connect_business(payload)

        @router.get(PREFIX + "/sent")
        async def sent(connection_id: str, chat_id: int | None = None) -> list[dict[str, Any]]:
            return emulator.sent(connection_id, chat_id)

        @router.get(PREFIX + "/commands")
        async def commands(connection_id: str) -> list[dict[str, Any]]:
            return emulator.commands(connection_id)

        @router.get(PREFIX + "/topics")
        async def topics(connection_id: str, chat_id: int) -> list[dict[str, Any]]:
            return emulator.topics(connection_id, chat_id)

        @router.get(PREFIX + "/callback_answers")
        async def callback_answers(connection_id: str) -> list[dict[str, Any]]:
            return emulator.callback_answers(connection_id)

        @router.get(PREFIX + "/state")
        async def state(connection_id: str) -> dict[str, Any]:
            return emulator.state(connection_id)

        @router.post(PREFIX + "/faults")
        async def add_fault(payload: dict[str, Any]) -> dict[str, bool]:
            methods = payload.get("methods")
            if methods is not None and not (
                isinstance(methods, list) and all(isinstance(m, str) for m in methods)
            ):
                raise HTTPException(422, "methods: must be a list of method names")
            try:
                emulator.add_fault(
                    str(payload.get("kind")),
                    _control_int(payload, "count") or 1,
                    connection_id=None
                    if payload.get("connection_id") is None
                    else str(payload["connection_id"]),
                    retry_after=_control_int(payload, "retry_after") or 1,
                    delay=_control_float(payload, "delay") if "delay" in payload else 1.0,
                    status=_control_int(payload, "status") or 500,
                    methods=methods,
                )
            except ValueError as exc:
                raise HTTPException(400, str(exc)) from None
            return {"ok": True}

        @router.delete(PREFIX + "/faults")
        async def clear_faults() -> dict[str, bool]:
            emulator.clear_faults()
            return {"ok": True}

        @router.post(PREFIX + "/delivery")
        async def delivery(payload: dict[str, Any]) -> dict[str, bool]:
            emulator.set_delivery(
                duplicates=_control_int(payload, "duplicates") or 0,
                shuffle=bool(payload.get("shuffle", False)),
            )
            return {"ok": True}

        @router.post(PREFIX + "/limits")
        async def limits(payload: dict[str, Any]) -> dict[str, bool]:
            emulator.enforce_limits = bool(payload.get("enforce", True))
            return {"ok": True}

        @router.post(PREFIX + "/reset")
        async def reset(payload: dict[str, Any] | None = None) -> dict[str, bool]:
            emulator.reset(keep_bots=bool((payload or {}).get("keep_bots", True)))
            return {"ok": True}

        @router.post(PREFIX + "/drain")
        async def drain() -> dict[str, bool]:
            await emulator.drain()
            return {"ok": True}

        return router


def create_emulator_app(emulator: TelegramEmulator | None = None) -> FastAPI:
    """A standalone app serving the emulator (and its control API) at the root."""
    emulator = emulator or TelegramEmulator()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await emulator.aclose()

    app = FastAPI(title="Telegram Bot API sandbox", lifespan=lifespan)
    app.include_router(emulator.router)
    app.state.telegram_emulator = emulator
    return app
