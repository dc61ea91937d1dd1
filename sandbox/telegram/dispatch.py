"""Bot API calls routed to their ``_m_<method>`` handlers, and injected faults."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from sandbox.telegram.records import BotState, Fault
from sandbox.telegram.store import TelegramStore
from sandbox.telegram.wire import Params, TelegramApiError, UploadedFile


class MethodDispatch(TelegramStore):
    """Runs Bot API calls; tests inject faults and delivery quirks."""

    async def call_method(
        self,
        token: str,
        method: str,
        params: dict[str, Any],
        files: dict[str, UploadedFile] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Run one Bot API call; returns the HTTP status and the JSON body Telegram sends."""
        bot = self._by_token.get(token)
        if bot is None:
            return 401, TelegramApiError(401, "Unauthorized").body()
        name = method.lower()
        handler = self._methods.get(name)
        if handler is None:
            return 404, TelegramApiError(404, "Not Found").body()
        try:
            await self._apply_fault(bot, name)
            result = handler(bot, Params(params, files or {}))
            if asyncio.iscoroutine(result):
                result = await result
        except TelegramApiError as exc:
            return exc.status, exc.body()
        self._changed()
        return 200, {"ok": True, "result": result}

    async def _apply_fault(self, bot: BotState, method: str) -> None:
        for fault in self._faults:
            if fault.remaining <= 0 or not fault.applies(bot.connection_id, method):
                continue
            fault.remaining -= 1
            if fault.kind == "slow":
                await asyncio.sleep(fault.delay)
                continue
            if fault.kind == "rate_limit":
                raise TelegramApiError(
                    429,
                    f"Too Many Requests: retry after {fault.retry_after}",
                    {"retry_after": fault.retry_after},
                )
            description = "Bad Gateway" if fault.status == 502 else "Internal Server Error"
            raise TelegramApiError(fault.status, description)
        self._faults = [f for f in self._faults if f.remaining > 0]

    # ---- faults and delivery settings ------------------------------------------------------

    def add_fault(
        self,
        kind: str,
        count: int = 1,
        *,
        connection_id: str | None = None,
        retry_after: int = 1,
        delay: float = 1.0,
        status: int = 500,
        methods: Iterable[str] | None = None,
    ) -> None:
        """Make the next ``count`` matching bot calls fail (or answer late)."""
        if kind not in ("rate_limit", "server_error", "slow"):
            raise ValueError(f"unknown fault kind {kind!r}")
        if status not in (500, 502, 503, 504):
            raise ValueError("status must be a 5xx code")
        self._faults.append(
            Fault(
                kind=kind,
                remaining=count,
                connection_id=connection_id,
                retry_after=retry_after,
                delay=delay,
                status=status,
                methods=frozenset(m.lower() for m in methods) if methods else None,
            )
        )

    def clear_faults(self) -> None:
        """Forget every injected fault."""
        self._faults.clear()

    def set_delivery(self, *, duplicates: int = 0, shuffle: bool = False) -> None:
        """Push every webhook update ``1 + duplicates`` times, optionally out of order."""
        self._duplicates = max(0, duplicates)
        self._shuffle = shuffle
