"""The whole service on a real loopback port, sandbox emulators inside, for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from crm.app import create_app
from crm.settings import SandboxMode, Settings
from tests.support.servers import QuietServer


@dataclass
class RunningService:
    """A served app and an HTTP client pointed at it."""

    app: FastAPI
    base_url: str
    http: httpx.AsyncClient


@contextlib.asynccontextmanager
async def running_service(settings: Settings, **overrides: object) -> AsyncIterator[RunningService]:
    """Serve ``create_app`` with the event backbone, reachable at its own ``public_base_url``."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    configured = settings.model_copy(
        update={
            "public_base_url": base_url,
            "sandbox": SandboxMode.ON,
            "relay_interval_seconds": 0.02,
            **overrides,
        }
    )
    app = create_app(configured, manage_db=False, run_backbone=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    server = QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the service stopped before it started")
            await asyncio.sleep(0.005)
        # The AI handlers run before the notifications: a test's first lead message must not
        # wait for the model to load. Nor its first update for the operator bot to load.
        await app.state.assistant.warm_up()
        if app.state.operator is not None:
            await app.state.operator.ensure_started()
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            yield RunningService(app, base_url, http)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=15)
        sock.close()
