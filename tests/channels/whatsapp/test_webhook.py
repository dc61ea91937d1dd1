"""The WhatsApp webhook views: Meta's verify handshake and signature checks before enqueueing."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from channels.whatsapp import verify_signature
from channels.whatsapp.webhook import router as webhook_router
from crm.messaging import ChannelKind
from tests.support.whatsapp import (
    APP_SECRET,
    CONNECTION_ID,
    VERIFY_TOKEN,
    Ingest,
    whatsapp_connection,
)

URL = f"/webhooks/whatsapp/{CONNECTION_ID}"
BODY = b'{"object":"whatsapp_business_account","entry":[]}'


def _sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def ingest() -> Ingest:
    ingest = Ingest()
    ingest.connections[CONNECTION_ID] = whatsapp_connection()
    telegram = dataclasses.replace(whatsapp_connection(), id=8, kind=ChannelKind.TELEGRAM)
    ingest.connections[8] = telegram
    return ingest


@pytest.fixture
async def http(ingest: Ingest) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.webhooks = ingest.runtime()
    app.include_router(webhook_router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as client:
        yield client


def _verify_params(token: str = VERIFY_TOKEN, mode: str = "subscribe") -> dict[str, str]:
    return {"hub.mode": mode, "hub.verify_token": token, "hub.challenge": "1158201444"}


async def test_verify_echoes_the_challenge_as_plain_text(http: httpx.AsyncClient) -> None:
    response = await http.get(URL, params=_verify_params())
    assert response.status_code == 200
    assert response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "params", [_verify_params(token="wrong"), _verify_params(mode="unsubscribe"), {}]
)
async def test_verify_refuses_anything_else(
    http: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await http.get(URL, params=params)
    assert response.status_code == 403
    assert "1158201444" not in response.text


@pytest.mark.parametrize(
    "path", ["/webhooks/whatsapp/99", "/webhooks/whatsapp/8", "/webhooks/whatsapp/x"]
)
async def test_unknown_or_non_whatsapp_connections_are_404(
    http: httpx.AsyncClient, ingest: Ingest, path: str
) -> None:
    assert (await http.get(path, params=_verify_params())).status_code == 404
    posted = await http.post(path, content=BODY, headers={"X-Hub-Signature-256": _sign(BODY)})
    assert posted.status_code == 404
    assert ingest.bodies == []


async def test_missing_signature_is_401(http: httpx.AsyncClient, ingest: Ingest) -> None:
    response = await http.post(URL, content=BODY)
    assert response.status_code == 401
    assert ingest.bodies == []


@pytest.mark.parametrize(
    "signature",
    [_sign(BODY, "other-secret"), _sign(BODY + b" "), "sha256=", "sha1=abc", "garbage"],
)
async def test_wrong_signature_is_403_and_nothing_is_enqueued(
    http: httpx.AsyncClient, ingest: Ingest, signature: str
) -> None:
    response = await http.post(URL, content=BODY, headers={"X-Hub-Signature-256": signature})
    assert response.status_code == 403
    assert ingest.bodies == []


async def test_right_signature_enqueues_the_raw_body(
    http: httpx.AsyncClient, ingest: Ingest
) -> None:
    # Bytes as sent, not re-serialized JSON: spacing and escapes must survive.
    body = b'{ "object": "whatsapp_business_account", "entry": [], "x": "\\u00e9" }'
    response = await http.post(
        URL,
        content=body,
        headers={"X-Hub-Signature-256": _sign(body), "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert ingest.bodies == [body]


def test_verify_signature() -> None:
    assert verify_signature(APP_SECRET, BODY, _sign(BODY))
    assert verify_signature(APP_SECRET, BODY, _sign(BODY).upper().replace("SHA256=", "sha256="))
    assert not verify_signature(APP_SECRET, BODY, None)
    assert not verify_signature("", BODY, _sign(BODY, ""))
    assert not verify_signature(APP_SECRET, BODY, _sign(BODY)[7:])
    assert not verify_signature(APP_SECRET, BODY + b"x", _sign(BODY))
