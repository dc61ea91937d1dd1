"""What the inbox needs from a messenger, in crm's own types (DESIGN section 3, rule 1).

Channel edges (``channels/whatsapp``, ``channels/telegram``) turn their SDK's updates into the
``Inbound*`` records below and implement ``ChannelAdapter`` for sending. Nothing here imports an
SDK, so the domain services may use these types freely.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class ChannelKind(StrEnum):
    """The messengers leads write from."""

    WHATSAPP = "whatsapp"
    TELEGRAM = "telegram"


class MessageKind(StrEnum):
    """What a message carries; media kinds have a ``MediaRef``."""

    TEXT = "text"
    IMAGE = "image"
    DOCUMENT = "document"
    AUDIO = "audio"
    VOICE = "voice"
    VIDEO = "video"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACTS = "contacts"
    BUTTON = "button"
    REACTION = "reaction"
    TEMPLATE = "template"
    INTERACTIVE = "interactive"
    UNSUPPORTED = "unsupported"


MEDIA_KINDS = frozenset(
    {
        MessageKind.IMAGE,
        MessageKind.DOCUMENT,
        MessageKind.AUDIO,
        MessageKind.VOICE,
        MessageKind.VIDEO,
        MessageKind.STICKER,
    }
)


class DeliveryStatus(StrEnum):
    """Where an outbound message is; statuses only move forward (see ``STATUS_RANK``)."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


# A late "delivered" never undoes "read". "failed" wins over queued and sent; "delivered" and
# "read" prove the message reached the lead, so they win over a failure in either order.
STATUS_RANK = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.SENT: 1,
    DeliveryStatus.FAILED: 2,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.READ: 4,
}


@dataclass(frozen=True)
class MediaRef:
    """A media attachment as the provider describes it, before or after download."""

    provider_media_id: str | None = None
    mime_type: str | None = None
    filename: str | None = None
    sha256: str | None = None
    url: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class InboundMessage:
    """A message a lead sent, normalized from a webhook or update."""

    external_id: str
    # WhatsApp: the wa_id (phone digits), or the business-scoped user id ("US.1349...") when
    # the lead hides their number behind a username; Telegram: the user id as text.
    sender_id: str
    sent_at: dt.datetime
    kind: MessageKind = MessageKind.TEXT
    text: str = ""  # the text, a caption, a button title or a reaction's emoji
    sender_name: str | None = None
    phone: str | None = None  # E.164 when the channel reveals it
    telegram_username: str | None = None
    language_code: str | None = None
    media: MediaRef | None = None
    payload: dict[str, Any] = field(default_factory=dict)  # location, contacts, button data
    reply_to_external_id: str | None = None
    business_connection_id: str | None = None  # Telegram Business: the rep's chat
    # WhatsApp's username-era ids: business-scoped user id, its parent (shared by linked
    # businesses) and the lead's @username, each when the webhook carries it.
    whatsapp_user_id: str | None = None
    whatsapp_parent_user_id: str | None = None
    whatsapp_username: str | None = None


@dataclass(frozen=True)
class InboundStatus:
    """A delivery receipt for a message the business sent."""

    external_id: str
    status: DeliveryStatus
    at: dt.datetime
    recipient_id: str | None = None
    error_code: int | None = None
    error_title: str | None = None
    recipient_user_id: str | None = None  # WhatsApp business-scoped user id
    # What the sender attached to the send (WhatsApp ``biz_opaque_callback_data``): names our
    # message when the send's answer, and so the provider id, was lost.
    tracker: str | None = None


@dataclass(frozen=True)
class InboundPreference:
    """A lead's marketing preference changed (WhatsApp ``user_preferences``)."""

    sender_id: str
    opted_out: bool
    at: dt.datetime
    user_id: str | None = None  # WhatsApp business-scoped user id, when given


@dataclass(frozen=True)
class InboundEdit:
    """A lead edited (``text`` set) or deleted (``deleted``) a message sent earlier."""

    external_id: str
    sender_id: str
    at: dt.datetime
    text: str | None = None
    deleted: bool = False
    business_connection_id: str | None = None


@dataclass(frozen=True)
class BusinessConnectionUpdate:
    """Telegram Business: a rep connected (or disconnected) the bot to their own account."""

    business_connection_id: str
    rep_telegram_id: int
    rep_name: str | None
    enabled: bool
    can_reply: bool
    at: dt.datetime


InboundUpdate = (
    InboundMessage | InboundStatus | InboundPreference | InboundEdit | BusinessConnectionUpdate
)


class OutboundKind(StrEnum):
    """What the business can send."""

    TEXT = "text"
    IMAGE = "image"
    DOCUMENT = "document"
    AUDIO = "audio"
    VOICE = "voice"
    VIDEO = "video"
    TEMPLATE = "template"
    BUTTONS = "buttons"


@dataclass(frozen=True)
class Button:
    """A reply button: ``id`` comes back in the lead's answer, ``title`` is shown."""

    id: str
    title: str


@dataclass(frozen=True)
class OutboundMessage:
    """A message to send to one lead on one connection."""

    to: str  # WhatsApp wa_id or business-scoped user id, or the Telegram chat id as text
    kind: OutboundKind = OutboundKind.TEXT
    text: str = ""  # body, or the caption of a media message
    media_path: str | None = None  # a stored file to upload
    media_url: str | None = None
    filename: str | None = None
    mime_type: str | None = None
    template_name: str | None = None
    template_language: str | None = None
    template_params: tuple[str, ...] = ()
    buttons: tuple[Button, ...] = ()
    reply_to_external_id: str | None = None
    business_connection_id: str | None = None
    tracker: str | None = None  # echoed in the provider's receipts, where it has them


@dataclass(frozen=True)
class SendResult:
    """The provider accepted the message under this id."""

    external_id: str


class SendError(Exception):
    """The provider refused a send; ``retryable`` sends are retried after ``retry_after`` s."""

    def __init__(
        self,
        code: int | None,
        title: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.code = code
        self.title = title
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(f"{code}: {title}" if code is not None else title)


@dataclass(frozen=True)
class ConnectionInfo:
    """A channel connection as adapters see it: public settings and decrypted credentials."""

    id: int
    tenant_id: int
    kind: ChannelKind
    settings: dict[str, Any]
    credentials: dict[str, str]
    sandbox: bool = False
    rate_per_second: int = 80


class ChannelAdapter(Protocol):
    """One messenger: reads its webhook bodies and sends through its SDK."""

    kind: ChannelKind

    def parse(self, connection: ConnectionInfo, body: bytes) -> list[InboundUpdate]:
        """Every update a webhook body carries, normalized (unknown kinds are skipped)."""
        ...

    async def send(self, connection: ConnectionInfo, message: OutboundMessage) -> SendResult:
        """Send one message; raise ``SendError`` when the provider refuses it."""
        ...

    async def download_media(self, connection: ConnectionInfo, media: MediaRef) -> bytes:
        """Fetch the bytes of an inbound attachment."""
        ...


class MediaStore(Protocol):
    """Where attachment bytes live (a local directory by default)."""

    async def put(self, tenant_id: int, name: str, data: bytes) -> str:
        """Store ``data``; returns the key to read it back with."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes stored under ``key``."""
        ...
