"""What the emulator keeps per bot: chats, messages, files, the webhook, injected faults."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FileRecord:
    """A stored file: its ids, path and bytes (none for a file only known by URL)."""

    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    mime_type: str | None = None
    filename: str | None = None
    url: str | None = None


@dataclass
class Message:
    """A message in a chat, as the bot or a user sent it, with what the bot asked for."""

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
class Chat:
    """A chat the bot knows (private, group or a business chat), its messages and topics."""

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
    messages: dict[int, Message] = field(default_factory=dict)
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
class Webhook:
    """A bot's webhook settings and its last delivery error."""

    url: str
    secret_token: str | None
    allowed_updates: list[str] | None
    max_connections: int = 40
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class BotState:
    """Everything the emulator keeps for one registered bot."""

    connection_id: str
    token: str
    user: dict[str, Any]
    next_update_id: int = 1
    chats: dict[tuple[str, int], Chat] = field(default_factory=dict)
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    pending: deque[dict[str, Any]] = field(default_factory=deque)
    outbox: deque[dict[str, Any]] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None
    webhook: Webhook | None = None
    poll_allowed_updates: list[str] | None = None
    commands: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    menu_buttons: dict[int | None, dict[str, Any]] = field(default_factory=dict)
    callback_queries: dict[str, dict[str, Any]] = field(default_factory=dict)
    callback_answers: list[dict[str, Any]] = field(default_factory=list)
    inline_queries: dict[str, dict[str, Any]] = field(default_factory=dict)
    inline_answers: list[dict[str, Any]] = field(default_factory=list)
    chat_actions: list[dict[str, Any]] = field(default_factory=list)
    business_connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, FileRecord] = field(default_factory=dict)
    # Bounded: a sandbox left running for days must not grow without limit.
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10_000))
    failed_deliveries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1_000))
    send_times: dict[str, deque[float]] = field(default_factory=dict)
    poll_signal: asyncio.Event | None = None

    @property
    def id(self) -> int:
        return int(self.user["id"])


@dataclass
class Fault:
    """An injected fault: how many more matching calls it hits, and how."""

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
