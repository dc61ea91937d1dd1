"""Webhook pushes: signed, per connection in order, retried, optionally duplicated."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import logging
import secrets
from typing import Any

import httpx

from sandbox.whatsapp.records import Delivery, EmulatedConnection, OutboxEntry, Push
from sandbox.whatsapp.store import WhatsAppStore
from sandbox.whatsapp.wire import USER_ID_RE, WINDOW, sign_body

logger = logging.getLogger(__name__)


class WebhookPushes(WhatsAppStore):
    """Builds webhook payloads and pushes them from the background."""

    @staticmethod
    def _value(connection: EmulatedConnection) -> dict[str, Any]:
        return {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": connection.display_phone_number,
                "phone_number_id": connection.phone_id,
            },
        }

    @staticmethod
    def _envelope(
        connection: EmulatedConnection, value: dict[str, Any], field_name: str
    ) -> dict[str, Any]:
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {"id": connection.waba_id, "changes": [{"value": value, "field": field_name}]}
            ],
        }

    def _conversation(self, entry: OutboxEntry) -> tuple[str, dt.datetime]:
        key = (entry.phone_id, entry.to)
        now = self.clock()
        current = self._conversations.get(key)
        if current is None or current[1] <= now:
            current = (secrets.token_hex(16), now + WINDOW)
            self._conversations[key] = current
        return current

    def _push_status(
        self, connection: EmulatedConnection, entry: OutboxEntry, status: str, *, wait: bool = False
    ) -> asyncio.Future[bool] | None:
        now = self.clock()
        receipt: dict[str, Any] = {
            "id": entry.id,
            "status": status,
            "timestamp": str(int(now.timestamp())),
        }
        receipt["recipient_user_id" if USER_ID_RE.match(entry.to) else "recipient_id"] = entry.to
        tracker = entry.payload.get("biz_opaque_callback_data")
        if isinstance(tracker, str) and tracker:
            receipt["biz_opaque_callback_data"] = tracker
        if status != "read":
            conversation_id, expires = self._conversation(entry)
            conversation: dict[str, Any] = {
                "id": conversation_id,
                "origin": {"type": entry.category},
            }
            if status == "sent":
                conversation["expiration_timestamp"] = str(int(expires.timestamp()))
            receipt["conversation"] = conversation
            receipt["pricing"] = {
                "billable": True,
                "pricing_model": "CBP",
                "category": entry.category,
            }
        entry.status = status
        entry.statuses.append(status)
        self._changed()
        value = self._value(connection)
        value["statuses"] = [receipt]
        return self._enqueue(connection, self._envelope(connection, value, "messages"), wait=wait)

    def _progress_statuses(
        self, connection: EmulatedConnection, entry: OutboxEntry, steps: tuple[str, ...]
    ) -> None:
        steps = tuple(s for s in steps if s != "read" or self.auto_read)
        if self.status_delay <= 0:
            for status in steps:
                self._push_status(connection, entry, status)
            return

        async def walk() -> None:
            for status in steps:
                await asyncio.sleep(self.status_delay)
                self._push_status(connection, entry, status)

        task = asyncio.create_task(walk())
        self._progress.add(task)
        task.add_done_callback(self._progress.discard)

    def _enqueue(
        self, connection: EmulatedConnection, payload: dict[str, Any], *, wait: bool = False
    ) -> asyncio.Future[bool] | None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        done: asyncio.Future[bool] | None = (
            asyncio.get_running_loop().create_future() if wait else None
        )
        queue = self._queues.setdefault(connection.connection_id, collections.deque())
        for _ in range(self.duplicates):
            queue.append(Push(connection, body, done))
        if connection.connection_id not in self._workers:
            task = asyncio.create_task(self._run_worker(connection.connection_id))
            self._workers[connection.connection_id] = task
        return done

    async def _run_worker(self, connection_id: str) -> None:
        # One worker per connection keeps that connection's pushes in order.
        queue = self._queues[connection_id]
        try:
            while queue:
                if self.shuffle:
                    await asyncio.sleep(self.shuffle_window)  # let a batch gather
                    batch = list(queue)
                    queue.clear()
                    self.rng.shuffle(batch)
                else:
                    batch = [queue.popleft()]
                for push in batch:
                    await self._deliver(push)
        finally:
            self._workers.pop(connection_id, None)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.push_timeout)
        return self._http

    async def _deliver(self, push: Push) -> None:
        connection = push.connection
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign_body(connection.app_secret, push.body),
            "User-Agent": "facebookexternalua",
        }
        status_code: int | None = None
        error: str | None = None
        attempts = 0
        for attempt in range(1, self.push_attempts + 1):
            attempts = attempt
            try:
                response = await self._client().post(
                    connection.webhook_url, content=push.body, headers=headers
                )
            except httpx.TransportError as exc:
                status_code, error = None, type(exc).__name__
            else:
                status_code = response.status_code
                error = None if status_code < 400 else f"HTTP {status_code}"
                if status_code < 500:
                    break  # delivered, or refused for good (a 4xx will not get better)
            if attempt < self.push_attempts:
                await asyncio.sleep(self.retry_backoff * 2 ** (attempt - 1))
        ok = status_code is not None and 200 <= status_code < 300
        if not ok:
            logger.warning(
                "webhook push for connection %s failed after %d attempt(s): %s",
                connection.connection_id,
                attempts,
                error,
            )
        self.deliveries.append(
            Delivery(
                connection_id=connection.connection_id,
                url=connection.webhook_url,
                body=push.body,
                status_code=status_code,
                attempts=attempts,
                ok=ok,
                error=error,
            )
        )
        if push.done is not None and not push.done.done():
            push.done.set_result(ok)

    async def drain(self) -> None:
        """Wait until every pending webhook push was delivered (or gave up)."""
        async with asyncio.timeout(self.drain_timeout):
            while True:
                tasks = [*self._workers.values(), *self._progress]
                if not tasks:
                    return
                await asyncio.wait(tasks)
