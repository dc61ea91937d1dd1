"""A stand-in for the service's webhook endpoint: records what the emulator pushes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from channels.whatsapp import verify_signature


@dataclass
class Received:
    """One push as it arrived."""

    body: bytes
    signature: str | None
    valid: bool

    @property
    def json(self) -> dict[str, Any]:
        """The parsed body."""
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class RecordingReceiver:
    """``POST /hook``: checks the signature with ``app_secret``, records, answers 200.

    ``fail_next`` makes the next n requests answer 503 (not recorded), to exercise retries.
    """

    app_secret: str
    fail_next: int = 0
    received: list[Received] = field(default_factory=list)
    app: FastAPI = field(default_factory=FastAPI)

    def __post_init__(self) -> None:
        @self.app.post("/hook")
        async def hook(request: Request) -> Response:
            if self.fail_next > 0:
                self.fail_next -= 1
                return JSONResponse({"ok": False}, status_code=503)
            body = await request.body()
            signature = request.headers.get("X-Hub-Signature-256")
            self.received.append(
                Received(body, signature, verify_signature(self.app_secret, body, signature))
            )
            return JSONResponse({"ok": True})

    def values(self) -> list[dict[str, Any]]:
        """The ``value`` of every change received, in arrival order."""
        return [
            change["value"]
            for r in self.received
            for entry in r.json["entry"]
            for change in entry["changes"]
        ]

    def statuses(self, message_id: str | None = None) -> list[str]:
        """Statuses received (for one message id), in arrival order."""
        return [
            s["status"]
            for v in self.values()
            for s in v.get("statuses", [])
            if message_id is None or s["id"] == message_id
        ]

    def message_ids(self) -> list[str]:
        """Ids of the inbound messages received, in arrival order."""
        return [m["id"] for v in self.values() for m in v.get("messages", [])]
