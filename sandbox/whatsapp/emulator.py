"""The WhatsApp Cloud API emulator: every area in one class, a standalone app and command."""

from __future__ import annotations

import argparse
import datetime as dt
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI

from sandbox.persist import StateFile
from sandbox.whatsapp.control import build_control_router
from sandbox.whatsapp.graph import GraphMethods
from sandbox.whatsapp.lead import LeadActions
from sandbox.whatsapp.snapshot import StateSnapshots
from sandbox.whatsapp.wire import utcnow


class WhatsAppEmulator(StateSnapshots, LeadActions, GraphMethods):
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
        clock: Callable[[], dt.datetime] = utcnow,
        state_path: Path | None = None,
    ) -> None:
        """With ``state_path`` the state is loaded from that file and saved to it as it changes."""
        super().__init__(
            auto_read=auto_read,
            status_before_response=status_before_response,
            status_delay=status_delay,
            push_attempts=push_attempts,
            retry_backoff=retry_backoff,
            shuffle_window=shuffle_window,
            push_timeout=push_timeout,
            rng=rng,
            clock=clock,
        )
        self._state = StateFile(state_path, self._snapshot) if state_path is not None else None
        if self._state is not None and (saved := self._state.load()) is not None:
            self._restore(saved)
        self.router = self._build_router()

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

    def _build_router(self) -> APIRouter:
        router = self._graph_router()
        router.include_router(build_control_router(self))
        return router


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
    """``python -m sandbox.whatsapp --port 8081``."""
    import uvicorn

    parser = argparse.ArgumentParser(
        description="A local WhatsApp Cloud API (DESIGN section 6): Graph endpoints, signed "
        "webhooks, control API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args(argv)
    uvicorn.run(create_emulator_app(WhatsAppEmulator()), host=args.host, port=args.port)
