"""Work an update starts but must not wait for (a CSV import): tracked, cancelled on stop.

Handlers get the ``OperatorBot``'s ``BackgroundTasks`` as ``background`` in middleware data. A task
is keyed (e.g. by the operator's Telegram id), so one operator runs one such job at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Hashable
from typing import Any

logger = logging.getLogger(__name__)


class BackgroundTasks:
    """The running background jobs of one operator bot."""

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[Any], Hashable | None] = {}
        self._closed = False

    def running(self, key: Hashable) -> bool:
        """Whether a job with this key is still running."""
        return any(k == key and not task.done() for task, k in self._tasks.items())

    def spawn(
        self, work: Coroutine[Any, Any, Any], *, key: Hashable | None = None, name: str = ""
    ) -> asyncio.Task[Any]:
        """Run ``work`` in the background; an exception it raises is logged, never lost."""
        if self._closed:
            work.close()
            raise RuntimeError("the operator bot is stopping")
        task = asyncio.create_task(work, name=name or None)
        self._tasks[task] = key
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("background task %s failed", task.get_name(), exc_info=exc)

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        """Cancel every job and wait for them (each may tell its operator it was interrupted)."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
