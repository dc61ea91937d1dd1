"""The composition root of the HTTP service: settings in, a FastAPI app out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import APIRouter, FastAPI

from crm.api import (
    companies,
    contacts,
    contacts_io,
    deals,
    events,
    health,
    notes,
    orgs,
    pipelines,
    tags,
)
from crm.api.limits import BodySizeLimit
from crm.api.problems import install_problem_handlers
from crm.db import close_db, init_db
from crm.settings import Settings
from crm.tasks.broker import BackboneConfig
from crm.tasks.runtime import embedded_backbone
from crm.tasks.schedule import TaskiqTaskQueue

API_PREFIX = "/api/v1"


def build_api_router() -> APIRouter:
    """Every /api/v1 router, in one place."""
    api = APIRouter(prefix=API_PREFIX)
    api.include_router(orgs.router)
    api.include_router(contacts_io.router)  # static /contacts/... paths before /contacts/{id}
    api.include_router(contacts.router)
    api.include_router(companies.router)
    api.include_router(pipelines.router)
    api.include_router(deals.router)
    api.include_router(notes.router)
    api.include_router(tags.router)
    api.include_router(events.router)
    return api


def create_app(
    settings: Settings | None = None, *, manage_db: bool = True, run_backbone: bool = True
) -> FastAPI:
    """Build the app; with ``manage_db`` it opens and closes the database itself.

    With ``manage_db`` and ``run_backbone`` it also runs the event backbone (outbox relay,
    scheduler, in-process or Redis workers) for as long as it serves.
    """
    settings = settings or Settings()
    logging.getLogger("httpx").setLevel(logging.WARNING)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_db:
            await init_db(settings.database_url)
        try:
            async with AsyncExitStack() as stack:
                if manage_db and run_backbone:
                    config = BackboneConfig(
                        relay_interval=settings.relay_interval_seconds,
                        scheduler_interval=settings.scheduler_interval_seconds,
                    )
                    backbone = await stack.enter_async_context(
                        embedded_backbone(settings.redis_url, config)
                    )
                    app.state.backbone = backbone
                    app.state.task_queue = TaskiqTaskQueue(backbone)
                yield
        finally:
            if manage_db:
                await close_db()

    app = FastAPI(
        title="Chat CRM",
        version="0.1.0",
        description="A chat-first AI CRM: contacts, companies, pipelines, deals, audit log.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(build_api_router())
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app
