"""A local WhatsApp Cloud API (DESIGN section 6): Graph endpoints, signed webhooks, control API.

pywa talks to it unchanged: its requests to ``https://graph.facebook.com/v22.0/...`` are sent to
``http://HOST:PORT/sandbox/graph/v22.0/...`` instead (the adapter's transport does the rewrite).
The emulator answers in Meta's wire format, errors included, and pushes webhooks signed with the
connection's app secret, the way Meta does: from the background, retried when the receiver is
down, optionally duplicated or shuffled. The ``/sandbox/whatsapp/...`` control API plays the lead
(inbound messages, marketing opt-out) and shows what the business sent (the outbox). With a
``state_path`` the numbers, the outbox, the media and each lead's 24-hour window survive a restart.

This module imports nothing from ``channels.whatsapp``: it is the other side of the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import collections
import datetime as dt
import hashlib
import hmac
import json
import logging
import random
import re
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from channels.sandbox.persist import StateFile

logger = logging.getLogger(__name__)

GRAPH_PREFIX = "/sandbox/graph"
CONTROL_PREFIX = "/sandbox/whatsapp"
WINDOW = dt.timedelta(hours=24)
MEDIA_TYPES = ("image", "document", "audio", "video", "sticker")
FREE_FORM_TYPES = (*MEDIA_TYPES, "text", "interactive", "reaction", "location")
_VERSION_RE = re.compile(r"^v\d+(\.\d+)?$")
_PLACEHOLDER_RE = re.compile(r"\{\{(\d+)\}\}")
_DEFAULT_MIME = {
    "image": "image/jpeg",
    "document": "application/pdf",
    "audio": "audio/mpeg",
    "voice": "audio/ogg; codecs=opus",
    "video": "video/mp4",
    "sticker": "image/webp",
}
# How many of the latest outbox entries survive a restart.
PERSISTED_OUTBOX = 5000
FaultKind = Literal["rate_limit", "pair_rate_limit", "server_error", "slow"]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_wamid() -> str:
    # Real ids are base64 of an opaque binary blob, prefixed with "wamid.".
    return "wamid." + base64.b64encode(secrets.token_bytes(30)).decode()


def _new_numeric_id() -> str:
    # pywa tells a media id from a path or URL by it being all digits, like Meta's ids.
    return str(secrets.randbelow(9 * 10**15) + 10**15)


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


# A business-scoped user id ("US.1349...", parent "US.ENT.1181..."): a lead with a username.
_USER_ID_RE = re.compile(r"^[A-Z]{2}\.(ENT\.)?\d+$")


def _lead_id(value: str) -> str:
    """A lead's key: a user id as is, a phone number as its digits (the wa_id)."""
    return value.strip() if _USER_ID_RE.match(value.strip()) else _digits(value)


def sign_body(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` header value Meta sends with ``body``."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class GraphError(Exception):
    """An error answered in the Graph API's shape."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        details: str | None = None,
        *,
        subcode: int | None = None,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or message
        self.subcode = subcode
        self.transient = transient

    def response(self) -> JSONResponse:
        """The JSON response Meta would give."""
        error: dict[str, Any] = {
            "message": self.message,
            "type": "OAuthException",
            "code": self.code,
            "error_data": {"messaging_product": "whatsapp", "details": self.details},
            "fbtrace_id": "A" + secrets.token_urlsafe(16),
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.transient is not None:
            error["is_transient"] = self.transient
        return JSONResponse({"error": error}, status_code=self.status)


def _invalid(details: str) -> GraphError:
    return GraphError(400, 100, "(#100) Invalid parameter", details)


def _no_object(object_id: str, method: str) -> GraphError:
    return GraphError(
        400,
        100,
        f"Unsupported {method} request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation.",
        subcode=33,
    )


def _unauthorized() -> GraphError:
    return GraphError(401, 190, "Invalid OAuth access token - Cannot parse access token")


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
class _Fault:
    kind: FaultKind
    remaining: int
    connection_id: str | None
    delay: float
    status: int


@dataclass
class _Push:
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


class ConnectionIn(BaseModel):
    """``POST /sandbox/whatsapp/connections``."""

    connection_id: str | int
    phone_id: str | int
    token: str
    app_secret: str
    webhook_url: str
    waba_id: str | int | None = None
    display_phone_number: str | None = None


class InboundIn(BaseModel):
    """``POST /sandbox/whatsapp/inbound``: what the lead does."""

    model_config = ConfigDict(populate_by_name=True)

    connection_id: str | int
    from_: str | int = Field(alias="from")
    name: str = ""
    text: str = ""
    type: str = "text"
    media_base64: str | None = None
    mime_type: str | None = None
    filename: str | None = None
    reply_to: str | None = None
    button_payload: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    emoji: str | None = None
    message_id: str | None = None
    marketing: Literal["stop", "resume"] | None = None


class FaultIn(BaseModel):
    """``POST /sandbox/whatsapp/faults``."""

    connection_id: str | int | None = None
    kind: FaultKind
    count: int = Field(default=1, ge=1)
    delay: float = Field(default=1.0, ge=0)
    status: Literal[500, 503] = 500


class DeliveryIn(BaseModel):
    """``POST /sandbox/whatsapp/delivery``: how webhooks reach the service."""

    duplicates: int = Field(default=1, ge=1, le=10)
    shuffle: bool = False
    auto_read: bool | None = None
    status_before_response: bool | None = None


class TemplateIn(BaseModel):
    """``POST /sandbox/whatsapp/templates``."""

    name: str
    language: str
    body: str
    category: str = "utility"


class WhatsAppEmulator:
    """In-memory WhatsApp Cloud API; ``router`` serves it over HTTP (mount at the root)."""

    def __init__(
        self,
        *,
        auto_read: bool = True,
        status_before_response: bool = False,
        status_delay: float = 0.0,
        push_attempts: int = 4,
        retry_backoff: float = 0.2,
        shuffle_window: float = 0.05,
        push_timeout: float = 10.0,
        rng: random.Random | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
        state_path: Path | None = None,
    ) -> None:
        """With ``state_path`` the state is loaded from that file and saved to it as it changes."""
        self.auto_read = auto_read
        self.status_before_response = status_before_response
        self.status_delay = status_delay
        self.push_attempts = push_attempts
        self.retry_backoff = retry_backoff
        self.shuffle_window = shuffle_window
        self.push_timeout = push_timeout
        self.drain_timeout = 30.0
        self.rng = rng or random.Random()
        self.clock = clock
        self.duplicates = 1
        self.shuffle = False
        self.connections: dict[str, EmulatedConnection] = {}
        self.templates: dict[tuple[str, str], Template] = {}
        self.deliveries: list[Delivery] = []
        self.read_marks: list[str] = []
        self._outbox: list[OutboxEntry] = []
        self._media: dict[str, StoredMedia] = {}
        self._last_inbound: dict[tuple[str, str], dt.datetime] = {}
        self._conversations: dict[tuple[str, str], tuple[str, dt.datetime]] = {}
        self._faults: list[_Fault] = []
        self._queues: dict[str, collections.deque[_Push]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._progress: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self._reset_state()
        self._state = StateFile(state_path, self._snapshot) if state_path is not None else None
        if self._state is not None and (saved := self._state.load()) is not None:
            self._restore(saved)
        self.router = self._build_router()

    # -- persistence ---------------------------------------------------------------------------

    def _changed(self) -> None:
        if self._state is not None:
            self._state.changed()

    def save(self) -> None:
        """Write the state file now (no-op without a ``state_path``)."""
        if self._state is not None:
            self._state.save()

    def _snapshot(self) -> dict[str, Any]:
        assert self._state is not None
        for stored in self._media.values():
            self._state.put_blob(stored.id, stored.data)
        return {
            "connections": [asdict(c) for c in self.connections.values()],
            "templates": [asdict(t) for t in self.templates.values()],
            # The latest sends only: what the sandbox page shows of each lead's thread.
            "outbox": [
                {**e.to_json(), "category": e.category} for e in self._outbox[-PERSISTED_OUTBOX:]
            ],
            "media": [
                {
                    "id": m.id,
                    "phone_id": m.phone_id,
                    "mime_type": m.mime_type,
                    "filename": m.filename,
                }
                for m in self._media.values()
            ],
            "last_inbound": [[*key, at.isoformat()] for key, at in self._last_inbound.items()],
            "conversations": [
                [*key, conversation_id, expires.isoformat()]
                for key, (conversation_id, expires) in self._conversations.items()
            ],
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        assert self._state is not None
        for raw in saved.get("connections", []):
            connection = EmulatedConnection(**raw)
            self.connections[connection.connection_id] = connection
        for raw in saved.get("templates", []):
            template = Template(**raw)
            self.templates[(template.name, template.language)] = template
        for raw in saved.get("outbox", []):
            fields = {k: v for k, v in raw.items() if k != "created_at"}
            self._outbox.append(
                OutboxEntry(**fields, created_at=dt.datetime.fromisoformat(raw["created_at"]))
            )
        for raw in saved.get("media", []):
            data = self._state.get_blob(raw["id"])
            if data is not None:
                self._media[raw["id"]] = StoredMedia(data=data, **raw)
        for phone_id, wa_id, at in saved.get("last_inbound", []):
            self._last_inbound[(phone_id, wa_id)] = dt.datetime.fromisoformat(at)
        for phone_id, wa_id, conversation_id, expires in saved.get("conversations", []):
            self._conversations[(phone_id, wa_id)] = (
                conversation_id,
                dt.datetime.fromisoformat(expires),
            )

    # -- state ---------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        self.duplicates = 1
        self.shuffle = False
        self.connections.clear()
        self.templates = {(t.name, t.language): t for t in DEFAULT_TEMPLATES}
        self.deliveries.clear()
        self.read_marks.clear()
        self._outbox.clear()
        self._media.clear()
        self._last_inbound.clear()
        self._conversations.clear()
        self._faults.clear()

    async def _stop_pushing(self) -> None:
        tasks = [*self._workers.values(), *self._progress]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        self._progress.clear()
        self._queues.clear()

    async def reset(self) -> None:
        """Forget everything: connections, outbox, media, faults, pending pushes."""
        await self._stop_pushing()
        self._reset_state()
        self._changed()

    async def aclose(self) -> None:
        """Stop pushing, save the state and close the HTTP client."""
        await self._stop_pushing()
        self.save()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def register_connection(
        self,
        connection_id: str,
        phone_id: str,
        token: str,
        app_secret: str,
        webhook_url: str,
        waba_id: str | None = None,
        display_phone_number: str | None = None,
    ) -> EmulatedConnection:
        """Add (or replace) a business number whose webhooks go to ``webhook_url``."""
        phone_id = str(phone_id)
        connection = EmulatedConnection(
            connection_id=str(connection_id),
            phone_id=phone_id,
            token=token,
            app_secret=app_secret,
            webhook_url=webhook_url,
            waba_id=str(waba_id) if waba_id is not None else "10" + _digits(phone_id),
            display_phone_number=display_phone_number or "1555" + _digits(phone_id)[-7:],
        )
        self.connections[connection.connection_id] = connection
        self._changed()
        return connection

    def add_template(
        self, name: str, language: str, body: str, category: str = "utility"
    ) -> Template:
        """Approve a template; its parameter count is the number of ``{{n}}`` in ``body``."""
        template = Template(name, language, body, category)
        self.templates[(name, language)] = template
        self._changed()
        return template

    def set_last_inbound(self, connection_id: str, wa_id: str, at: dt.datetime | None) -> None:
        """Pretend the lead last wrote at ``at`` (None closes the 24-hour window)."""
        key = (self._connection(connection_id).phone_id, _lead_id(wa_id))
        if at is None:
            self._last_inbound.pop(key, None)
        else:
            self._last_inbound[key] = at
        self._changed()

    def add_fault(
        self,
        kind: FaultKind,
        count: int = 1,
        *,
        connection_id: str | None = None,
        delay: float = 1.0,
        status: int = 500,
    ) -> None:
        """Make the next ``count`` send calls fail (or, for ``slow``, answer after ``delay``)."""
        self._faults.append(
            _Fault(kind, count, str(connection_id) if connection_id else None, delay, status)
        )

    def clear_faults(self) -> None:
        """Sends succeed again."""
        self._faults.clear()

    def configure_delivery(self, *, duplicates: int = 1, shuffle: bool = False) -> None:
        """Deliver every push ``duplicates`` times; with ``shuffle``, in random order."""
        self.duplicates = max(1, duplicates)
        self.shuffle = shuffle

    def outbox(self, to: str | None = None, connection_id: str | None = None) -> list[OutboxEntry]:
        """What the business sent, oldest first, optionally for one lead or connection."""
        wa_id = _lead_id(to) if to else None
        return [
            e
            for e in self._outbox
            if (wa_id is None or e.to == wa_id)
            and (connection_id is None or e.connection_id == str(connection_id))
        ]

    def media_bytes(self, media_id: str) -> bytes:
        """The stored bytes of a media id (KeyError when unknown)."""
        return self._media[media_id].data

    def _connection(self, connection_id: str | int) -> EmulatedConnection:
        try:
            return self.connections[str(connection_id)]
        except KeyError:
            raise KeyError(f"unknown connection {connection_id}") from None

    def _by_phone(self, phone_id: str) -> EmulatedConnection | None:
        # The most recent registration of a phone id wins, like re-pointing a webhook.
        found = None
        for connection in self.connections.values():
            if connection.phone_id == phone_id:
                found = connection
        return found

    @staticmethod
    def _check_token(request: Request, connection: EmulatedConnection) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), connection.token.encode()
        ):
            raise _unauthorized()

    # -- the lead's side -----------------------------------------------------------------------

    async def inbound(
        self,
        connection_id: str,
        from_: str,
        text: str = "",
        *,
        name: str = "",
        kind: str = "text",
        media: bytes | None = None,
        mime_type: str | None = None,
        filename: str | None = None,
        reply_to: str | None = None,
        button_payload: str | None = None,
        latitude: float | None = None,
        longitude: float | None = None,
        emoji: str | None = None,
        message_id: str | None = None,
    ) -> str:
        """The lead ``from_`` sends a message; its webhook is pushed; returns its wamid.

        ``from_`` is a phone number, or a business-scoped user id (``US.1349...``) for a lead
        who shows only a username: then the push names them by ``from_user_id`` alone.
        """
        connection = self._connection(connection_id)
        wa_id = _lead_id(str(from_))
        now = self.clock()
        wamid = _new_wamid()
        by_user_id = bool(_USER_ID_RE.match(wa_id))
        message: dict[str, Any] = {
            "from_user_id" if by_user_id else "from": wa_id,
            "id": wamid,
            "timestamp": str(int(now.timestamp())),
        }
        if reply_to:
            message["context"] = {"from": connection.display_phone_number, "id": reply_to}
        message.update(
            self._inbound_content(
                connection,
                kind,
                text=text,
                media=media,
                mime_type=mime_type,
                filename=filename,
                button_payload=button_payload,
                latitude=latitude,
                longitude=longitude,
                emoji=emoji,
                message_id=message_id,
            )
        )
        self._last_inbound[(connection.phone_id, wa_id)] = now
        self._changed()
        value = self._value(connection)
        if by_user_id:
            profile = {"name": name or wa_id, "username": f"@{wa_id.split('.')[-1][-8:]}"}
            value["contacts"] = [{"profile": profile, "user_id": wa_id}]
        else:
            value["contacts"] = [{"profile": {"name": name or wa_id}, "wa_id": wa_id}]
        value["messages"] = [message]
        self._enqueue(connection, self._envelope(connection, value, "messages"))
        return wamid

    async def marketing_preference(
        self, connection_id: str, wa_id: str, *, stop: bool, name: str = ""
    ) -> None:
        """The lead stops (or resumes) marketing messages: a ``user_preferences`` push."""
        connection = self._connection(connection_id)
        wa_id = _digits(wa_id)
        verb = "stop" if stop else "resume"
        value = self._value(connection)
        value["contacts"] = [{"profile": {"name": name or wa_id}, "wa_id": wa_id}]
        value["user_preferences"] = [
            {
                "wa_id": wa_id,
                "detail": f"User requested to {verb} marketing messages",
                "category": "marketing_messages",
                "value": verb,
                "timestamp": int(self.clock().timestamp()),
            }
        ]
        self._enqueue(connection, self._envelope(connection, value, "user_preferences"))

    def _inbound_content(
        self,
        connection: EmulatedConnection,
        kind: str,
        *,
        text: str,
        media: bytes | None,
        mime_type: str | None,
        filename: str | None,
        button_payload: str | None,
        latitude: float | None,
        longitude: float | None,
        emoji: str | None,
        message_id: str | None,
    ) -> dict[str, Any]:
        if kind == "text":
            return {"type": "text", "text": {"body": text}}
        if kind in (*MEDIA_TYPES, "voice"):
            if media is None:
                raise ValueError(f"a {kind} message needs media bytes")
            wire = "audio" if kind == "voice" else kind
            stored = StoredMedia(
                id=_new_numeric_id(),
                phone_id=connection.phone_id,
                data=media,
                mime_type=mime_type or _DEFAULT_MIME[kind],
                filename=filename,
            )
            self._media[stored.id] = stored
            content: dict[str, Any] = {
                "mime_type": stored.mime_type,
                "sha256": stored.sha256_b64,
                "id": stored.id,
            }
            if text and wire in ("image", "video", "document"):
                content["caption"] = text
            if wire == "document":
                content["filename"] = filename or "file"
            if wire == "audio":
                content["voice"] = kind == "voice"
            if wire == "sticker":
                content["animated"] = False
            return {"type": wire, wire: content}
        if kind == "location":
            if latitude is None or longitude is None:
                raise ValueError("a location needs latitude and longitude")
            location: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
            if text:
                location["name"] = text
            return {"type": "location", "location": location}
        if kind == "button":
            return {"type": "button", "button": {"payload": button_payload or text, "text": text}}
        if kind in ("interactive", "button_reply", "list_reply"):
            sub = "list_reply" if kind == "list_reply" else "button_reply"
            reply = {"id": button_payload or text, "title": text}
            return {"type": "interactive", "interactive": {"type": sub, sub: reply}}
        if kind == "reaction":
            if not message_id:
                raise ValueError("a reaction needs the message_id it reacts to")
            return {
                "type": "reaction",
                "reaction": {"message_id": message_id, "emoji": emoji or ""},
            }
        raise ValueError(f"unsupported inbound type {kind!r}")

    # -- the business's side: Graph endpoints --------------------------------------------------

    async def _send(self, request: Request, version: str, phone_id: str) -> Response:
        connection = self._graph_connection(request, version, phone_id)
        body = await _json_body(request)
        if body.get("status") == "read":
            # Mark-as-read (and typing indicators) share the messages endpoint.
            message_id = body.get("message_id")
            if not isinstance(message_id, str) or not message_id:
                raise _invalid("The parameter message_id is required.")
            self.read_marks.append(message_id)
            return JSONResponse({"success": True})
        await self._apply_faults(connection)
        if body.get("messaging_product") != "whatsapp":
            raise _invalid("The parameter messaging_product is required.")
        raw_to = body.get("to") or body.get("recipient")
        if not isinstance(raw_to, str | int) or not _digits(str(raw_to)):
            raise _invalid("The parameter to is required.")
        to = _lead_id(str(raw_to))
        kind = body.get("type", "text")
        if kind != "template" and kind not in FREE_FORM_TYPES:
            raise _invalid(f"Param type must be one of {{{', '.join(FREE_FORM_TYPES)}, template}}")
        content = body.get(kind)
        if not isinstance(content, dict):
            raise _invalid(f"The parameter {kind} is required.")
        entry = OutboxEntry(
            id=_new_wamid(),
            connection_id=connection.connection_id,
            phone_id=connection.phone_id,
            to=to,
            type=kind,
            text="",
            created_at=self.clock(),
            payload=body,
        )
        context = body.get("context")
        if isinstance(context, dict):
            entry.reply_to = context.get("message_id")
        self._render(connection, kind, content, entry)
        if kind != "template":
            self._check_window(connection, to)
        self._outbox.append(entry)
        self._changed()
        answer: dict[str, Any] = {"id": entry.id}
        if kind == "template":
            answer["message_status"] = "accepted"
        if self.status_before_response:
            # The service must cope with a receipt for an id it has not been told yet.
            done = self._push_status(connection, entry, "sent", wait=True)
            assert done is not None
            try:
                await asyncio.wait_for(asyncio.shield(done), timeout=self.push_timeout * 3)
            except TimeoutError:
                logger.warning("the early 'sent' status for %s is still pending", entry.id)
            self._progress_statuses(connection, entry, ("delivered", "read"))
        else:
            self._progress_statuses(connection, entry, ("sent", "delivered", "read"))
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [
                    {"input": str(raw_to), "user_id" if _USER_ID_RE.match(to) else "wa_id": to}
                ],
                "messages": [answer],
            }
        )

    def _graph_connection(
        self, request: Request, version: str, phone_id: str
    ) -> EmulatedConnection:
        if not _VERSION_RE.match(version):
            raise GraphError(400, 2500, "Unknown path components: /" + version)
        connection = self._by_phone(phone_id)
        if connection is None:
            raise _no_object(phone_id, request.method.lower())
        self._check_token(request, connection)
        return connection

    async def _apply_faults(self, connection: EmulatedConnection) -> None:
        for fault in self._faults:
            if fault.remaining <= 0 or fault.connection_id not in (None, connection.connection_id):
                continue
            fault.remaining -= 1
            if fault.kind == "slow":
                await asyncio.sleep(fault.delay)
                return
            if fault.kind == "rate_limit":
                raise GraphError(
                    400,
                    130429,
                    "(#130429) Rate limit hit",
                    "Cloud API message throughput has been reached.",
                )
            if fault.kind == "pair_rate_limit":
                raise GraphError(
                    400,
                    131056,
                    "(#131056) (Business Account, Consumer Account) pair rate limit hit",
                    "Too many messages sent from the sender phone number to the same recipient "
                    "phone number in a short period of time.",
                )
            if fault.status == 503:
                raise GraphError(503, 2, "Service temporarily unavailable", transient=True)
            raise GraphError(500, 1, "An unknown error has occurred.", transient=True)

    def _check_window(self, connection: EmulatedConnection, to: str) -> None:
        last = self._last_inbound.get((connection.phone_id, to))
        if last is None or self.clock() - last > WINDOW:
            raise GraphError(
                400,
                131047,
                "(#131047) Re-engagement message",
                "Message failed to send because more than 24 hours have passed since the "
                "customer last replied to this number.",
            )

    def _render(
        self,
        connection: EmulatedConnection,
        kind: str,
        content: dict[str, Any],
        entry: OutboxEntry,
    ) -> None:
        if kind == "text":
            text = content.get("body")
            if not isinstance(text, str) or not text:
                raise _invalid("The parameter text['body'] is required.")
            if len(text) > 4096:
                raise _invalid("Param text['body'] must be at most 4096 characters long.")
            entry.text = text
        elif kind in MEDIA_TYPES:
            entry.media = self._render_media(connection, kind, content)
            entry.text = str(content.get("caption") or "")
        elif kind == "template":
            self._render_template(content, entry)
        elif kind == "interactive":
            self._render_interactive(content, entry)
        elif kind == "reaction":
            if not content.get("message_id"):
                raise _invalid("The parameter reaction['message_id'] is required.")
            entry.text = str(content.get("emoji") or "")
        elif kind == "location":
            entry.text = str(
                content.get("name") or f"{content.get('latitude')},{content.get('longitude')}"
            )

    def _render_media(
        self, connection: EmulatedConnection, kind: str, content: dict[str, Any]
    ) -> dict[str, Any]:
        media_id, link = content.get("id"), content.get("link")
        if bool(media_id) == bool(link):
            raise _invalid(f"Exactly one of {kind}['id'] or {kind}['link'] is required.")
        if media_id:
            stored = self._media.get(str(media_id))
            if stored is None or stored.phone_id != connection.phone_id:
                raise _invalid(
                    f"Param {kind}['id'] is not a valid whatsapp business account media "
                    "attachment ID"
                )
            return {
                "id": stored.id,
                "mime_type": stored.mime_type,
                "filename": content.get("filename") or stored.filename,
                "size": len(stored.data),
            }
        return {"link": link, "filename": content.get("filename")}

    def _render_template(self, content: dict[str, Any], entry: OutboxEntry) -> None:
        name = content.get("name")
        language = (content.get("language") or {}).get("code")
        if not isinstance(name, str) or not isinstance(language, str):
            raise _invalid("The parameters template['name'] and template['language'] are required.")
        template = self.templates.get((name, language))
        if template is None:
            raise GraphError(
                400,
                132001,
                "(#132001) Template name does not exist in the translation",
                f"template name ({name}) does not exist in {language}",
            )
        params: list[str] = []
        for component in content.get("components") or []:
            if isinstance(component, dict) and component.get("type") == "body":
                for parameter in component.get("parameters") or []:
                    params.append(str(parameter.get("text", "")))
        if len(params) != template.param_count:
            raise GraphError(
                400,
                132000,
                "(#132000) Number of parameters does not match the expected number of params",
                f"body: number of localizable_params ({len(params)}) does not match the "
                f"expected number of params ({template.param_count})",
            )
        entry.text = template.render(params)
        entry.template = {"name": name, "language": language, "params": params}
        entry.category = template.category

    @staticmethod
    def _render_interactive(content: dict[str, Any], entry: OutboxEntry) -> None:
        body = (content.get("body") or {}).get("text")
        sub = content.get("type")
        action = content.get("action") or {}
        if not isinstance(body, str) or not body:
            raise _invalid("The parameter interactive['body']['text'] is required.")
        if sub == "button":
            buttons = action.get("buttons") or []
            if not 1 <= len(buttons) <= 3:
                raise GraphError(
                    400,
                    131009,
                    "(#131009) Parameter value is not valid",
                    "Buttons count invalid. Min: 1, Max: 3",
                )
            titles = [str((b.get("reply") or {}).get("title", "")) for b in buttons]
            if any(not 1 <= len(t) <= 20 for t in titles):
                raise GraphError(
                    400,
                    131009,
                    "(#131009) Parameter value is not valid",
                    "Button title length invalid. Min length: 1, Max length: 20",
                )
            entry.buttons = titles
        elif sub == "list":
            rows = [r for s in action.get("sections") or [] for r in s.get("rows") or []]
            if not 1 <= len(rows) <= 10:
                raise GraphError(
                    400,
                    131009,
                    "(#131009) Parameter value is not valid",
                    "Total row count exceed max allowed count: 10",
                )
            entry.buttons = [str(r.get("title", "")) for r in rows]
        entry.text = body

    async def _upload(self, request: Request, version: str, phone_id: str) -> Response:
        connection = self._graph_connection(request, version, phone_id)
        form = await request.form()
        if form.get("messaging_product") != "whatsapp":
            raise _invalid("The parameter messaging_product is required.")
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise _invalid("The parameter file is required.")
        declared = form.get("type")
        mime_type = declared if isinstance(declared, str) and declared else upload.content_type
        stored = StoredMedia(
            id=_new_numeric_id(),
            phone_id=connection.phone_id,
            data=await upload.read(),
            mime_type=mime_type or "application/octet-stream",
            filename=upload.filename,
        )
        self._media[stored.id] = stored
        self._changed()
        return JSONResponse({"id": stored.id})

    def _owned_media(self, request: Request, media_id: str, method: str) -> StoredMedia:
        stored = self._media.get(media_id)
        if stored is None:
            raise _no_object(media_id, method)
        owner = self._by_phone(stored.phone_id)
        if owner is None:
            raise _no_object(media_id, method)
        self._check_token(request, owner)
        return stored

    # -- webhook pushes ------------------------------------------------------------------------

    @staticmethod
    def _value(connection: EmulatedConnection) -> dict[str, Any]:
        return {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": connection.display_phone_number,
                "phone_number_id": connection.phone_id,
            },
        }

    @staticmethod
    def _envelope(
        connection: EmulatedConnection, value: dict[str, Any], field_name: str
    ) -> dict[str, Any]:
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {"id": connection.waba_id, "changes": [{"value": value, "field": field_name}]}
            ],
        }

    def _conversation(self, entry: OutboxEntry) -> tuple[str, dt.datetime]:
        key = (entry.phone_id, entry.to)
        now = self.clock()
        current = self._conversations.get(key)
        if current is None or current[1] <= now:
            current = (secrets.token_hex(16), now + WINDOW)
            self._conversations[key] = current
        return current

    def _push_status(
        self, connection: EmulatedConnection, entry: OutboxEntry, status: str, *, wait: bool = False
    ) -> asyncio.Future[bool] | None:
        now = self.clock()
        receipt: dict[str, Any] = {
            "id": entry.id,
            "status": status,
            "timestamp": str(int(now.timestamp())),
        }
        receipt["recipient_user_id" if _USER_ID_RE.match(entry.to) else "recipient_id"] = entry.to
        tracker = entry.payload.get("biz_opaque_callback_data")
        if isinstance(tracker, str) and tracker:
            receipt["biz_opaque_callback_data"] = tracker
        if status != "read":
            conversation_id, expires = self._conversation(entry)
            conversation: dict[str, Any] = {
                "id": conversation_id,
                "origin": {"type": entry.category},
            }
            if status == "sent":
                conversation["expiration_timestamp"] = str(int(expires.timestamp()))
            receipt["conversation"] = conversation
            receipt["pricing"] = {
                "billable": True,
                "pricing_model": "CBP",
                "category": entry.category,
            }
        entry.status = status
        entry.statuses.append(status)
        self._changed()
        value = self._value(connection)
        value["statuses"] = [receipt]
        return self._enqueue(connection, self._envelope(connection, value, "messages"), wait=wait)

    def _progress_statuses(
        self, connection: EmulatedConnection, entry: OutboxEntry, steps: tuple[str, ...]
    ) -> None:
        steps = tuple(s for s in steps if s != "read" or self.auto_read)
        if self.status_delay <= 0:
            for status in steps:
                self._push_status(connection, entry, status)
            return

        async def walk() -> None:
            for status in steps:
                await asyncio.sleep(self.status_delay)
                self._push_status(connection, entry, status)

        task = asyncio.create_task(walk())
        self._progress.add(task)
        task.add_done_callback(self._progress.discard)

    def _enqueue(
        self, connection: EmulatedConnection, payload: dict[str, Any], *, wait: bool = False
    ) -> asyncio.Future[bool] | None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        done: asyncio.Future[bool] | None = (
            asyncio.get_running_loop().create_future() if wait else None
        )
        queue = self._queues.setdefault(connection.connection_id, collections.deque())
        for _ in range(self.duplicates):
            queue.append(_Push(connection, body, done))
        if connection.connection_id not in self._workers:
            task = asyncio.create_task(self._run_worker(connection.connection_id))
            self._workers[connection.connection_id] = task
        return done

    async def _run_worker(self, connection_id: str) -> None:
        # One worker per connection keeps that connection's pushes in order.
        queue = self._queues[connection_id]
        try:
            while queue:
                if self.shuffle:
                    await asyncio.sleep(self.shuffle_window)  # let a batch gather
                    batch = list(queue)
                    queue.clear()
                    self.rng.shuffle(batch)
                else:
                    batch = [queue.popleft()]
                for push in batch:
                    await self._deliver(push)
        finally:
            self._workers.pop(connection_id, None)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.push_timeout)
        return self._http

    async def _deliver(self, push: _Push) -> None:
        connection = push.connection
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign_body(connection.app_secret, push.body),
            "User-Agent": "facebookexternalua",
        }
        status_code: int | None = None
        error: str | None = None
        attempts = 0
        for attempt in range(1, self.push_attempts + 1):
            attempts = attempt
            try:
                response = await self._client().post(
                    connection.webhook_url, content=push.body, headers=headers
                )
            except httpx.TransportError as exc:
                status_code, error = None, type(exc).__name__
            else:
                status_code = response.status_code
                error = None if status_code < 400 else f"HTTP {status_code}"
                if status_code < 500:
                    break  # delivered, or refused for good (a 4xx will not get better)
            if attempt < self.push_attempts:
                await asyncio.sleep(self.retry_backoff * 2 ** (attempt - 1))
        ok = status_code is not None and 200 <= status_code < 300
        if not ok:
            logger.warning(
                "webhook push for connection %s failed after %d attempt(s): %s",
                connection.connection_id,
                attempts,
                error,
            )
        self.deliveries.append(
            Delivery(
                connection_id=connection.connection_id,
                url=connection.webhook_url,
                body=push.body,
                status_code=status_code,
                attempts=attempts,
                ok=ok,
                error=error,
            )
        )
        if push.done is not None and not push.done.done():
            push.done.set_result(ok)

    async def drain(self) -> None:
        """Wait until every pending webhook push was delivered (or gave up)."""
        async with asyncio.timeout(self.drain_timeout):
            while True:
                tasks = [*self._workers.values(), *self._progress]
                if not tasks:
                    return
                await asyncio.wait(tasks)

    # -- HTTP ----------------------------------------------------------------------------------

    def _build_router(self) -> APIRouter:
        router = APIRouter()
        graph = GRAPH_PREFIX

        @router.post(graph + "/{version}/{phone_id}/messages", include_in_schema=False)
        async def send_message(request: Request, version: str, phone_id: str) -> Response:
            try:
                return await self._send(request, version, phone_id)
            except GraphError as error:
                return error.response()

        @router.post(graph + "/{version}/{phone_id}/media", include_in_schema=False)
        async def upload_media(request: Request, version: str, phone_id: str) -> Response:
            try:
                return await self._upload(request, version, phone_id)
            except GraphError as error:
                return error.response()

        # Declared before /{version}/{media_id}, which would otherwise swallow it.
        @router.get(graph + "/media-download/{media_id}", include_in_schema=False)
        async def download_media(request: Request, media_id: str) -> Response:
            try:
                stored = self._owned_media(request, media_id, "get")
            except GraphError as error:
                return error.response()
            headers = {}
            if stored.filename:
                headers["Content-Disposition"] = f'attachment; filename="{stored.filename}"'
            return Response(stored.data, media_type=stored.mime_type, headers=headers)

        @router.get(graph + "/{version}/{media_id}", include_in_schema=False)
        async def media_url(request: Request, version: str, media_id: str) -> Response:
            try:
                if not _VERSION_RE.match(version):
                    raise GraphError(400, 2500, "Unknown path components: /" + version)
                stored = self._owned_media(request, media_id, "get")
            except GraphError as error:
                return error.response()
            base = str(request.base_url).rstrip("/")
            return JSONResponse(
                {
                    "messaging_product": "whatsapp",
                    "url": f"{base}{graph}/media-download/{stored.id}",
                    "mime_type": stored.mime_type,
                    "sha256": stored.sha256_hex,
                    "file_size": len(stored.data),
                    "id": stored.id,
                }
            )

        @router.delete(graph + "/{version}/{media_id}", include_in_schema=False)
        async def delete_media(request: Request, version: str, media_id: str) -> Response:
            try:
                self._owned_media(request, media_id, "delete")
            except GraphError as error:
                return error.response()
            del self._media[media_id]
            if self._state is not None:
                self._state.drop_blob(media_id)
            self._changed()
            return JSONResponse({"success": True})

        control = APIRouter(prefix=CONTROL_PREFIX, tags=["sandbox: whatsapp"])

        @control.post("/connections")
        async def register(data: ConnectionIn) -> dict[str, Any]:
            """Register (or replace) a business number and its webhook URL."""
            connection = self.register_connection(
                str(data.connection_id),
                str(data.phone_id),
                data.token,
                data.app_secret,
                data.webhook_url,
                waba_id=str(data.waba_id) if data.waba_id is not None else None,
                display_phone_number=data.display_phone_number,
            )
            return connection.public()

        @control.get("/connections")
        async def list_connections() -> list[dict[str, str]]:
            """Registered numbers (without tokens or secrets)."""
            return [c.public() for c in self.connections.values()]

        @control.post("/inbound")
        async def inbound(data: InboundIn) -> dict[str, Any]:
            """Play the lead: send a message (or a marketing preference) to the business."""
            sender = str(data.from_).strip()
            if not (_USER_ID_RE.match(sender) or 5 <= len(_digits(sender)) <= 15):
                raise HTTPException(
                    422,
                    "from: must be the lead's phone number (5 to 15 digits) "
                    "or a business-scoped user id (US.1349...)",
                )
            try:
                if data.marketing is not None:
                    await self.marketing_preference(
                        str(data.connection_id),
                        str(data.from_),
                        stop=data.marketing == "stop",
                        name=data.name,
                    )
                    return {"message_id": None}
                media = base64.b64decode(data.media_base64) if data.media_base64 else None
                wamid = await self.inbound(
                    str(data.connection_id),
                    str(data.from_),
                    data.text,
                    name=data.name,
                    kind=data.type,
                    media=media,
                    mime_type=data.mime_type,
                    filename=data.filename,
                    reply_to=data.reply_to,
                    button_payload=data.button_payload,
                    latitude=data.latitude,
                    longitude=data.longitude,
                    emoji=data.emoji,
                    message_id=data.message_id,
                )
            except KeyError as error:
                raise HTTPException(404, str(error.args[0])) from None
            except (ValueError, binascii.Error) as error:
                raise HTTPException(422, str(error)) from None
            return {"message_id": wamid}

        @control.get("/outbox")
        async def outbox(
            to: str | None = None, connection_id: str | None = None
        ) -> list[dict[str, Any]]:
            """What the business sent, oldest first."""
            return [e.to_json() for e in self.outbox(to, connection_id)]

        @control.post("/faults")
        async def add_fault(data: FaultIn) -> dict[str, bool]:
            """Make the next send calls fail or slow down."""
            self.add_fault(
                data.kind,
                data.count,
                connection_id=str(data.connection_id) if data.connection_id else None,
                delay=data.delay,
                status=data.status,
            )
            return {"ok": True}

        @control.delete("/faults")
        async def clear_faults() -> dict[str, bool]:
            """Forget every pending fault."""
            self.clear_faults()
            return {"ok": True}

        @control.post("/delivery")
        async def delivery(data: DeliveryIn) -> dict[str, Any]:
            """Duplicate and/or shuffle webhook pushes; toggle read receipts and early statuses."""
            self.configure_delivery(duplicates=data.duplicates, shuffle=data.shuffle)
            if data.auto_read is not None:
                self.auto_read = data.auto_read
            if data.status_before_response is not None:
                self.status_before_response = data.status_before_response
            return {
                "duplicates": self.duplicates,
                "shuffle": self.shuffle,
                "auto_read": self.auto_read,
                "status_before_response": self.status_before_response,
            }

        @control.post("/templates")
        async def add_template(data: TemplateIn) -> dict[str, Any]:
            """Approve one more template."""
            template = self.add_template(data.name, data.language, data.body, data.category)
            return {
                "name": template.name,
                "language": template.language,
                "param_count": template.param_count,
            }

        @control.post("/reset")
        async def reset() -> dict[str, bool]:
            """Clear all state."""
            await self.reset()
            return {"ok": True}

        @control.post("/drain")
        async def drain() -> dict[str, bool]:
            """Answer once every pending webhook push was delivered."""
            try:
                await self.drain()
            except TimeoutError:
                raise HTTPException(504, "pushes still pending") from None
            return {"ok": True}

        router.include_router(control)
        return router


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise _invalid("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.")
    return body


def create_emulator_app(emulator: WhatsAppEmulator) -> FastAPI:
    """A standalone app serving only the emulator."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await emulator.aclose()

    app = FastAPI(title="WhatsApp Cloud API emulator", lifespan=lifespan)
    app.include_router(emulator.router)
    return app


def main(argv: list[str] | None = None) -> None:
    """``python -m channels.sandbox.whatsapp --port 8081``."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args(argv)
    uvicorn.run(create_emulator_app(WhatsAppEmulator()), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
