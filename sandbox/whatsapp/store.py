"""The emulator's core state: business numbers, templates, test settings, and saving."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import hmac
import random
from collections.abc import Callable

import httpx
from fastapi import Request

from sandbox.persist import StateFile
from sandbox.whatsapp.records import (
    DEFAULT_TEMPLATES,
    Delivery,
    EmulatedConnection,
    Fault,
    OutboxEntry,
    Push,
    StoredMedia,
    Template,
)
from sandbox.whatsapp.wire import FaultKind, digits, lead_id, unauthorized


class WhatsAppStore:
    """Registered numbers, templates, the outbox and media; the base of every area."""

    def __init__(
        self,
        *,
        auto_read: bool,
        status_before_response: bool,
        status_delay: float,
        push_attempts: int,
        retry_backoff: float,
        shuffle_window: float,
        push_timeout: float,
        rng: random.Random | None,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.auto_read = auto_read
        self.status_before_response = status_before_response
        self.status_delay = status_delay
        self.push_attempts = push_attempts
        self.retry_backoff = retry_backoff
        self.shuffle_window = shuffle_window
        self.push_timeout = push_timeout
        self.drain_timeout = 30.0
        self.rng = rng or random.Random()
        self.clock = clock
        self.duplicates = 1
        self.shuffle = False
        self.connections: dict[str, EmulatedConnection] = {}
        self.templates: dict[tuple[str, str], Template] = {}
        self.deliveries: list[Delivery] = []
        self.read_marks: list[str] = []
        self._outbox: list[OutboxEntry] = []
        self._media: dict[str, StoredMedia] = {}
        self._last_inbound: dict[tuple[str, str], dt.datetime] = {}
        self._conversations: dict[tuple[str, str], tuple[str, dt.datetime]] = {}
        self._faults: list[Fault] = []
        self._queues: dict[str, collections.deque[Push]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._progress: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self._reset_state()
        self._state: StateFile | None = None

    def _changed(self) -> None:
        if self._state is not None:
            self._state.changed()

    def save(self) -> None:
        """Write the state file now (no-op without a ``state_path``)."""
        if self._state is not None:
            self._state.save()

    def _reset_state(self) -> None:
        self.duplicates = 1
        self.shuffle = False
        self.connections.clear()
        self.templates = {(t.name, t.language): t for t in DEFAULT_TEMPLATES}
        self.deliveries.clear()
        self.read_marks.clear()
        self._outbox.clear()
        self._media.clear()
        self._last_inbound.clear()
        self._conversations.clear()
        self._faults.clear()

    async def _stop_pushing(self) -> None:
        tasks = [*self._workers.values(), *self._progress]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        self._progress.clear()
        self._queues.clear()

    def register_connection(
        self,
        connection_id: str,
        phone_id: str,
        token: str,
        app_secret: str,
        webhook_url: str,
        waba_id: str | None = None,
        display_phone_number: str | None = None,
    ) -> EmulatedConnection:
        """Add (or replace) a business number whose webhooks go to ``webhook_url``."""
        phone_id = str(phone_id)
        connection = EmulatedConnection(
            connection_id=str(connection_id),
            phone_id=phone_id,
            token=token,
            app_secret=app_secret,
            webhook_url=webhook_url,
            waba_id=str(waba_id) if waba_id is not None else "10" + digits(phone_id),
            display_phone_number=display_phone_number or "1555" + digits(phone_id)[-7:],
        )
        self.connections[connection.connection_id] = connection
        self._changed()
        return connection

    def add_template(
        self, name: str, language: str, body: str, category: str = "utility"
    ) -> Template:
        """Approve a template; its parameter count is the number of ``{{n}}`` in ``body``."""
        template = Template(name, language, body, category)
        self.templates[(name, language)] = template
        self._changed()
        return template

    def set_last_inbound(self, connection_id: str, wa_id: str, at: dt.datetime | None) -> None:
        """Pretend the lead last wrote at ``at`` (None closes the 24-hour window)."""
        key = (self._connection(connection_id).phone_id, lead_id(wa_id))
        if at is None:
            self._last_inbound.pop(key, None)
        else:
            self._last_inbound[key] = at
        self._changed()

    def add_fault(
        self,
        kind: FaultKind,
        count: int = 1,
        *,
        connection_id: str | None = None,
        delay: float = 1.0,
        status: int = 500,
    ) -> None:
        """Make the next ``count`` send calls fail (or, for ``slow``, answer after ``delay``)."""
        self._faults.append(
            Fault(kind, count, str(connection_id) if connection_id else None, delay, status)
        )

    def clear_faults(self) -> None:
        """Sends succeed again."""
        self._faults.clear()

    def configure_delivery(self, *, duplicates: int = 1, shuffle: bool = False) -> None:
        """Deliver every push ``duplicates`` times; with ``shuffle``, in random order."""
        self.duplicates = max(1, duplicates)
        self.shuffle = shuffle

    def outbox(self, to: str | None = None, connection_id: str | None = None) -> list[OutboxEntry]:
        """What the business sent, oldest first, optionally for one lead or connection."""
        wa_id = lead_id(to) if to else None
        return [
            e
            for e in self._outbox
            if (wa_id is None or e.to == wa_id)
            and (connection_id is None or e.connection_id == str(connection_id))
        ]

    def media_bytes(self, media_id: str) -> bytes:
        """The stored bytes of a media id (KeyError when unknown)."""
        return self._media[media_id].data

    def _connection(self, connection_id: str | int) -> EmulatedConnection:
        try:
            return self.connections[str(connection_id)]
        except KeyError:
            raise KeyError(f"unknown connection {connection_id}") from None

    def _by_phone(self, phone_id: str) -> EmulatedConnection | None:
        # The most recent registration of a phone id wins, like re-pointing a webhook.
        found = None
        for connection in self.connections.values():
            if connection.phone_id == phone_id:
                found = connection
        return found

    @staticmethod
    def _check_token(request: Request, connection: EmulatedConnection) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), connection.token.encode()
        ):
            raise unauthorized()
