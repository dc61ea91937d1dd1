"""The composition root of the HTTP service: settings in, a FastAPI app out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request

from agents.assistant import Assistant
from bot import webhook as operator_webhook
from bot.config import OPERATOR_BOT_EVENT_TYPES
from channels.base import INGEST_TASK, WebhookRuntime
from channels.ingest_delivery import process_webhook
from channels.telegram import webhook as telegram_webhook
from channels.whatsapp import webhook as whatsapp_webhook
from crm.api import health
from crm.api.accounts import workspaces as orgs
from crm.api.ai import agents, drafts, intents, knowledge, memory
from crm.api.ai import modes as ai_modes
from crm.api.ai import settings as ai_settings
from crm.api.contacts import companies, contacts, notes, tags
from crm.api.contacts import csv_import_export as contacts_io
from crm.api.docs import install_docs
from crm.api.events import audit_log as events
from crm.api.inbox import connections as channels
from crm.api.inbox import conversations
from crm.api.limits import BodySizeLimit
from crm.api.pipeline import deals, pipelines
from crm.api.problems import install_problem_handlers, problem
from crm.api.schemas import reject_control_characters
from crm.assistant import AiAssistant
from crm.db import close_db, init_db
from crm.infrastructure.redaction import install_log_redaction, register_secret
from crm.settings import Environment, Settings
from crm.tasks.backbone import embedded_backbone
from crm.tasks.broker import BackboneConfig
from crm.tasks.handlers import registry as event_handlers
from crm.tasks.schedule import TaskiqTaskQueue
from crm.wiring import (
    ChannelWiring,
    DeferredOperatorBot,
    build_assistant,
    build_channels,
    connection_setup,
    operator_bot_config,
)
from crm.wiring.sandbox import sync_sandbox
from sandbox import model as sandbox_model
from sandbox import page as sandbox_page

# The emulators' API paths (what adapters and the operator bot call), as opposed to their
# control API and page.
SANDBOX_API_CALLS = ("/sandbox/telegram/bot", "/sandbox/telegram/file/", "/sandbox/graph/")

API_PREFIX = "/api/v1"

if TYPE_CHECKING:
    # The HTTP API reaches the AI through the crm.assistant port: mypy checks the edge fits it.
    _ASSISTANT_PORT: type[AiAssistant] = Assistant


def build_api_router() -> APIRouter:
    """Every /api/v1 router, in one place."""
    # Query strings are checked here once, so no listing's filter can carry a NUL to the database.
    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(reject_control_characters)])
    api.include_router(orgs.router)
    api.include_router(contacts_io.router)  # static /contacts/... paths before /contacts/{id}
    api.include_router(contacts.router)
    api.include_router(companies.router)
    api.include_router(pipelines.router)
    api.include_router(deals.router)
    api.include_router(notes.router)
    api.include_router(tags.router)
    api.include_router(events.router)
    api.include_router(channels.router)
    api.include_router(conversations.router)
    api.include_router(ai_settings.router)
    api.include_router(memory.router)
    api.include_router(intents.router)
    api.include_router(drafts.router)
    api.include_router(knowledge.router)
    api.include_router(agents.router)
    api.include_router(ai_modes.router)
    return api


def _webhook_runtime(app: FastAPI, wiring: ChannelWiring, assistant: Assistant) -> WebhookRuntime:
    async def enqueue_ingest(connection_id: int, body: bytes) -> None:
        # A lead wrote: the AI's models are about to be needed (intent, memory); they load in
        # the background while the message is stored, not at start-up.
        assistant.prepare()
        queue = getattr(app.state, "task_queue", None)
        if queue is None:
            # No backbone (an app embedded in tests without one): process in the request.
            await process_webhook(wiring.runtime, connection_id, body)
            return
        await queue.enqueue(INGEST_TASK, connection_id, body.decode("utf-8", "replace"))

    return WebhookRuntime(load_connection=wiring.connections.load, enqueue_ingest=enqueue_ingest)


async def _settled(task: asyncio.Task[Any]) -> None:
    """Wait for a task that may have failed or been cancelled (its owner reported that)."""
    with contextlib.suppress(BaseException):
        await task


def create_app(
    settings: Settings | None = None, *, manage_db: bool = True, run_backbone: bool = True
) -> FastAPI:
    """Build the app; with ``manage_db`` it opens and closes the database itself.

    With ``run_backbone`` it also runs the event backbone (outbox relay, scheduler, in-process
    or Redis workers) for as long as it serves.
    """
    settings = settings or Settings()
    install_log_redaction()
    for secret in settings.secret_values():
        register_secret(secret)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    wiring = build_channels(settings, serve_sandbox=True)
    assistant = build_assistant(settings, wiring.cipher)
    # Before the bot's handlers: a lead notification then shows the message's intent.
    assistant.install(event_handlers)
    bot_config = operator_bot_config(wiring)
    operator = None if bot_config is None else DeferredOperatorBot(wiring, assistant, bot_config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_db:
            await init_db(settings.database_url)
        try:
            await sync_sandbox(wiring)
            async with AsyncExitStack() as stack:
                if operator is not None:
                    # Not on the path to readiness: the bot loads on first need (see
                    # DeferredOperatorBot). Left last: workers stop before its session closes.
                    stack.push_async_callback(operator.stop)
                    event_handlers.before_dispatch(
                        operator.ensure_started, OPERATOR_BOT_EVENT_TYPES
                    )
                    stack.callback(event_handlers.remove_before_dispatch, operator.ensure_started)
                    if operator.eager:
                        eager = asyncio.create_task(operator.ensure_started())
                        stack.push_async_callback(_settled, eager)
                if run_backbone:
                    config = BackboneConfig(
                        relay_interval=settings.relay_interval_seconds,
                        scheduler_interval=settings.scheduler_interval_seconds,
                        embedded_worker=settings.embedded_worker,
                    )
                    backbone = await stack.enter_async_context(
                        embedded_backbone(settings.redis_url, config)
                    )
                    app.state.backbone = backbone
                    # Its scheduler also sends the periodic tasks (crm.tasks.periodic):
                    # housekeeping, and the bot's digest and team inbox rounds.
                    app.state.task_queue = TaskiqTaskQueue(backbone)
                # The AI's models load on first need (see Assistant.prepare), never here.
                stack.push_async_callback(assistant.close)
                yield
        finally:
            await assistant.memory.flush()
            await wiring.close()
            if manage_db:
                await close_db()

    app = FastAPI(
        title="Chat CRM",
        version="0.1.0",
        description="A chat-first AI CRM: contacts, companies, pipelines, deals, audit log.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load Swagger UI and ReDoc from a CDN: install_docs
        redoc_url=None,
    )
    install_docs(app)
    app.state.settings = settings
    app.state.channels = wiring
    app.state.cipher = wiring.cipher
    app.state.media_store = wiring.media_store
    app.state.public_base_url = settings.base_url
    app.state.sandbox_base_url = settings.base_url
    app.state.connection_setup = connection_setup(wiring)
    app.state.operator = operator  # the bot loads on first need: operator.ensure_started()
    app.state.assistant = assistant
    install_problem_handlers(app)
    # Webhooks first: routes match in order, and they are the hottest path.
    app.state.webhooks = _webhook_runtime(app, wiring, assistant)
    app.include_router(whatsapp_webhook.router)
    app.include_router(telegram_webhook.router)
    if operator is not None and operator.config.mode == "webhook":
        app.include_router(operator_webhook.router)  # feeds app.state.operator
    app.include_router(health.router)
    app.include_router(build_api_router())
    if wiring.whatsapp_emulator is not None and wiring.telegram_emulator is not None:
        app.include_router(wiring.whatsapp_emulator.router)
        app.include_router(wiring.telegram_emulator.router)
        app.include_router(sandbox_page.router)
        app.include_router(sandbox_model.build_router())

        last_api_sync = [0.0]
        production = settings.environment is Environment.PRODUCTION

        @app.middleware("http")
        async def sandbox_sync(request: Request, call_next: Any) -> Any:
            path = request.url.path
            if sandbox_page.is_control_path(path):
                # The control API plays every workspace's leads and re-points webhooks: only
                # for a person or a test on this machine, and never in production.
                if production:
                    return problem(404, "Not found", "the sandbox is not served in production")
                if not sandbox_page.from_this_machine(request):
                    return problem(
                        403,
                        "Forbidden",
                        "the sandbox is served to this machine only (loopback, not through a "
                        "proxy)",
                    )
            if path.startswith(SANDBOX_API_CALLS):
                # Bot API and Graph API calls come from this service's own senders, hundreds a
                # second under load: a connection another process added is picked up within
                # a second, not looked up on every call.
                now = time.monotonic()
                if now - last_api_sync[0] >= 1.0:
                    last_api_sync[0] = now
                    await sync_sandbox(wiring)
            elif path.startswith("/sandbox/"):
                await sync_sandbox(wiring)  # a person or a test acting: always current
            return await call_next(request)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app
