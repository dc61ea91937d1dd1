"""The audit log over HTTP: filters, time windows, pages newest first, admins only."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from crm.models import Event, Role
from tests.support.workspace import Workspace

API = "/api/v1"


async def _events(client: httpx.AsyncClient, ws: Workspace, **params: Any) -> httpx.Response:
    return await client.get(f"{API}/events", params=params, headers=ws.headers)


async def test_filters_and_pages(
    client: httpx.AsyncClient, workspace: Workspace, other_workspace: Workspace
) -> None:
    bidi_id, bidi = await workspace.member(Role.BIDI)
    a = (await client.post(f"{API}/companies", json={"name": "A"}, headers=bidi)).json()
    b = (
        await client.post(f"{API}/companies", json={"name": "B"}, headers=workspace.headers)
    ).json()
    await client.patch(f"{API}/companies/{a['id']}", json={"name": "A2"}, headers=bidi)
    deal = (await client.post(f"{API}/deals", json={"title": "D"}, headers=bidi)).json()
    await client.post(f"{API}/companies", json={"name": "other"}, headers=other_workspace.headers)

    r = await _events(client, workspace, entity_type="company")
    assert [(e["type"], e["entity_id"]) for e in r.json()["items"]] == [
        ("company.updated", a["id"]),
        ("company.created", b["id"]),
        ("company.created", a["id"]),
    ]
    r = await _events(client, workspace, entity_type="company", entity_id=a["id"])
    assert [e["type"] for e in r.json()["items"]] == ["company.updated", "company.created"]
    r = await _events(client, workspace, actor_user_id=bidi_id)
    items = r.json()["items"]
    assert [e["type"] for e in items] == ["deal.created", "company.updated", "company.created"]
    assert all(e["actor_type"] == "api_key" and e["actor_api_key_id"] for e in items)
    assert items[0]["after"]["id"] == deal["id"] and items[0]["before"] is None
    r = await _events(client, workspace, type="company.*")
    assert len(r.json()["items"]) == 3
    # nothing from the other tenant
    r = await _events(client, workspace, limit=200)
    assert "other" not in r.text

    # pages, newest first, no overlap
    r = await _events(client, workspace, limit=200)
    all_ids = [e["id"] for e in r.json()["items"]]
    assert all_ids == sorted(all_ids, reverse=True)
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        r = await _events(client, workspace, **params)
        seen += [e["id"] for e in r.json()["items"]]
        if not r.json()["next_cursor"]:
            break
        params["cursor"] = r.json()["next_cursor"]
    assert seen == all_ids


async def test_time_window(client: httpx.AsyncClient, workspace: Workspace) -> None:
    await client.post(f"{API}/tags", json={"name": "x"}, headers=workspace.headers)
    old = await Event.filter(tenant_id=workspace.tenant_id, type="tag.created").get()
    old.created_at = dt.datetime(2020, 1, 1, 12, tzinfo=dt.UTC)
    await old.save(update_fields=["created_at"])

    r = await _events(client, workspace, since="2020-01-01T00:00:00Z", until="2020-01-02T00:00:00Z")
    assert [e["type"] for e in r.json()["items"]] == ["tag.created"]
    # no zone means UTC; other zones are converted
    r = await _events(client, workspace, since="2020-01-01T12:00:00", until="2020-01-01T12:00:01")
    assert len(r.json()["items"]) == 1
    r = await _events(client, workspace, until="2020-01-01T13:00:00+02:00")
    assert r.json()["items"] == []
    r = await _events(client, workspace, since="2021-01-01T00:00:00+00:00")
    assert "tag.created" not in [e["type"] for e in r.json()["items"]]
    assert r.json()["items"]  # tenant.created and friends are recent

    for params, field in (
        ({"since": "yesterday"}, "since"),
        ({"until": "2020-13-01"}, "until"),
        ({"since": "2020-01-02T00:00:00Z", "until": "2020-01-01T00:00:00Z"}, "until"),
        ({"entity_id": "x"}, "entity_id"),
        ({"actor_user_id": -1}, "actor_user_id"),
        ({"limit": 1000}, "limit"),
        ({"cursor": "Zm9v"}, "cursor"),
    ):
        r = await _events(client, workspace, **params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["errors"][0]["field"] == field


async def test_admins_only(client: httpx.AsyncClient, workspace: Workspace) -> None:
    _, admin = await workspace.member(Role.ADMIN)
    assert (await client.get(f"{API}/events", headers=admin)).status_code == 200
    for role in (Role.VIEWER, Role.BIDI):
        _, headers = await workspace.member(role)
        r = await client.get(f"{API}/events", headers=headers)
        assert r.status_code == 403
        assert r.headers["content-type"] == "application/problem+json"
