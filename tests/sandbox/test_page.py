"""The /sandbox page and control API inside the service: who may use them, and signing in."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from crm.app import create_app
from crm.models import SignInLink
from crm.services.accounts.signin import do_issue_sign_in
from crm.settings import Environment, SandboxMode, Settings
from tests.support.workspace import Workspace

SECRET = "x" * 40


def _client(app: FastAPI, host: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 50123))
    return httpx.AsyncClient(transport=transport, base_url="http://crm.test")


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings, manage_db=False, run_backbone=False)


@pytest.fixture
async def local(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app) as http:
        yield http


@pytest.mark.parametrize(
    "path",
    ["/sandbox", "/sandbox/whatsapp/outbox", "/sandbox/whatsapp/connections", "/sandbox/page.js"],
)
async def test_the_control_api_and_page_serve_this_machine_only(
    app: FastAPI, local: httpx.AsyncClient, path: str
) -> None:
    assert (await local.get(path)).status_code == 200
    async with _client(app, "203.0.113.7") as remote:
        refused = await remote.get(path)
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert "this machine only" in refused.json()["detail"]
    # Through a reverse proxy on this machine the request still comes from elsewhere.
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        proxied = await local.get(path, headers={header: "203.0.113.7"})
        assert proxied.status_code == 403, header


async def test_anyone_cannot_re_point_a_webhook(app: FastAPI) -> None:
    async with _client(app, "198.51.100.2") as remote:
        registered = await remote.post(
            "/sandbox/whatsapp/connections",
            json={
                "connection_id": "1",
                "phone_id": "1",
                "token": "t",
                "app_secret": "s",
                "webhook_url": "http://198.51.100.2/steal",
            },
        )
        assert registered.status_code == 403
        updated = await remote.post(
            "/sandbox/telegram/updates", json={"connection_id": "1", "from_user_id": 1, "text": "x"}
        )
        assert updated.status_code == 403
    assert app.state.channels.whatsapp_emulator.connections == {}


async def test_the_wire_apis_stay_reachable_with_their_tokens(app: FastAPI) -> None:
    async with _client(app, "203.0.113.7") as remote:
        graph = await remote.post("/sandbox/graph/v22.0/123/messages", json={})
        assert graph.status_code == 400 and "error" in graph.json()  # Meta's shape, not 403
        bot = await remote.get("/sandbox/telegram/bot123:abc/getMe")
        assert bot.status_code == 401 and bot.json()["description"] == "Unauthorized"
        # /sandbox/telegram/bots (register a bot) is control, not the Bot API.
        assert (await remote.post("/sandbox/telegram/bots", json={})).status_code == 403


async def test_never_in_production(settings: Settings) -> None:
    production = settings.model_copy(
        update={
            "environment": Environment.PRODUCTION,
            "sandbox": SandboxMode.ON,
            "secret_key": settings.secret_key.__class__(SECRET),
        }
    )
    app = create_app(production, manage_db=False, run_backbone=False)
    async with _client(app) as local:
        assert (await local.get("/sandbox")).status_code == 404
        assert (await local.get("/sandbox/whatsapp/outbox")).status_code == 404


async def test_the_page_loads_nothing_from_another_origin(local: httpx.AsyncClient) -> None:
    page = await local.get("/sandbox")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    for directive in ("script-src 'self'", "style-src 'self'", "connect-src 'self'"):
        assert directive in policy
    assert "unsafe-inline" not in policy
    assert page.headers["referrer-policy"] == "no-referrer"
    # Every resource the page names is on this origin, and nothing is inline.
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", page.text)
    assert references and all(r.startswith("/") and not r.startswith("//") for r in references)
    assert "<script>" not in page.text and "<style>" not in page.text
    assert " style=" not in page.text
    for asset in ("/sandbox/page.js", "/sandbox/page.css"):
        served = await local.get(asset)
        assert served.status_code == 200
        assert not re.search(r"https?://", served.text)


async def test_the_lead_pane_asks_only_for_its_own_connection(local: httpx.AsyncClient) -> None:
    script = (await local.get("/sandbox/page.js")).text
    outbox_calls = re.findall(r'"/sandbox/whatsapp/outbox\?[^"]*"', script)
    assert outbox_calls and all("connection_id=" in call for call in outbox_calls)
    assert "#key=" not in script  # no key travels in a link


async def test_a_sign_in_link_works_once(
    local: httpx.AsyncClient, workspace: Workspace, other_workspace: Workspace
) -> None:
    token = await do_issue_sign_in(workspace.actor)
    stored = await SignInLink.get(tenant_id=workspace.tenant_id)
    assert token not in stored.token_hash  # only a hash is kept
    assert (await local.get("/sandbox", params={"signin": token})).status_code == 200

    session = await local.post("/sandbox/session", json={"token": token})
    assert session.status_code == 200, session.text
    body = session.json()
    assert body["tenant_id"] == workspace.tenant_id and body["workspace"] == "Acme"
    key = {"Authorization": f"Bearer {body['api_key']}"}
    assert (await local.get("/api/v1/channels", headers=key)).status_code == 200
    # Scoped to the workspace of the link, with read and write but not admin rights.
    organization = (await local.get("/api/v1/organization", headers=key)).json()
    assert organization["id"] == workspace.tenant_id != other_workspace.tenant_id
    keys = (await local.get("/api/v1/api-keys", headers=workspace.headers)).json()["items"]
    assert [k["scopes"] for k in keys if k["name"] == "sandbox page"] == [["read", "write"]]

    again = await local.post("/sandbox/session", json={"token": token})
    assert again.status_code == 410
    assert again.headers["content-type"] == "application/problem+json"
    assert "already used" in again.json()["detail"]
    assert again.json()["errors"][0]["field"] == "token"


async def test_an_expired_or_unknown_sign_in_link_is_refused(
    local: httpx.AsyncClient, workspace: Workspace
) -> None:
    token = await do_issue_sign_in(workspace.actor)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    await SignInLink.filter(tenant_id=workspace.tenant_id).update(expires_at=past)
    expired = await local.post("/sandbox/session", json={"token": token})
    assert expired.status_code == 410 and "expired" in expired.json()["detail"]

    unknown = await local.post("/sandbox/session", json={"token": "not-a-token"})
    assert unknown.status_code == 400 and "not valid" in unknown.json()["detail"]
    empty = await local.post("/sandbox/session", json={})
    assert empty.status_code == 422 and empty.json()["errors"][0]["field"] == "token"


async def test_a_sign_in_link_expires_after_fifteen_minutes(workspace: Workspace) -> None:
    before = dt.datetime.now(dt.UTC)
    await do_issue_sign_in(workspace.actor)
    link = await SignInLink.get(tenant_id=workspace.tenant_id)
    assert (
        dt.timedelta(minutes=14) < link.expires_at - before <= dt.timedelta(minutes=15, seconds=5)
    )
