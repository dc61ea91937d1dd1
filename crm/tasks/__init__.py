"""Task wiring: the taskiq broker, the outbox relay, event handlers, schedules, periodic tasks.

This package file stays free of taskiq imports, so the domain may type its collaborators with
the ``TaskQueue`` protocol below without pulling the SDK in (DESIGN section 3).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol


class TaskQueue(Protocol):
    """What the domain may ask of the task queue: run a task now, later, or not at all."""

    async def enqueue(self, task_name: str, *args: Any) -> None:
        """Send a task to the workers now."""
        ...

    async def schedule_at(self, task_name: str, when: dt.datetime, *args: Any) -> str:
        """Send a task at ``when`` (timezone-aware); returns the schedule id."""
        ...

    async def cancel(self, schedule_id: str) -> None:
        """Forget a schedule that has not fired yet; unknown ids are ignored."""
        ...


__all__ = ["TaskQueue"]
