"""aiogram's HTTP sessions closed without the pause meant for TLS connections."""

from __future__ import annotations

import sys
from typing import Any

SESSION_MODULE = "aiogram.client.session.aiohttp"


def close_sessions_at_once() -> None:
    """Once aiogram is loaded, its sessions close without sleeping 250 ms afterwards.

    aiogram waits after closing a session for TLS connections to shut down gracefully; the bots
    of the tests talk plain HTTP on loopback, and the suite closes a session in hundreds of tests
    (the operator bot of every running service, each lead bot of the Telegram adapter).
    """
    module = sys.modules.get(SESSION_MODULE)
    if module is None or getattr(module.AiohttpSession.close, "at_once", False):
        return

    async def close(self: Any) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    close.at_once = True  # type: ignore[attr-defined]
    module.AiohttpSession.close = close
