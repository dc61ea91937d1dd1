"""The Telegram lead channel: crm's ``ChannelAdapter`` on top of aiogram.

Telegram tells a bot nothing after a message is accepted: there are no delivered or read
receipts for bots, so a Telegram message stops at ``sent`` and this adapter never produces
``InboundStatus``. A lead who blocked the bot shows up as a 403 on the next send.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import PRODUCTION, TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    FSInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
)
from aiogram.utils.token import TokenValidationError

from channels.telegram.parse import external_id, parse_body, split_external_id, update_id_of
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
from telegram_transport.limits import FloodControlMiddleware, RateLimits, SendRateLimiter
from telegram_transport.logs import redact

logger = logging.getLogger(__name__)

# Every update kind the inbox uses; Telegram sends only what setWebhook lists.
ALLOWED_UPDATES = (
    "message",
    "edited_message",
    "callback_query",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
)
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
CALLBACK_DATA_LIMIT = 64

T = TypeVar("T")


def _utf16_len(text: str) -> int:
    """Telegram measures text in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


class TelegramAdapter:
    """Reads Telegram updates and sends to leads through one cached aiogram ``Bot`` per bot."""

    kind = ChannelKind.TELEGRAM

    def __init__(
        self,
        *,
        default_api_base: str | None = None,
        limits: RateLimits | None = None,
        rate_limit: bool = True,
        max_retry_attempts: int = 3,
        max_retry_wait: float = 30.0,
        request_timeout: float = 30.0,
    ) -> None:
        """``default_api_base`` is used for connections without an ``api_base`` setting."""
        self.default_api_base = default_api_base
        self.limiter = SendRateLimiter(limits) if rate_limit else None
        self.max_retry_attempts = max_retry_attempts
        self.max_retry_wait = max_retry_wait
        self.request_timeout = request_timeout
        self._bots: dict[int, tuple[str, str | None, Bot]] = {}
        self._retired: list[Bot] = []

    # ---- bots ------------------------------------------------------------------------------

    def bot_for(self, connection: ConnectionInfo) -> Bot:
        """The cached aiogram Bot of a connection (a new one when its token or host changed)."""
        token = connection.credentials.get("token")
        if not token:
            raise SendError(None, "the Telegram connection has no bot token")
        api_base = connection.settings.get("api_base") or self.default_api_base
        cached = self._bots.get(connection.id)
        if cached is not None and cached[0] == token and cached[1] == api_base:
            return cached[2]
        if cached is not None:
            self._retired.append(cached[2])  # closed in close(); a send may still be using it
        session = AiohttpSession(
            api=TelegramAPIServer.from_base(api_base) if api_base else PRODUCTION,
            timeout=self.request_timeout,
        )
        session.middleware(
            FloodControlMiddleware(
                self.limiter,
                max_attempts=self.max_retry_attempts,
                max_wait=self.max_retry_wait,
            )
        )
        try:
            bot = Bot(token=token, session=session)
        except TokenValidationError as exc:
            raise SendError(None, "the Telegram bot token is malformed") from exc
        self._bots[connection.id] = (token, api_base, bot)
        return bot

    async def close(self) -> None:
        """Close every bot's HTTP session."""
        bots = [entry[2] for entry in self._bots.values()] + self._retired
        self._bots.clear()
        self._retired.clear()
        for bot in bots:
            await bot.session.close()

    # ---- inbound ---------------------------------------------------------------------------

    def parse(self, connection: ConnectionInfo, body: bytes) -> list[InboundUpdate]:
        """Every lead-facing update a webhook body carries (unknown kinds are skipped)."""
        return parse_body(body)

    @staticmethod
    def update_id_of(body: bytes) -> int | None:
        """Telegram's ``update_id`` of a webhook body, to dedupe redeliveries."""
        return update_id_of(body)

    async def download_media(self, connection: ConnectionInfo, media: MediaRef) -> bytes:
        """The bytes of an inbound attachment (getFile, then the file download URL)."""
        if not media.provider_media_id:
            raise SendError(None, "the attachment has no Telegram file_id")
        bot = self.bot_for(connection)

        async def download() -> bytes:
            file = await bot.get_file(media.provider_media_id or "")
            if not file.file_path:
                raise SendError(None, "Telegram gave no file_path for the attachment")
            buffer = io.BytesIO()
            await bot.download_file(file.file_path, destination=buffer)
            return buffer.getvalue()

        return await self._call(download)

    # ---- outbound --------------------------------------------------------------------------

    async def register_webhook(self, connection: ConnectionInfo, url: str) -> None:
        """Point the bot's updates at ``url``, signed with the connection's webhook secret."""
        secret = connection.credentials.get("webhook_secret")
        if not secret:
            raise SendError(None, "the Telegram connection has no webhook_secret")
        bot = self.bot_for(connection)
        await self._call(
            lambda: bot.set_webhook(
                url=url, secret_token=secret, allowed_updates=list(ALLOWED_UPDATES)
            )
        )

    async def send(self, connection: ConnectionInfo, message: OutboundMessage) -> SendResult:
        """Send one message to a lead; Telegram refusals become ``SendError``."""
        chat_id = self._chat_id(message.to)
        self._check_lengths(message)
        bot = self.bot_for(connection)
        common: dict[str, Any] = {
            "chat_id": chat_id,
            "business_connection_id": message.business_connection_id,
            "reply_markup": self._keyboard(message),
            "reply_parameters": self._reply_parameters(message, chat_id),
            # Lead-facing text is plain text: nothing a lead or an agent wrote is markup.
            "parse_mode": None,
        }

        async def deliver() -> Message:
            kind = message.kind
            if kind in (OutboundKind.TEXT, OutboundKind.BUTTONS):
                if not message.text.strip():
                    raise SendError(None, "a Telegram text message cannot be empty")
                return await bot.send_message(text=message.text, **common)
            caption = message.text or None
            if kind is OutboundKind.IMAGE:
                return await bot.send_photo(photo=self._file(message), caption=caption, **common)
            if kind is OutboundKind.DOCUMENT:
                return await bot.send_document(
                    document=self._file(message), caption=caption, **common
                )
            if kind is OutboundKind.VOICE:
                return await bot.send_voice(voice=self._file(message), caption=caption, **common)
            if kind is OutboundKind.AUDIO:
                return await bot.send_audio(audio=self._file(message), caption=caption, **common)
            if kind is OutboundKind.VIDEO:
                return await bot.send_video(video=self._file(message), caption=caption, **common)
            raise SendError(None, f"Telegram cannot send {kind.value} messages")

        sent = await self._call(deliver)
        return SendResult(
            external_id=external_id(sent.chat.id, sent.message_id, sent.business_connection_id)
        )

    @staticmethod
    def _chat_id(to: str) -> int:
        try:
            return int(to)
        except ValueError:
            raise SendError(None, f"{to!r} is not a Telegram chat id") from None

    @staticmethod
    def _check_lengths(message: OutboundMessage) -> None:
        # Refuse before sending: splitting would make a retry send the first part twice.
        media = message.kind not in (OutboundKind.TEXT, OutboundKind.BUTTONS)
        limit = CAPTION_LIMIT if media else TEXT_LIMIT
        if _utf16_len(message.text) > limit:
            what = "caption" if media else "text"
            raise SendError(None, f"the {what} is longer than Telegram's {limit} characters")
        for button in message.buttons:
            if not (1 <= len(button.id.encode()) <= CALLBACK_DATA_LIMIT):
                raise SendError(None, f"button id {button.id!r} must be 1-64 bytes")
            if not button.title.strip():
                raise SendError(None, "a Telegram button needs a title")

    @staticmethod
    def _keyboard(message: OutboundMessage) -> InlineKeyboardMarkup | None:
        if not message.buttons:
            return None
        return InlineKeyboardMarkup(
            inline_keyboard=[
                [InlineKeyboardButton(text=button.title, callback_data=button.id)]
                for button in message.buttons
            ]
        )

    @staticmethod
    def _reply_parameters(message: OutboundMessage, chat_id: int) -> ReplyParameters | None:
        if not message.reply_to_external_id:
            return None
        parts = split_external_id(message.reply_to_external_id)
        if parts is None or parts[1] != chat_id:
            return None  # a button press or another chat's message: send without quoting
        # A quoted message the lead deleted must not make the reply fail.
        return ReplyParameters(message_id=parts[2], allow_sending_without_reply=True)

    @staticmethod
    def _file(message: OutboundMessage) -> FSInputFile | str:
        if message.media_path:
            return FSInputFile(message.media_path, filename=message.filename)
        if message.media_url:
            return message.media_url  # Telegram fetches the URL itself
        raise SendError(None, f"a {message.kind.value} message needs media_path or media_url")

    async def _call(self, request: Callable[[], Awaitable[T]]) -> T:
        """Run a Bot API request, mapping aiogram's errors to ``SendError``."""
        try:
            return await request()
        except TelegramRetryAfter as exc:
            raise SendError(
                429,
                "Telegram flood control",
                retryable=True,
                retry_after=float(exc.retry_after),
            ) from exc
        except TelegramForbiddenError as exc:
            # Usually "bot was blocked by the user": retrying will not help.
            raise SendError(403, _describe(exc)) from exc
        except TelegramUnauthorizedError as exc:
            raise SendError(401, "the bot token was rejected") from exc
        except (TelegramBadRequest, TelegramNotFound) as exc:
            code = 400 if isinstance(exc, TelegramBadRequest) else 404
            raise SendError(code, _describe(exc)) from exc
        except TelegramServerError as exc:
            raise SendError(500, _describe(exc), retryable=True) from exc
        except TelegramNetworkError as exc:
            if _never_sent(exc):
                raise SendError(
                    None, "Telegram unreachable: no connection", retryable=True
                ) from exc
            # A timeout or a dropped connection may hide a message Telegram did accept: a retry
            # could deliver it twice, so the operator decides instead.
            raise SendError(
                None, "delivery state unknown (network error); check before resending"
            ) from exc
        except ClientDecodeError as exc:
            raise SendError(
                None, f"Telegram unreachable: {type(exc).__name__}", retryable=True
            ) from exc
        except aiohttp.ClientResponseError as exc:
            # File downloads raise aiohttp's error, whose text holds the URL (and the token).
            raise SendError(
                exc.status, "file download failed", retryable=exc.status >= 500
            ) from None
        except TelegramAPIError as exc:
            raise SendError(None, _describe(exc)) from exc


def _never_sent(exc: TelegramNetworkError) -> bool:
    """True when aiohttp could not even connect, so Telegram never saw the request."""
    # aiogram folds aiohttp's error into the message as "<ErrorType>: <text>".
    return exc.message.startswith(("ClientConnectorError", "ClientConnectorDNSError"))


def _describe(exc: TelegramAPIError) -> str:
    """Telegram's own description of an error, without aiogram's decorations or a token."""
    return redact(exc.message.split("\n", 1)[0])
