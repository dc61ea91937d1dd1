"""What the emulator keeps: business numbers, templates, the outbox, media, faults."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from sandbox.whatsapp.wire import FaultKind

_PLACEHOLDER_RE = re.compile(r"\{\{(\d+)\}\}")


@dataclass(frozen=True)
class EmulatedConnection:
    """One business phone number registered with the emulator."""

    connection_id: str
    phone_id: str
    token: str
    app_secret: str
    webhook_url: str
    waba_id: str
    display_phone_number: str

    def public(self) -> dict[str, str]:
        """The fields that are safe to show (no token, no secret)."""
        return {
            "connection_id": self.connection_id,
            "phone_id": self.phone_id,
            "waba_id": self.waba_id,
            "display_phone_number": self.display_phone_number,
            "webhook_url": self.webhook_url,
        }


@dataclass(frozen=True)
class Template:
    """An approved message template; ``body`` holds ``{{1}}``-style placeholders."""

    name: str
    language: str
    body: str
    category: str = "utility"

    @property
    def param_count(self) -> int:
        """How many body parameters a send must supply."""
        return len(set(_PLACEHOLDER_RE.findall(self.body)))

    def render(self, params: list[str]) -> str:
        """The body with its placeholders filled."""
        return _PLACEHOLDER_RE.sub(lambda m: params[int(m.group(1)) - 1], self.body)


DEFAULT_TEMPLATES = (
    Template("hello_world", "en_US", "Hello World"),
    Template("follow_up", "en", "Hi {{1}}, just following up on our conversation."),
)


@dataclass
class OutboxEntry:
    """A message the business sent, as the emulator accepted it."""

    id: str
    connection_id: str
    phone_id: str
    to: str
    type: str
    text: str
    created_at: dt.datetime
    payload: dict[str, Any]
    template: dict[str, Any] | None = None
    media: dict[str, Any] | None = None
    buttons: list[str] = field(default_factory=list)
    reply_to: str | None = None
    status: str = "accepted"
    statuses: list[str] = field(default_factory=list)
    category: str = "service"

    def to_json(self) -> dict[str, Any]:
        """The outbox API's view of the entry."""
        return {
            "id": self.id,
            "connection_id": self.connection_id,
            "phone_id": self.phone_id,
            "to": self.to,
            "type": self.type,
            "text": self.text,
            "template": self.template,
            "media": self.media,
            "buttons": self.buttons,
            "reply_to": self.reply_to,
            "status": self.status,
            "statuses": self.statuses,
            "created_at": self.created_at.isoformat(),
            "payload": self.payload,
        }


@dataclass(frozen=True)
class StoredMedia:
    """An uploaded (or lead-sent) media file."""

    id: str
    phone_id: str
    data: bytes
    mime_type: str
    filename: str | None

    @property
    def sha256_hex(self) -> str:
        """Hex digest, as the media URL endpoint reports it."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def sha256_b64(self) -> str:
        """Base64 digest, as webhooks report it."""
        return base64.b64encode(hashlib.sha256(self.data).digest()).decode()


@dataclass
class Fault:
    """An injected fault of the next send calls."""

    kind: FaultKind
    remaining: int
    connection_id: str | None
    delay: float
    status: int


@dataclass
class Push:
    """One webhook body waiting for delivery (``done`` resolves when it was tried)."""

    connection: EmulatedConnection
    body: bytes
    done: asyncio.Future[bool] | None = None


@dataclass(frozen=True)
class Delivery:
    """One webhook push, after its last attempt."""

    connection_id: str
    url: str
    body: bytes
    status_code: int | None
    attempts: int
    ok: bool
    error: str | None = None
