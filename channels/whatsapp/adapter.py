"""The WhatsApp channel: crm.messaging's ChannelAdapter on top of pywa's async client.

Connection settings: ``phone_id``, optional ``waba_id``, ``api_version`` and ``graph_base_url``
(the sandbox, e.g. ``http://127.0.0.1:8000/sandbox/graph``). Credentials: ``token``,
``app_secret``, ``verify_token``.

Sends are tried once: a refusal becomes ``SendError`` (``retryable`` when waiting can help) and
the caller decides about retrying, so no message is sent twice by two layers.
"""

from __future__ import annotations

import hashlib
import logging
import pathlib
import re
from dataclasses import dataclass
from typing import Any

import httpx
from pywa_async import WhatsApp
from pywa_async.errors import WhatsAppError
from pywa_async.types import Button, Section, SectionList, SectionRow
from pywa_async.types.templates import TemplateLanguage

from crm.messaging import (
    ChannelKind,
    ConnectionInfo,
    InboundUpdate,
    MediaRef,
    OutboundKind,
    OutboundMessage,
    SendError,
    SendResult,
)

from .parse import parse_webhook
from .transport import GraphRewriteTransport

logger = logging.getLogger(__name__)

# Throughput and pair rate limits, Meta-side hiccups, maintenance: a later try can succeed.
RETRYABLE_CODES = frozenset(
    {
        1,  # unknown error
        2,  # service temporarily unavailable
        4,  # application request limit reached
        80007,  # WABA rate limit
        130429,  # throughput rate limit hit
        131000,  # something went wrong
        131016,  # service unavailable
        131056,  # (business, consumer) pair rate limit hit
        131057,  # account in maintenance mode
        133004,  # server temporarily unavailable
    }
)
MAX_REPLY_BUTTONS = 3  # more options than this go out as a list message
_CODE_PREFIX = re.compile(r"^\(#\d+\)\s*")


@dataclass
class _Client:
    fingerprint: str
    wa: WhatsApp
    session: httpx.AsyncClient


def _fingerprint(connection: ConnectionInfo) -> str:
    # Hashed so the cache key does not keep another copy of the token around.
    parts = [
        connection.credentials.get("token", ""),
        str(connection.settings.get("phone_id", "")),
        str(connection.settings.get("waba_id", "")),
        str(connection.settings.get("api_version", "")),
        str(connection.settings.get("graph_base_url", "")),
    ]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def send_error_from(error: Exception) -> SendError:
    """Translate pywa / httpx failures into the crm's SendError."""
    if isinstance(error, WhatsAppError):
        status = error.status_code
        retryable = (
            error.code in RETRYABLE_CODES
            or bool(error.is_transient)
            or (status is not None and status >= 500)
        )
        title = _CODE_PREFIX.sub("", error.message or "") or "WhatsApp error"
        return SendError(error.code, title, retryable=retryable)
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return SendError(status, f"HTTP {status}", retryable=status >= 500 or status == 429)
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        # The request never left: trying again cannot send the message twice.
        return SendError(None, f"transport error: {type(error).__name__}", retryable=True)
    if isinstance(error, httpx.TransportError):
        # A timeout or a cut connection after the request went out: Meta may have accepted it,
        # and a retry could deliver it twice. The operator decides instead.
        return SendError(
            None, f"delivery state unknown ({type(error).__name__}); check before resending"
        )
    return SendError(None, str(error) or type(error).__name__)


class WhatsAppAdapter:
    """Reads WhatsApp webhook bodies and sends through one cached pywa client per connection."""

    kind = ChannelKind.WHATSAPP

    def __init__(self, *, timeout: float = 20.0) -> None:
        self._timeout = timeout
        self._clients: dict[int, _Client] = {}

    def parse(self, connection: ConnectionInfo, body: bytes) -> list[InboundUpdate]:
        """Every update a webhook body carries, normalized (unknown kinds are skipped)."""
        return parse_webhook(body)

    async def client(self, connection: ConnectionInfo) -> WhatsApp:
        """The pywa client for ``connection``, rebuilt when its credentials or settings change."""
        fingerprint = _fingerprint(connection)
        cached = self._clients.get(connection.id)
        if cached is not None and cached.fingerprint == fingerprint:
            return cached.wa
        token = connection.credentials.get("token")
        phone_id = connection.settings.get("phone_id")
        if not token or not phone_id:
            raise SendError(None, "whatsapp connection lacks a token or phone_id")
        base_url = connection.settings.get("graph_base_url")
        session = httpx.AsyncClient(
            timeout=self._timeout,
            transport=GraphRewriteTransport(base_url) if base_url else None,
        )
        kwargs: dict[str, Any] = {}
        if connection.settings.get("api_version"):
            kwargs["api_version"] = str(connection.settings["api_version"]).lstrip("vV")
        if connection.settings.get("waba_id"):
            kwargs["waba_id"] = str(connection.settings["waba_id"])
        # No server and no callback_url: pywa then neither serves webhooks nor registers one
        # with Meta, and makes no request at construction time.
        wa = WhatsApp(phone_id=str(phone_id), token=token, session=session, **kwargs)
        self._clients[connection.id] = _Client(fingerprint, wa, session)
        if cached is not None:
            # Replaced before closing, so a concurrent caller never picks up the closed one.
            await cached.session.aclose()
        return wa

    async def close(self) -> None:
        """Close every cached client's HTTP session."""
        clients, self._clients = list(self._clients.values()), {}
        for cached in clients:
            await cached.session.aclose()

    aclose = close

    async def send(self, connection: ConnectionInfo, message: OutboundMessage) -> SendResult:
        """Send one message; raise ``SendError`` when WhatsApp refuses it."""
        wa = await self.client(connection)
        try:
            sent = await self._send(wa, message)
        except (WhatsAppError, httpx.HTTPError, ValueError, TypeError, OSError) as error:
            failure = send_error_from(error)
            logger.info(
                "whatsapp send on connection %s refused: %s (retryable=%s)",
                connection.id,
                failure,
                failure.retryable,
            )
            raise failure from error
        return SendResult(external_id=sent)

    async def _send(self, wa: WhatsApp, message: OutboundMessage) -> str:
        # A wa_id goes out as "to"; a business-scoped user id ("US.1349...", a lead who shows
        # only a username) pywa recognizes and sends as "recipient", which Meta accepts.
        to = message.to.lstrip("+")
        common: dict[str, Any] = {"reply_to_message_id": message.reply_to_external_id}
        if message.tracker:
            # Echoed as biz_opaque_callback_data in every receipt of this message.
            common["tracker"] = message.tracker
        match message.kind:
            case OutboundKind.TEXT:
                sent = await wa.send_message(to, message.text, **common)
            case OutboundKind.BUTTONS:
                sent = await wa.send_message(to, message.text, buttons=_buttons(message), **common)
            case OutboundKind.TEMPLATE:
                sent = await wa.send_template(
                    to,
                    name=message.template_name,
                    language=_language(message.template_language),
                    params=_template_params(message.template_params),
                    **common,
                )
            case OutboundKind.IMAGE:
                sent = await wa.send_image(
                    to,
                    _media(message),
                    caption=message.text or None,
                    mime_type=message.mime_type,
                    **common,
                )
            case OutboundKind.VIDEO:
                sent = await wa.send_video(
                    to,
                    _media(message),
                    caption=message.text or None,
                    mime_type=message.mime_type,
                    **common,
                )
            case OutboundKind.DOCUMENT:
                filename = message.filename or _default_filename(message)
                sent = await wa.send_document(
                    to,
                    _media(message),
                    filename=filename,
                    caption=message.text or None,
                    mime_type=message.mime_type,
                    **common,
                )
            case OutboundKind.AUDIO:
                sent = await wa.send_audio(
                    to, _media(message), mime_type=message.mime_type, **common
                )
            case OutboundKind.VOICE:
                sent = await wa.send_voice(
                    to, _media(message), mime_type=message.mime_type, **common
                )
            case _:
                raise ValueError(f"whatsapp cannot send {message.kind!r}")
        return str(sent.id)

    async def download_media(self, connection: ConnectionInfo, media: MediaRef) -> bytes:
        """Fetch the bytes of an inbound attachment (media id -> URL -> bytes)."""
        wa = await self.client(connection)
        try:
            if media.provider_media_id:
                url = (await wa.get_media_url(media.provider_media_id)).url
            elif media.url:
                url = media.url
            else:
                raise ValueError("media has neither a provider id nor a URL")
            return await wa.get_media_bytes(url)
        except (WhatsAppError, httpx.HTTPError, ValueError) as error:
            raise send_error_from(error) from error


def _media(message: OutboundMessage) -> pathlib.Path | str:
    # pywa reads a path (and uploads it) itself; a URL is passed on as a link for Meta to fetch.
    if message.media_path:
        path = pathlib.Path(message.media_path)
        # pywa guesses what a string is (path, media id, base64...); only hand it a real file.
        if not path.is_file():
            raise ValueError(f"media file not found: {path.name}")
        return path
    if message.media_url:
        return message.media_url
    raise ValueError(f"a {message.kind} message needs media_path or media_url")


def _default_filename(message: OutboundMessage) -> str | None:
    source = message.media_path or message.media_url
    if not source:
        return None
    return pathlib.PurePosixPath(httpx.URL(source).path if "://" in source else source).name


def _buttons(message: OutboundMessage) -> list[Button] | SectionList:
    if not message.buttons:
        raise ValueError("a buttons message needs at least one button")
    if len(message.buttons) <= MAX_REPLY_BUTTONS:
        return [Button(title=b.title, callback_data=b.id) for b in message.buttons]
    rows = [SectionRow(title=b.title, callback_data=b.id) for b in message.buttons]
    return SectionList(button_title="Choose", sections=[Section(title="Options", rows=rows)])


def _language(code: str | None) -> TemplateLanguage:
    if not code:
        raise ValueError("a template message needs template_language")
    # Looked up directly: pywa maps an unknown code to UNKNOWN (with a warning) instead of failing.
    language = TemplateLanguage._value2member_map_.get(code)
    if language is None:
        raise ValueError(f"unknown template language {code!r}")
    return TemplateLanguage(language)


def _template_params(params: tuple[str, ...]) -> list[dict[str, Any]] | None:
    if not params:
        return None
    parameters = [{"type": "text", "text": p} for p in params]
    return [{"type": "body", "parameters": parameters}]
