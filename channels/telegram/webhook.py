"""``POST /webhooks/telegram/{connection_id}``: verify Telegram's secret header, enqueue, 200.

Telegram signs nothing; ``setWebhook(secret_token=...)`` makes it send the secret back in
``X-Telegram-Bot-Api-Secret-Token`` on every push, and that header is all that tells our
updates from anyone else's POST. Parsing and storing happen on a worker (``enqueue_ingest``),
so Telegram gets its answer fast and does not redeliver.
"""

from __future__ import annotations

import json
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from channels.base import WebhookRuntime
from crm.messaging import ChannelKind

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

router = APIRouter()


def _inline_answer(body: bytes) -> Response:
    """Answer a button press in the webhook reply itself, which the Bot API allows.

    Without an answerCallbackQuery the lead's button keeps spinning; answering here costs no
    extra request and does not wait for the worker.
    """
    try:
        data = json.loads(body)
    except ValueError:
        return Response(status_code=200)
    query = data.get("callback_query") if isinstance(data, dict) else None
    if isinstance(query, dict) and isinstance(query.get("id"), str):
        return JSONResponse({"method": "answerCallbackQuery", "callback_query_id": query["id"]})
    return Response(status_code=200)


async def _runtime(request: Request) -> WebhookRuntime:
    """The webhook collaborators the composition root put on ``app.state.webhooks``."""
    return request.app.state.webhooks


RuntimeDep = Annotated[WebhookRuntime, Depends(_runtime)]


@router.post("/webhooks/telegram/{connection_id}", include_in_schema=False)
async def telegram_webhook(connection_id: int, request: Request, runtime: RuntimeDep) -> Response:
    """Verify the secret header and hand the raw update to a worker."""
    connection = await runtime.load_connection(connection_id)
    if connection is None or connection.kind != ChannelKind.TELEGRAM:
        raise HTTPException(404, "unknown Telegram connection")
    given = request.headers.get(SECRET_HEADER)
    if not given:
        raise HTTPException(401, f"{SECRET_HEADER} header missing")
    expected = connection.credentials.get("webhook_secret") or ""
    # Bytes, so a non-ASCII header is a mismatch rather than a TypeError.
    if not expected or not secrets.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(403, f"{SECRET_HEADER} does not match")
    body = await request.body()
    await runtime.enqueue_ingest(connection_id, body)
    return _inline_answer(body)
