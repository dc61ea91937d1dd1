"""The composition root of the HTTP service: settings in, a FastAPI app out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from crm.api import contacts, health, orgs
from crm.api.limits import BodySizeLimit
from crm.api.problems import install_problem_handlers
from crm.db import close_db, init_db
from crm.settings import Settings

API_PREFIX = "/api/v1"


def build_api_router() -> APIRouter:
    """Every /api/v1 router, in one place."""
    api = APIRouter(prefix=API_PREFIX)
    api.include_router(orgs.router)
    api.include_router(contacts.router)
    return api


def create_app(settings: Settings | None = None, *, manage_db: bool = True) -> FastAPI:
    """Build the app; with ``manage_db`` it opens and closes the database itself."""
    settings = settings or Settings()
    logging.getLogger("httpx").setLevel(logging.WARNING)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_db:
            await init_db(settings.database_url)
        try:
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
