"""Companies over HTTP: CRUD, unique names, search, sorting, pages, roles, counts."""

from __future__ import annotations

from typing import Any

import httpx

from crm.models import Contact, Role
from tests.support.workspace import Workspace

API = "/api/v1"


async def _create(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict:
    r = await client.post(f"{API}/companies", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def _events(client: httpx.AsyncClient, ws: Workspace, **params: Any) -> list[dict]:
    r = await client.get(f"{API}/events", params=params, headers=ws.headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_create_read_update_delete(client: httpx.AsyncClient, workspace: Workspace) -> None:
    created = await _create(
        client, workspace.headers, name="  Initech ", domain="https://www.Initech.com/"
    )
    assert created["name"] == "Initech"
    assert created["domain"] == "initech.com"
    assert created["owner_id"] == workspace.owner_id  # the creator owns it by default
    assert created["contact_count"] == 0 and created["deal_count"] == 0

    cid = created["id"]
    r = await client.patch(
        f"{API}/companies/{cid}",
        json={"name": "Initech LLC", "custom_fields": {"tier": "gold"}, "domain": None},
        headers=workspace.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Initech LLC"
    assert r.json()["custom_fields"] == {"tier": "gold"}
    assert r.json()["domain"] is None

    got = (await client.get(f"{API}/companies/{cid}", headers=workspace.headers)).json()
    assert got["name"] == "Initech LLC"

    r = await client.delete(f"{API}/companies/{cid}", headers=workspace.headers)
    assert r.status_code == 204
    r = await client.get(f"{API}/companies/{cid}", headers=workspace.headers)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"

    types = [e["type"] for e in await _events(client, workspace, entity_type="company")]
    assert types == ["company.deleted", "company.updated", "company.created"]
    updated = (await _events(client, workspace, type="company.updated"))[0]
    assert updated["before"]["name"] == "Initech" and updated["after"]["name"] == "Initech LLC"
    assert updated["actor_user_id"] == workspace.owner_id


async def test_name_is_unique_ignoring_case(
    client: httpx.AsyncClient, workspace: Workspace, other_workspace: Workspace
) -> None:
    await _create(client, workspace.headers, name="Globex")
    r = await client.post(f"{API}/companies", json={"name": "GLOBEX "}, headers=workspace.headers)
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "name"
    # another tenant may use the same name
    await _create(client, other_workspace.headers, name="globex")
    other = await _create(client, workspace.headers, name="Hooli")
    r = await client.patch(
        f"{API}/companies/{other['id']}", json={"name": "globex"}, headers=workspace.headers
    )
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "name"
    # renaming to a different case of its own name is fine
    r = await client.patch(
        f"{API}/companies/{other['id']}", json={"name": "HOOLI"}, headers=workspace.headers
    )
    assert r.status_code == 200 and r.json()["name"] == "HOOLI"


async def test_search_sort_and_pages(client: httpx.AsyncClient, workspace: Workspace) -> None:
    names = ["delta", "Alpha", "charlie", "Bravo", "echo", "alphabet"]
    for name in names:
        await _create(client, workspace.headers, name=name)

    r = await client.get(f"{API}/companies", params={"q": "ALPH"}, headers=workspace.headers)
    assert [c["name"] for c in r.json()["items"]] == ["Alpha", "alphabet"]

    # walk every page of a descending name sort, two at a time
    seen: list[str] = []
    params: dict[str, Any] = {"sort": "-name", "limit": 2}
    while True:
        r = await client.get(f"{API}/companies", params=params, headers=workspace.headers)
        assert r.status_code == 200, r.text
        seen += [c["name"] for c in r.json()["items"]]
        if not r.json()["next_cursor"]:
            break
        params["cursor"] = r.json()["next_cursor"]
    assert seen == sorted(names, key=str.lower, reverse=True)

    # created_at order is creation order
    r = await client.get(
        f"{API}/companies", params={"sort": "created_at", "limit": 200}, headers=workspace.headers
    )
    assert [c["name"] for c in r.json()["items"]] == names

    # a cursor of one sort is refused for another
    r = await client.get(
        f"{API}/companies",
        params={"sort": "created_at", "cursor": params["cursor"]},
        headers=workspace.headers,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "cursor"
    r = await client.get(f"{API}/companies", params={"sort": "size"}, headers=workspace.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sort"
    r = await client.get(f"{API}/companies", params={"limit": 0}, headers=workspace.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "limit"


async def test_counts_and_delete_keeps_contacts_and_deals(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    company = await _create(client, workspace.headers, name="Umbrella")
    contact = await Contact.create(
        tenant_id=workspace.tenant_id, name="Alice", company_id=company["id"]
    )
    r = await client.post(
        f"{API}/deals",
        json={"title": "Vaccines", "company_id": company["id"]},
        headers=workspace.headers,
    )
    deal_id = r.json()["id"]
    got = (await client.get(f"{API}/companies/{company['id']}", headers=workspace.headers)).json()
    assert got["contact_count"] == 1 and got["deal_count"] == 1

    assert (
        await client.delete(f"{API}/companies/{company['id']}", headers=workspace.headers)
    ).status_code == 204
    await contact.refresh_from_db()
    assert contact.company_id is None
    deal = (await client.get(f"{API}/deals/{deal_id}", headers=workspace.headers)).json()
    assert deal["company_id"] is None


async def test_roles(client: httpx.AsyncClient, workspace: Workspace) -> None:
    _, viewer = await workspace.member(Role.VIEWER)
    bidi_id, bidi = await workspace.member(Role.BIDI)
    other_bidi_id, other_bidi = await workspace.member(Role.BIDI)
    _, admin = await workspace.member(Role.ADMIN)

    r = await client.post(f"{API}/companies", json={"name": "V"}, headers=viewer)
    assert r.status_code == 403
    assert (await client.get(f"{API}/companies", headers=viewer)).status_code == 200

    mine = await _create(client, bidi, name="Bidi Co")
    assert mine["owner_id"] == bidi_id
    unowned = await _create(client, workspace.headers, name="Nobody Co", owner_id=None)
    assert unowned["owner_id"] is None

    # the other bidi can neither change nor delete it, but can change unowned ones
    r = await client.patch(f"{API}/companies/{mine['id']}", json={"name": "X"}, headers=other_bidi)
    assert r.status_code == 403
    r = await client.delete(f"{API}/companies/{mine['id']}", headers=other_bidi)
    assert r.status_code == 403
    r = await client.patch(
        f"{API}/companies/{unowned['id']}", json={"domain": "nobody.io"}, headers=other_bidi
    )
    assert r.status_code == 200
    # a bidi may not give a record to someone else; an admin may
    r = await client.patch(
        f"{API}/companies/{mine['id']}", json={"owner_id": other_bidi_id}, headers=bidi
    )
    assert r.status_code == 403 and r.json()["errors"][0]["field"] == "owner_id"
    r = await client.patch(
        f"{API}/companies/{mine['id']}", json={"owner_id": other_bidi_id}, headers=admin
    )
    assert r.status_code == 200 and r.json()["owner_id"] == other_bidi_id
    r = await client.patch(f"{API}/companies/{mine['id']}", json={"name": "Y"}, headers=other_bidi)
    assert r.status_code == 200
    r = await client.patch(f"{API}/companies/{mine['id']}", json={"name": "Z"}, headers=viewer)
    assert r.status_code == 403


async def test_bad_input_names_the_field(client: httpx.AsyncClient, workspace: Workspace) -> None:
    cases = [
        ({"name": ""}, "name"),
        ({"name": 5}, "name"),
        ({"name": "A", "colour": "red"}, "colour"),
        ({"name": "A", "domain": "not a domain"}, "domain"),
        ({"name": "A", "owner_id": 999_999}, "owner_id"),
        ({"name": "A", "owner_id": "me"}, "owner_id"),
        ({"name": "A", "custom_fields": [1]}, "custom_fields"),
        ({}, "name"),
    ]
    for body, field in cases:
        r = await client.post(f"{API}/companies", json=body, headers=workspace.headers)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"][0]["field"] == field, (body, r.json())
    company = await _create(client, workspace.headers, name="Fine")
    r = await client.patch(
        f"{API}/companies/{company['id']}", json={"name": None}, headers=workspace.headers
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "name"
    for bad in ("abc", "0", "-1", str(2**40)):
        r = await client.get(f"{API}/companies/{bad}", headers=workspace.headers)
        assert r.status_code == 422, bad
        assert r.json()["errors"][0]["field"] == "company_id"
    assert (await client.get(f"{API}/companies/424242", headers=workspace.headers)).status_code == (
        404
    )
    # nothing was written by the refused requests
    r = await client.get(f"{API}/companies", headers=workspace.headers)
    assert [c["name"] for c in r.json()["items"]] == ["Fine"]
