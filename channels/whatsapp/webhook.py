"""``GET``/``POST /webhooks/whatsapp/{connection_id}``: Meta's subscription check, signed updates.

A verified body goes to a worker (``enqueue_ingest``), so Meta gets its answer fast.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from channels.base import WebhookRuntime
from crm.messaging import ChannelKind, ConnectionInfo

from .signature import verify_signature

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"


router = APIRouter(tags=["webhooks"])


async def _runtime(request: Request) -> WebhookRuntime:
    """The webhook collaborators the composition root put on ``app.state.webhooks``."""
    return request.app.state.webhooks


RuntimeDep = Annotated[WebhookRuntime, Depends(_runtime)]


async def _load(runtime: WebhookRuntime, connection_id: str) -> ConnectionInfo | None:
    if not connection_id.isdigit():
        return None
    connection = await runtime.load_connection(int(connection_id))
    if connection is None or connection.kind != ChannelKind.WHATSAPP:
        return None
    return connection


@router.get("/webhooks/whatsapp/{connection_id}", include_in_schema=False)
async def verify(connection_id: str, request: Request, runtime: RuntimeDep) -> Response:
    """Meta's subscription handshake: echo ``hub.challenge`` for the right verify token."""
    connection = await _load(runtime, connection_id)
    if connection is None:
        return PlainTextResponse("unknown connection", status_code=404)
    params = request.query_params
    expected = connection.credentials.get("verify_token", "")
    given = params.get("hub.verify_token", "")
    if (
        params.get("hub.mode") == "subscribe"
        and expected
        and hmac.compare_digest(given.encode(), expected.encode())
    ):
        return PlainTextResponse(params.get("hub.challenge", ""))
    logger.warning("whatsapp webhook verification refused for connection %s", connection_id)
    return PlainTextResponse("verification failed", status_code=403)


@router.post("/webhooks/whatsapp/{connection_id}", include_in_schema=False)
async def receive(connection_id: str, request: Request, runtime: RuntimeDep) -> Response:
    """Check the signature over the raw body and hand the body to a worker; answer fast."""
    connection = await _load(runtime, connection_id)
    if connection is None:
        return JSONResponse({"ok": False, "error": "unknown connection"}, status_code=404)
    header = request.headers.get(SIGNATURE_HEADER)
    if header is None:
        return JSONResponse({"ok": False, "error": "signature missing"}, status_code=401)
    body = await request.body()
    if not verify_signature(connection.credentials.get("app_secret", ""), body, header):
        logger.warning("whatsapp webhook with a bad signature for connection %s", connection_id)
        return JSONResponse({"ok": False, "error": "bad signature"}, status_code=403)
    await runtime.enqueue_ingest(connection.id, body)
    logger.debug("whatsapp webhook for connection %s enqueued (%d bytes)", connection_id, len(body))
    return JSONResponse({"ok": True})
