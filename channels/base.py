"""What every channel edge gets from the composition root: connection lookup and a queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from crm.messaging import ConnectionInfo

INGEST_TASK = "channels.ingest"


@dataclass(frozen=True)
class WebhookRuntime:
    """Collaborators of the webhook views, wired by ``crm.app``.

    ``load_connection`` answers None for an unknown or disabled connection id (the view then
    answers 404); ``enqueue_ingest`` hands a verified raw body to a worker, which parses it with
    the channel's adapter and stores what it carries.
    """

    load_connection: Callable[[int], Awaitable[ConnectionInfo | None]]
    enqueue_ingest: Callable[[int, bytes], Awaitable[None]]
