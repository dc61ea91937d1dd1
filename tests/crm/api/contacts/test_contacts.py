"""Contacts over HTTP: CRUD, normalization, search, filters, sorting, pagination, roles."""

from __future__ import annotations

import httpx

from crm.models import Role
from tests.support.workspace import Workspace

API = "/api/v1/contacts"


async def _create(client: httpx.AsyncClient, ws: Workspace, **body: object) -> dict[str, object]:
    r = await client.post(API, json=body, headers=ws.headers)
    assert r.status_code == 201, r.text
    return r.json()


async def test_create_normalizes_identifiers(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    c = await _create(
        client,
        workspace,
        name="Ivan Petrov",
        phone="(415) 555-2671",
        email="Ivan@Example.COM",
        telegram_username="@IvanP",
        tags=["VIP", "vip"],
    )
    assert c["phone"] == "+14155552671"
    assert c["email"] == "ivan@example.com"
    assert c["telegram_username"] == "ivanp"
    assert c["tags"] == ["VIP"]
    assert c["owner_id"] == workspace.owner_id
    got = await client.get(f"{API}/{c['id']}", headers=workspace.headers)
    assert got.json() == c


async def test_bad_fields_are_named(client: httpx.AsyncClient, workspace: Workspace) -> None:
    for body, field in [
        ({"name": "A", "email": "not-an-email"}, "email"),
        ({"name": "A", "phone": "12"}, "phone"),
        ({"name": "A", "telegram_id": "abc"}, "telegram_id"),
        ({"name": "A", "timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "A", "colour": "red"}, "colour"),
        ({"name": "A", "company_id": 999999}, "company_id"),
        ({"name": "A", "owner_id": 999999}, "owner_id"),
    ]:
        r = await client.post(API, json=body, headers=workspace.headers)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["field"] == field, r.json()
    assert (await client.get(API, headers=workspace.headers)).json()["items"] == []


async def test_duplicate_identifier_is_a_conflict(
    client: httpx.AsyncClient, workspace: Workspace, other_workspace: Workspace
) -> None:
    await _create(client, workspace, name="A", email="a@example.com")
    r = await client.post(
        API, json={"name": "B", "email": "A@example.com"}, headers=workspace.headers
    )
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "email"
    # the same person may exist in another workspace
    await _create(client, other_workspace, name="A", email="a@example.com")


async def test_patch_records_audit_before_and_after(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    c = await _create(client, workspace, name="Old", email="o@example.com")
    r = await client.patch(
        f"{API}/{c['id']}", json={"name": "New", "title": None}, headers=workspace.headers
    )
    assert r.status_code == 200 and r.json()["name"] == "New"
    from crm.models import Event

    event = await Event.filter(type="contact.updated", entity_id=c["id"]).get()
    assert event.before == {"name": "Old"}
    assert event.after == {"name": "New"}
    assert event.actor_user_id == workspace.owner_id


async def test_opt_out_sets_timestamp(client: httpx.AsyncClient, workspace: Workspace) -> None:
    c = await _create(client, workspace, name="A", email="a@example.com")
    r = await client.patch(
        f"{API}/{c['id']}", json={"consent": "opted_out"}, headers=workspace.headers
    )
    assert r.json()["opted_out_at"] is not None
    r = await client.patch(
        f"{API}/{c['id']}", json={"consent": "granted"}, headers=workspace.headers
    )
    assert r.json()["opted_out_at"] is None


async def test_search_by_name_phone_email_username(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    await _create(client, workspace, name="Анна Смирнова", phone="+79123456789")
    await _create(
        client, workspace, name="Bob Stone", email="bob@stone.io", telegram_username="bobby"
    )
    await _create(client, workspace, name="Carla", email="carla@x.io")

    async def names(q: str) -> list[str]:
        r = await client.get(API, params={"q": q}, headers=workspace.headers)
        assert r.status_code == 200, r.text
        return sorted(i["name"] for i in r.json()["items"])

    assert await names("смирн") == ["Анна Смирнова"]
    assert await names("+7 912 345") == ["Анна Смирнова"]
    assert await names("STONE.io") == ["Bob Stone"]
    assert await names("@bobby") == ["Bob Stone"]
    assert await names("x.io") == ["Carla"]
    assert await names("nobody") == []


async def test_filters_by_tag_owner_company_and_stage(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    from crm.models import Company, Deal, Pipeline, Stage

    bidi_id, _bidi = await workspace.member(Role.BIDI)
    company = await Company.create(tenant_id=workspace.tenant_id, name="Acme", name_key="acme")
    a = await _create(
        client, workspace, name="A", email="a@x.io", tags=["hot"], company_id=company.id
    )
    b = await _create(client, workspace, name="B", email="b@x.io", tags=["cold"], owner_id=bidi_id)
    pipeline = await Pipeline.get(tenant_id=workspace.tenant_id, is_default=True)
    meeting = await Stage.get(pipeline=pipeline, name="Meeting")
    await Deal.create(
        tenant_id=workspace.tenant_id,
        title="D",
        pipeline=pipeline,
        stage=meeting,
        contact_id=b["id"],
    )

    async def ids(**params: object) -> list[int]:
        r = await client.get(API, params=params, headers=workspace.headers)
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["items"]]

    assert await ids(tag="HOT") == [a["id"]]
    assert await ids(owner_id=bidi_id) == [b["id"]]
    assert await ids(company_id=company.id) == [a["id"]]
    assert await ids(stage_id=meeting.id) == [b["id"]]
    assert await ids(tag="hot", owner_id=bidi_id) == []


async def test_cursor_pagination_walks_every_contact_once(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    created = [
        await _create(client, workspace, name=f"P{i:02d}", email=f"p{i}@x.io") for i in range(7)
    ]
    for sort, expected in [
        ("name", sorted(c["name"] for c in created)),
        ("-name", sorted((c["name"] for c in created), reverse=True)),
        ("-created_at", [c["name"] for c in reversed(created)]),
    ]:
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, object] = {"limit": 3, "sort": sort}
            if cursor:
                params["cursor"] = cursor
            r = await client.get(API, params=params, headers=workspace.headers)
            assert r.status_code == 200, r.text
            seen += [i["name"] for i in r.json()["items"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
        assert seen == expected, sort


async def test_bad_list_parameters_are_named(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    for params, field in [
        ({"sort": "email"}, "sort"),
        ({"limit": 0}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"owner_id": "x"}, "owner_id"),
    ]:
        r = await client.get(API, params=params, headers=workspace.headers)
        assert r.status_code == 422, params
        assert r.json()["errors"][0]["field"] == field


async def test_roles(client: httpx.AsyncClient, workspace: Workspace) -> None:
    _, viewer = await workspace.member(Role.VIEWER)
    bidi_id, bidi = await workspace.member(Role.BIDI)
    owned_by_owner = await _create(client, workspace, name="Owner's", email="o@x.io")
    r = await client.post(API, json={"name": "V", "email": "v@x.io"}, headers=viewer)
    assert r.status_code == 403
    assert (await client.get(API, headers=viewer)).status_code == 200
    # a bidi creates (and owns) contacts, edits own, cannot edit or delete others'
    r = await client.post(API, json={"name": "Mine", "email": "m@x.io"}, headers=bidi)
    assert r.status_code == 201 and r.json()["owner_id"] == bidi_id
    mine = r.json()["id"]
    assert (
        await client.patch(f"{API}/{mine}", json={"title": "CEO"}, headers=bidi)
    ).status_code == 200
    r = await client.patch(f"{API}/{owned_by_owner['id']}", json={"title": "x"}, headers=bidi)
    assert r.status_code == 403
    assert (await client.delete(f"{API}/{owned_by_owner['id']}", headers=bidi)).status_code == 403
    # handing one's contact to someone else is for admins
    r = await client.patch(f"{API}/{mine}", json={"owner_id": workspace.owner_id}, headers=bidi)
    assert r.status_code == 403
    assert (await client.delete(f"{API}/{mine}", headers=bidi)).status_code == 204
    assert (await client.get(f"{API}/{mine}", headers=bidi)).status_code == 404


async def test_other_tenant_ids_are_not_found(
    client: httpx.AsyncClient, workspace: Workspace, other_workspace: Workspace
) -> None:
    c = await _create(client, workspace, name="Secret", email="s@x.io")
    missing = await client.get(f"{API}/999999", headers=other_workspace.headers)
    foreign = await client.get(f"{API}/{c['id']}", headers=other_workspace.headers)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["title"] == missing.json()["title"]
    r = await client.patch(
        f"{API}/{c['id']}", json={"name": "Hacked"}, headers=other_workspace.headers
    )
    assert r.status_code == 404
    assert (await client.get(API, params={"q": "secret"}, headers=other_workspace.headers)).json()[
        "items"
    ] == []
    assert (await client.get(f"{API}/{c['id']}", headers=workspace.headers)).json()[
        "name"
    ] == "Secret"
