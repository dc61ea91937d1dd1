"""``POST /webhooks/operator``: Telegram's secret header checked, the update fed to aiogram."""

from __future__ import annotations

import json
import secrets
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
PATH = "/webhooks/operator"

router = APIRouter()


class UpdateSink(Protocol):
    """What receives the verified updates (the OperatorBot)."""

    webhook_secret: str

    async def feed(self, update: dict[str, Any]) -> None:
        """Process one update."""


async def _sink(request: Request) -> UpdateSink:
    """The operator bot the composition root put on ``app.state.operator``."""
    return request.app.state.operator


SinkDep = Annotated[UpdateSink, Depends(_sink)]


@router.post(PATH, include_in_schema=False)
async def operator_webhook(request: Request, sink: SinkDep) -> Response:
    """Verify the secret header and process the update."""
    given = request.headers.get(SECRET_HEADER)
    if not given:
        raise HTTPException(401, f"{SECRET_HEADER} header missing")
    if not secrets.compare_digest(given.encode(), sink.webhook_secret.encode()):
        raise HTTPException(403, f"{SECRET_HEADER} does not match")
    try:
        update = json.loads(await request.body())
    except ValueError:
        raise HTTPException(400, "the body is not JSON") from None
    if not isinstance(update, dict):
        raise HTTPException(400, "an update is a JSON object")
    await sink.feed(update)  # never raises: a failing handler must not make Telegram retry
    return Response(status_code=200)
