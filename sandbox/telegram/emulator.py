"""The Telegram Bot API emulator: every API area in one class, and a standalone app."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from fastapi import FastAPI

from sandbox.persist import StateFile
from sandbox.telegram.bots import BotMethods
from sandbox.telegram.chats import ChatMethods
from sandbox.telegram.inspection import Inspection
from sandbox.telegram.messages import MessageMethods
from sandbox.telegram.router import build_router
from sandbox.telegram.snapshot import StateSnapshots
from sandbox.telegram.users import UserActions


class TelegramEmulator(
    StateSnapshots, UserActions, MessageMethods, ChatMethods, BotMethods, Inspection
):
    """In-memory Telegram Bot API with a control API for playing the users."""

    def __init__(
        self,
        *,
        webhook_retry_delays: Iterable[float] = (0.05, 0.25, 1.0),
        webhook_timeout: float = 10.0,
        enforce_limits: bool = False,
        shuffle_window: float = 0.05,
        rng: random.Random | None = None,
        state_path: Path | None = None,
    ) -> None:
        """``rng`` makes shuffled delivery reproducible; ``shuffle_window`` batches pushes.

        With ``state_path`` the state is loaded from that file and saved to it as it changes.
        """
        super().__init__(
            webhook_retry_delays=webhook_retry_delays,
            webhook_timeout=webhook_timeout,
            enforce_limits=enforce_limits,
            shuffle_window=shuffle_window,
            rng=rng,
        )
        self._methods = {
            name.removeprefix("_m_"): getattr(self, name)
            for name in dir(self)
            if name.startswith("_m_")
        }
        self._state = StateFile(state_path, self._snapshot) if state_path is not None else None
        if self._state is not None and (saved := self._state.load()) is not None:
            self._restore(saved)
        self.router = build_router(self)

    def reset(self, *, keep_bots: bool = True) -> None:
        """Forget chats, updates, faults and settings; registered bots stay unless asked."""
        for bot in self._bots.values():
            if bot.worker is not None:
                bot.worker.cancel()
        registered = [(b.connection_id, b.token, b.user["username"]) for b in self._bots.values()]
        self._bots.clear()
        self._by_token.clear()
        self._faults.clear()
        self._duplicates = 0
        self._shuffle = False
        self.enforce_limits = False
        self._in_flight = 0
        if self._idle is not None:
            self._idle.set()
        if keep_bots:
            for connection_id, token, username in registered:
                self.register_bot(connection_id, token, username)
        self._changed()

    async def aclose(self) -> None:
        """Stop pushing, save the state and close the HTTP client."""
        for bot in self._bots.values():
            if bot.worker is not None:
                bot.worker.cancel()
        self.save()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def create_emulator_app(emulator: TelegramEmulator | None = None) -> FastAPI:
    """A standalone app serving the emulator (and its control API) at the root."""
    emulator = emulator or TelegramEmulator()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await emulator.aclose()

    app = FastAPI(title="Telegram Bot API sandbox", lifespan=lifespan)
    app.include_router(emulator.router)
    app.state.telegram_emulator = emulator
    return app
