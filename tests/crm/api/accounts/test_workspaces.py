"""Organization, members and API keys over HTTP."""

from __future__ import annotations

import httpx

from crm.models import Membership, Role, User
from crm.services.access import Actor
from crm.services.accounts.api_keys import do_create_api_key
from tests.support.workspace import Workspace


async def test_organization_is_the_key_s_own(
    client: httpx.AsyncClient, workspace: Workspace, other_workspace: Workspace
) -> None:
    r = await client.get("/api/v1/organization", headers=workspace.headers)
    assert r.status_code == 200
    assert r.json()["name"] == "Acme"
    r = await client.get("/api/v1/organization", headers=other_workspace.headers)
    assert r.json()["name"] == "Globex"


async def test_missing_or_wrong_key_is_401_problem(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    r = await client.get("/api/v1/organization")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert "Bearer" in r.json()["detail"]
    bad = workspace.token[:-4] + "xxxx"
    r = await client.get("/api/v1/organization", headers={"Authorization": f"Bearer {bad}"})
    assert r.status_code == 401


async def test_api_key_is_shown_once_and_stored_hashed(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    r = await client.post(
        "/api/v1/api-keys", json={"name": "zapier", "scopes": ["read"]}, headers=workspace.headers
    )
    assert r.status_code == 201
    token = r.json()["key"]
    listing = await client.get("/api/v1/api-keys", headers=workspace.headers)
    assert token not in listing.text
    assert all("key" not in item for item in listing.json()["items"])
    from crm.models import ApiKey

    stored = await ApiKey.get(id=r.json()["id"])
    assert token.split("_", 2)[2] not in stored.secret_hash
    # a read-only key cannot write
    ro = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/v1/organization", headers=ro)).status_code == 200
    r2 = await client.patch("/api/v1/organization", json={"name": "X"}, headers=ro)
    assert r2.status_code == 403
    assert "scope" in r2.json()["detail"]
    # revoked keys stop working
    await client.delete(f"/api/v1/api-keys/{r.json()['id']}", headers=workspace.headers)
    assert (await client.get("/api/v1/organization", headers=ro)).status_code == 401


async def test_viewer_reads_but_cannot_write(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    _, viewer = await workspace.member(Role.VIEWER)
    assert (await client.get("/api/v1/members", headers=viewer)).status_code == 200
    r = await client.patch("/api/v1/organization", json={"name": "Nope"}, headers=viewer)
    assert r.status_code == 403
    assert (await client.get("/api/v1/organization", headers=workspace.headers)).json()[
        "name"
    ] == "Acme"


async def test_last_owner_cannot_be_demoted(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    r = await client.patch(
        f"/api/v1/members/{workspace.owner_id}", json={"role": "admin"}, headers=workspace.headers
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "role"


async def test_admin_cannot_make_owner(client: httpx.AsyncClient, workspace: Workspace) -> None:
    _, admin = await workspace.member(Role.ADMIN)
    bidi_id, _ = await workspace.member(Role.BIDI)
    r = await client.patch(f"/api/v1/members/{bidi_id}", json={"role": "owner"}, headers=admin)
    assert r.status_code == 403
    r = await client.patch(f"/api/v1/members/{bidi_id}", json={"role": "viewer"}, headers=admin)
    assert r.status_code == 200 and r.json()["role"] == "viewer"


async def test_unknown_field_and_bad_json_are_named(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    r = await client.patch("/api/v1/organization", json={"nmae": "x"}, headers=workspace.headers)
    assert r.status_code == 422
    assert r.json()["errors"][0] == {"field": "nmae", "reason": "unknown field"}
    r = await client.patch(
        "/api/v1/organization",
        content=b"{bad json",
        headers={**workspace.headers, "content-type": "application/json"},
    )
    assert r.status_code == 422
    assert "malformed JSON" in r.json()["errors"][0]["reason"]


async def test_huge_payload_is_refused(client: httpx.AsyncClient, workspace: Workspace) -> None:
    big = b'{"name": "' + b"x" * (21 * 1024 * 1024) + b'"}'
    r = await client.patch(
        "/api/v1/organization",
        content=big,
        headers={**workspace.headers, "content-type": "application/json"},
    )
    assert r.status_code == 413


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200


async def test_a_read_only_key_cannot_revoke_keys(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    viewer_id, viewer = await workspace.member(Role.VIEWER)
    read_only = await do_create_api_key(
        Actor.system(workspace.tenant_id), "report", ["read"], for_user_id=viewer_id
    )
    ro = {"Authorization": f"Bearer {read_only.token}"}
    own = (await client.get("/api/v1/api-keys", headers=viewer)).json()["items"]
    full = next(k for k in own if k["id"] != read_only.api_key.id)
    refused = await client.delete(f"/api/v1/api-keys/{full['id']}", headers=ro)
    assert refused.status_code == 403
    assert "scope" in refused.json()["detail"]
    assert (await client.get("/api/v1/members", headers=viewer)).status_code == 200
    # itself neither: revoking is a write
    assert (
        await client.delete(f"/api/v1/api-keys/{read_only.api_key.id}", headers=ro)
    ).status_code == 403
    # the member's write-scoped key may revoke their own keys, even for a viewer
    revoked = await client.delete(f"/api/v1/api-keys/{read_only.api_key.id}", headers=viewer)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert (await client.get("/api/v1/organization", headers=ro)).status_code == 401


async def test_adding_someone_with_an_account_invites_them_and_reveals_nothing(
    client: httpx.AsyncClient, workspace: Workspace, other_workspace: Workspace
) -> None:
    stranger = await User.get(id=other_workspace.owner_id)
    stranger.name, stranger.email = "Grace Hopper", "grace@globex.test"
    await stranger.save()
    by_telegram = await client.post(
        "/api/v1/members",
        json={"role": "bidi", "telegram_id": stranger.telegram_id},
        headers=workspace.headers,
    )
    assert by_telegram.status_code == 202, by_telegram.text
    body = by_telegram.json()
    assert body["status"] == "pending" and body["role"] == "bidi"
    assert body["telegram_id"] == stranger.telegram_id and body["email"] is None
    assert "Grace" not in by_telegram.text and "grace@" not in by_telegram.text
    assert "user_id" not in body
    by_email = await client.post(
        "/api/v1/members",
        json={"role": "viewer", "email": "GRACE@globex.test"},
        headers=workspace.headers,
    )
    assert by_email.status_code == 202, by_email.text
    assert by_email.json()["invite_id"] == body["invite_id"]  # one open invite, role updated
    assert by_email.json()["email"] == "GRACE@globex.test"
    assert "Grace" not in by_email.text and "grace@" not in by_email.text
    # not attached: not a member, and their workspace's key sees nothing of this one
    members = await client.get("/api/v1/members", headers=workspace.headers)
    assert stranger.id not in [m["user_id"] for m in members.json()["items"]]
    assert not await Membership.exists(tenant_id=workspace.tenant_id, user_id=stranger.id)
    events = await client.get("/api/v1/events", headers=workspace.headers)
    assert "Grace" not in events.text and "grace@" not in events.text
    # someone new to the product is still added at once
    newcomer = await client.post(
        "/api/v1/members",
        json={"role": "bidi", "email": "new@acme.test", "name": "Nina"},
        headers=workspace.headers,
    )
    assert newcomer.status_code == 201 and newcomer.json()["name"] == "Nina"
