"""The composition root of the channels: settings in, adapters, emulators and runtime out.

``crm up`` (crm.app) and ``crm worker`` / ``crm channels`` (crm.cli) build the same wiring here,
so a webhook accepted by one process is processed identically by any worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from agents.assistant import Assistant
from agents.embeddings import Embedder
from bot import webhook as operator_webhook
from bot.config import ALLOWED_UPDATES as OPERATOR_UPDATES
from bot.config import OperatorBotConfig
from bot.dependencies import BotServices
from channels.ingest_delivery import ChannelRuntime, install
from channels.whatsapp import WhatsAppAdapter
from crm.infrastructure.cipher import CredentialCipher
from crm.infrastructure.media_store import LocalMediaStore
from crm.messaging import (
    ChannelAdapter,
    ChannelKind,
    ConnectionInfo,
    InboundUpdate,
    MediaRef,
    OutboundMessage,
    SendResult,
)
from crm.models import ChannelConnection, Role
from crm.services.access import Actor
from crm.services.accounts.signin import do_issue_sign_in
from crm.services.inbox import connections as channel_service
from crm.services.inbox.outbound import DeliveryDeps, LocalRateLimiter, RateLimiter
from crm.settings import Settings
from crm.tasks.ratelimit import RedisRateLimiter
from crm.wiring.sandbox import (
    OPERATOR_CONNECTION,
    OPERATOR_SANDBOX_BOT_ID,
    OPERATOR_SANDBOX_USERNAME,
    add_sandbox_connections,
    at_sandbox_base,
    register_with_emulator,
    sandbox_sign_in_url,
)
from sandbox.telegram import TelegramEmulator
from sandbox.whatsapp import WhatsAppEmulator
from telegram_transport.logs import redact, redact_tokens_in_logs

if TYPE_CHECKING:
    from bot.operator_bot import OperatorBot
    from channels.telegram import TelegramAdapter

logger = logging.getLogger(__name__)

CONNECTION_CACHE_SECONDS = 5.0


@dataclass
class ConnectionCache:
    """Connections by id for a few seconds: every webhook needs its secret, decrypted."""

    cipher: CredentialCipher
    ttl: float = CONNECTION_CACHE_SECONDS
    # This process's own URL: sandbox connections reach the emulators here, whatever URL was
    # current when they were created (``crm up --port`` may differ from that of the CLI).
    sandbox_base_url: str | None = None
    _entries: dict[int, tuple[float, ConnectionInfo | None]] = field(default_factory=dict)

    async def load(self, connection_id: int) -> ConnectionInfo | None:
        """The active connection, from the cache or the database."""
        now = time.monotonic()
        cached = self._entries.get(connection_id)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        info = await channel_service.load_connection(self.cipher, connection_id)
        if info is not None and info.sandbox and self.sandbox_base_url is not None:
            info = at_sandbox_base(info, self.sandbox_base_url)
        self._entries[connection_id] = (now, info)
        return info

    def forget(self, connection_id: int) -> None:
        """Drop one entry (after a connection changed in this process)."""
        self._entries.pop(connection_id, None)


class _Closable(Protocol):
    async def close(self) -> None: ...


A = TypeVar("A", bound=_Closable)


class LazyAdapter(Generic[A]):
    """A channel adapter built on first use: its SDK may cost seconds and ~100 MB to import
    (aiogram), which a process that never meets that channel should not pay at start-up."""

    def __init__(self, kind: ChannelKind, factory: Callable[[], A]) -> None:
        self.kind = kind
        self._factory = factory
        self._built: A | None = None

    @property
    def built(self) -> bool:
        """Whether the adapter (and its SDK) is loaded yet."""
        return self._built is not None

    @property
    def adapter(self) -> A:
        """The adapter, built now if it was not yet."""
        if self._built is None:
            self._built = self._factory()
        return self._built

    def parse(self, connection: ConnectionInfo, body: bytes) -> list[InboundUpdate]:
        """See ``ChannelAdapter.parse``."""
        adapter: Any = self.adapter
        return list(adapter.parse(connection, body))

    async def send(self, connection: ConnectionInfo, message: OutboundMessage) -> SendResult:
        """See ``ChannelAdapter.send``."""
        adapter: Any = self.adapter
        result: SendResult = await adapter.send(connection, message)
        return result

    async def download_media(self, connection: ConnectionInfo, media: MediaRef) -> bytes:
        """See ``ChannelAdapter.download_media``."""
        adapter: Any = self.adapter
        data: bytes = await adapter.download_media(connection, media)
        return data

    async def close(self) -> None:
        """Close the adapter if it was ever built."""
        if self._built is not None:
            await self._built.close()


def _telegram_adapter() -> TelegramAdapter:
    from channels.telegram import TelegramAdapter

    return TelegramAdapter()


@dataclass
class ChannelWiring:
    """Everything the channel edges need in one process."""

    settings: Settings
    cipher: CredentialCipher
    media_store: LocalMediaStore
    connections: ConnectionCache
    whatsapp: WhatsAppAdapter
    telegram: LazyAdapter[TelegramAdapter]
    runtime: ChannelRuntime
    limiter: RateLimiter
    whatsapp_emulator: WhatsAppEmulator | None = None
    telegram_emulator: TelegramEmulator | None = None
    # Sandbox connections registered with the in-process emulators since this process started.
    registered: set[int] = field(default_factory=set)

    def webhook_url(self, connection: ChannelConnection | ConnectionInfo) -> str:
        """Where the provider must post this connection's webhooks."""
        return channel_service.webhook_url(self.settings.base_url, connection.kind, connection.id)

    async def close(self) -> None:
        """Close SDK sessions and emulator clients."""
        await self.whatsapp.close()
        await self.telegram.close()
        if isinstance(self.limiter, RedisRateLimiter):
            await self.limiter.aclose()
        if self.whatsapp_emulator is not None:
            await self.whatsapp_emulator.aclose()
        if self.telegram_emulator is not None:
            await self.telegram_emulator.aclose()


def build_channels(
    settings: Settings, limiter: RateLimiter | None = None, *, serve_sandbox: bool = False
) -> ChannelWiring:
    """Adapters, emulators (sandbox mode) and the ingest/delivery runtime, installed.

    ``serve_sandbox``: this process serves the emulators (``crm up``), so they keep their
    state under ``settings.sandbox_state_dir``; other processes only borrow them.
    """
    redact_tokens_in_logs()
    cipher = CredentialCipher(settings.secret_key.get_secret_value())
    media_store = LocalMediaStore(settings.media_dir)
    connections = ConnectionCache(
        cipher, sandbox_base_url=settings.base_url if settings.sandbox_enabled else None
    )
    if limiter is None:
        # With Redis every worker shares one pace per connection; alone, this process paces it.
        limiter = RedisRateLimiter(settings.redis_url) if settings.redis_url else LocalRateLimiter()
    whatsapp = WhatsAppAdapter()
    telegram: LazyAdapter[TelegramAdapter] = LazyAdapter(ChannelKind.TELEGRAM, _telegram_adapter)
    adapters: dict[ChannelKind, ChannelAdapter] = {
        ChannelKind.WHATSAPP: whatsapp,
        ChannelKind.TELEGRAM: telegram,
    }
    delivery = DeliveryDeps(
        adapter_for=adapters.__getitem__,
        load_connection=connections.load,
        limiter=limiter,
        media_path=lambda key: str(media_store.path_of(key)),
    )
    runtime = ChannelRuntime(
        adapters=adapters,
        load_connection=connections.load,
        media=media_store,
        delivery=delivery,
    )
    install(runtime)
    wiring = ChannelWiring(
        settings=settings,
        cipher=cipher,
        media_store=media_store,
        connections=connections,
        whatsapp=whatsapp,
        telegram=telegram,
        runtime=runtime,
        limiter=limiter,
    )
    if settings.sandbox_enabled:
        state = settings.sandbox_state_dir if serve_sandbox else None
        wiring.whatsapp_emulator = WhatsAppEmulator(
            state_path=state / "whatsapp.json" if state else None
        )
        wiring.telegram_emulator = TelegramEmulator(
            state_path=state / "telegram.json" if state else None
        )
    return wiring


@functools.cache
def shared_embedder() -> Embedder:
    """One embedding model per process (it loads lazily, on the first text to embed)."""
    return Embedder()


def build_assistant(settings: Settings, cipher: CredentialCipher) -> Assistant:
    """The AI of this process: memory, drafts, answers and intents over every workspace."""
    return Assistant(cipher, settings.ai_index_dir, shared_embedder())


def connection_setup(wiring: ChannelWiring) -> Callable[[ChannelConnection], Awaitable[str | None]]:
    """What runs after a connection is stored: sandbox registration, Telegram's webhook."""

    async def setup(connection: ChannelConnection) -> str | None:
        info = channel_service.connection_info(connection, wiring.cipher)
        wiring.connections.forget(connection.id)
        if info.sandbox:
            if wiring.whatsapp_emulator is None:
                return "sandbox mode is off in this service (CRM_SANDBOX=off)"
            register_with_emulator(wiring, info)
            return None
        if info.kind is ChannelKind.TELEGRAM:
            try:
                await wiring.telegram.adapter.register_webhook(info, wiring.webhook_url(info))
            except Exception as exc:  # the connection stays; the admin retries the setup
                reason = redact(str(exc))  # an aiohttp error may carry the URL with the token
                logger.warning("setWebhook for connection %s failed: %s", info.id, reason)
                return f"Telegram setWebhook failed: {reason}"
        return None

    return setup


def describe(info: ConnectionInfo, wiring: ChannelWiring) -> dict[str, Any]:
    """The CLI's JSON for a connection."""
    return {"connection_id": info.id, "webhook_url": wiring.webhook_url(info)}


def _derived(settings: Settings, purpose: str, length: int) -> str:
    """A stable secret for ``purpose`` derived from the secret key (survives restarts)."""
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, purpose.encode(), hashlib.sha256).hexdigest()[:length]


def sandbox_operator_token(settings: Settings) -> str:
    """The sandbox operator bot's token: fixed bot id, secret derived from the secret key."""
    return f"{OPERATOR_SANDBOX_BOT_ID}:{_derived(settings, 'operator-bot-token', 40)}"


def _operator_i18n() -> Any:
    """The catalogs under locales/, or English-only when they cannot be loaded yet."""
    from bot import i18n as bot_i18n
    from bot.operator_bot import fallback_i18n

    try:
        return bot_i18n.build_i18n()
    except Exception as exc:  # a catalog being written: run in English rather than not at all
        logger.warning("operator bot catalogs not loaded (%s); English only", exc)
        return fallback_i18n()


def operator_bot_config(wiring: ChannelWiring) -> OperatorBotConfig | None:
    """The operator bot's configuration: the configured token, or a sandbox bot, or none.

    Needs no aiogram: a sandbox bot is registered with the emulator here, so its webhook
    works before the bot itself is built.
    """
    settings = wiring.settings
    base = settings.base_url
    sandbox = wiring.telegram_emulator is not None
    if settings.operator_bot_token is not None:
        token = settings.operator_bot_token.get_secret_value()
        api_base = None
        mode = settings.operator_bot_mode
    elif sandbox:
        token = sandbox_operator_token(settings)
        api_base = f"{base}/sandbox/telegram"
        mode = "webhook"
    else:
        return None
    secret = _derived(settings, f"operator-webhook:{token}", 48)
    webhook_url = f"{base}{operator_webhook.PATH}"
    if api_base is not None and wiring.telegram_emulator is not None:
        wiring.telegram_emulator.register_bot(OPERATOR_CONNECTION, token, OPERATOR_SANDBOX_USERNAME)
        wiring.telegram_emulator.set_webhook(token, webhook_url, secret, list(OPERATOR_UPDATES))
    return OperatorBotConfig(
        token=token,
        webhook_secret=secret,
        mode=mode,
        api_base=api_base,
        webhook_url=webhook_url if api_base is None else None,
        paid_broadcast=settings.operator_bot_paid_broadcast,
        pace_sends=api_base is None,  # the sandbox emulator enforces no flood limits
    )


def build_operator_bot(
    wiring: ChannelWiring,
    assistant: Assistant | None = None,
    config: OperatorBotConfig | None = None,
) -> OperatorBot | None:
    """The operator bot (``config`` from ``operator_bot_config``, computed if not given)."""
    from bot.i18n import OperatorI18nMiddleware
    from bot.operator_bot import OperatorBot, fsm_storage

    config = config or operator_bot_config(wiring)
    if config is None:
        return None
    settings = wiring.settings
    base = settings.base_url
    sandbox = wiring.telegram_emulator is not None

    async def sandbox_link(tenant_id: int, user_id: int) -> str:
        # A chat keeps its history: it gets a single-use, expiring link, never an API key.
        owner = Actor(tenant_id=tenant_id, user_id=user_id, role=Role.OWNER)
        return sandbox_sign_in_url(base, await do_issue_sign_in(owner))

    async def on_workspace_created(tenant_id: int) -> object:
        return await add_sandbox_connections(wiring, tenant_id)

    services = BotServices(
        on_workspace_created=on_workspace_created if sandbox else None,
        sandbox_url=f"{base}/sandbox" if sandbox else None,
        sandbox_link=sandbox_link if sandbox else None,
        media_store=wiring.media_store,
        assistant=assistant,
    )
    i18n = _operator_i18n()
    return OperatorBot(
        config,
        services,
        i18n=i18n,
        i18n_middleware=OperatorI18nMiddleware(i18n),
        # Dialogue state in Redis when configured: it survives restarts and spans web processes.
        storage=fsm_storage(settings.redis_url),
    )


def _import_operator_bot() -> None:
    import bot.i18n
    import bot.operator_bot  # noqa: F401


class DeferredOperatorBot:
    """The operator bot of ``crm up``, built and started on first need, off the event loop.

    aiogram and the bot's routers cost seconds of imports and ~130 MB. A configured bot (a real
    token: its webhook, polling and morning digest must run) starts right after the service is
    ready; the sandbox bot starts on its first update or the first event to dispatch (the bot's
    handlers are installed before any event runs, see ``HandlerRegistry.before_dispatch``).
    """

    def __init__(self, wiring: ChannelWiring, assistant: Assistant, config: OperatorBotConfig):
        self.config = config
        self.webhook_secret = config.webhook_secret
        # Sandbox: no webhook to register with Telegram, nobody to poll for: wait for a need.
        self.eager = config.api_base is None
        self.bot: OperatorBot | None = None
        self._wiring = wiring
        self._assistant = assistant
        self._starting: asyncio.Task[OperatorBot | None] | None = None

    async def ensure_started(self) -> OperatorBot | None:
        """The running bot, started now if it was not yet; None if it could not start."""
        if self._starting is None:
            self._starting = asyncio.create_task(self._start(), name="crm-operator-bot-start")
        # Shielded: a caller cancelled while waiting (a request gone) must not cancel the start.
        return await asyncio.shield(self._starting)

    async def _start(self) -> OperatorBot | None:
        try:
            await asyncio.to_thread(_import_operator_bot)  # seconds of imports, off the loop
            operator = build_operator_bot(self._wiring, self._assistant, self.config)
            if operator is not None:
                await operator.start()
        except Exception:
            logger.exception("the operator bot did not start")
            return None
        self.bot = operator
        return operator

    async def feed(self, update: dict[str, Any]) -> None:
        """Process one update (the first one starts the bot)."""
        operator = await self.ensure_started()
        if operator is None:
            logger.warning("operator bot not running: update %s dropped", update.get("update_id"))
            return
        await operator.feed(update)

    async def stop(self) -> None:
        """Stop the bot if it started (a start still running is cancelled)."""
        starting, self._starting = self._starting, None
        if starting is not None and not starting.done():
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
        if self.bot is not None:
            await self.bot.stop()
            self.bot = None
