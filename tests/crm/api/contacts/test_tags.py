"""Tags over HTTP: counts, unique names, rename, delete, tagging contacts, roles."""

from __future__ import annotations

from typing import Any

import httpx

from crm.models import Contact, Role
from tests.support.workspace import Workspace

API = "/api/v1"


async def _tag(client: httpx.AsyncClient, headers: dict[str, str], name: str) -> dict:
    r = await client.post(f"{API}/tags", json={"name": name}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def _contact_tag_names(contact: Contact) -> list[str]:
    return sorted(t.name for t in await contact.tags.all())


async def test_tag_contacts_counts_and_detach(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    ann = await Contact.create(tenant_id=workspace.tenant_id, name="Ann")
    bob = await Contact.create(tenant_id=workspace.tenant_id, name="Bob")
    vip = await _tag(client, workspace.headers, "VIP")
    assert vip["contact_count"] == 0

    r = await client.post(
        f"{API}/contacts/{ann.id}/tags",
        json={"tags": ["vip", " Lead  source ", "lead source"]},
        headers=workspace.headers,
    )
    assert r.status_code == 200, r.text
    assert [(t["name"], t["contact_count"]) for t in r.json()["items"]] == [
        ("Lead source", 1),
        ("VIP", 1),  # found ignoring case, not duplicated
    ]
    r = await client.post(
        f"{API}/contacts/{bob.id}/tags", json={"tags": ["VIP"]}, headers=workspace.headers
    )
    assert [(t["name"], t["contact_count"]) for t in r.json()["items"]] == [("VIP", 2)]
    # tagging again changes nothing
    r = await client.post(
        f"{API}/contacts/{bob.id}/tags", json={"tags": ["vip"]}, headers=workspace.headers
    )
    assert [(t["name"], t["contact_count"]) for t in r.json()["items"]] == [("VIP", 2)]

    r = await client.get(f"{API}/tags", headers=workspace.headers)
    assert [(t["name"], t["contact_count"]) for t in r.json()["items"]] == [
        ("Lead source", 1),
        ("VIP", 2),
    ]
    r = await client.get(f"{API}/tags", params={"q": "lea"}, headers=workspace.headers)
    assert [t["name"] for t in r.json()["items"]] == ["Lead source"]
    assert (await client.get(f"{API}/tags/{vip['id']}", headers=workspace.headers)).json()[
        "contact_count"
    ] == 2

    r = await client.delete(f"{API}/contacts/{ann.id}/tags/{vip['id']}", headers=workspace.headers)
    assert r.status_code == 204
    assert await _contact_tag_names(ann) == ["Lead source"]
    # removing a tag the contact does not carry is a no-op
    r = await client.delete(f"{API}/contacts/{ann.id}/tags/{vip['id']}", headers=workspace.headers)
    assert r.status_code == 204

    r = await client.delete(f"{API}/tags/{vip['id']}", headers=workspace.headers)
    assert r.status_code == 204
    assert await _contact_tag_names(bob) == []
    assert (await client.get(f"{API}/tags/{vip['id']}", headers=workspace.headers)).status_code == (
        404
    )

    r = await client.get(f"{API}/events", params={"type": "contact.*"}, headers=workspace.headers)
    events = r.json()["items"]
    assert [e["type"] for e in events] == [
        "contact.tag_removed",
        "contact.tags_added",
        "contact.tags_added",
    ]
    assert events[0]["before"] == {"tags": ["Lead source", "VIP"]}
    assert events[0]["after"] == {"tags": ["Lead source"]}
    r = await client.get(f"{API}/events", params={"type": "tag.deleted"}, headers=workspace.headers)
    (deleted,) = r.json()["items"]
    assert deleted["before"]["name"] == "VIP" and deleted["before"]["contact_ids"] == [bob.id]
    r = await client.get(f"{API}/events", params={"type": "tag.created"}, headers=workspace.headers)
    assert len(r.json()["items"]) == 2  # VIP, and Lead source made while tagging


async def test_unique_names_and_rename(client: httpx.AsyncClient, workspace: Workspace) -> None:
    a = await _tag(client, workspace.headers, "alpha")
    await _tag(client, workspace.headers, "beta")
    r = await client.post(f"{API}/tags", json={"name": "ALPHA"}, headers=workspace.headers)
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "name"
    r = await client.patch(
        f"{API}/tags/{a['id']}", json={"name": "Beta"}, headers=workspace.headers
    )
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "name"
    r = await client.patch(
        f"{API}/tags/{a['id']}", json={"name": "Alpha"}, headers=workspace.headers
    )
    assert r.status_code == 200 and r.json()["name"] == "Alpha"
    r = await client.get(f"{API}/events", params={"type": "tag.updated"}, headers=workspace.headers)
    (event,) = r.json()["items"]
    assert event["before"]["name"] == "alpha" and event["after"]["name"] == "Alpha"
    for body, field in (({"name": ""}, "name"), ({"name": "x" * 65}, "name"), ({}, "name")):
        r = await client.post(f"{API}/tags", json=body, headers=workspace.headers)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field


async def test_pages(client: httpx.AsyncClient, workspace: Workspace) -> None:
    names = [f"t{i:02d}" for i in range(7)]
    for name in reversed(names):
        await _tag(client, workspace.headers, name)
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        r = await client.get(f"{API}/tags", params=params, headers=workspace.headers)
        seen += [t["name"] for t in r.json()["items"]]
        if not r.json()["next_cursor"]:
            break
        params["cursor"] = r.json()["next_cursor"]
    assert seen == names


async def test_roles(client: httpx.AsyncClient, workspace: Workspace) -> None:
    _, viewer = await workspace.member(Role.VIEWER)
    bidi_id, bidi = await workspace.member(Role.BIDI)
    _, admin = await workspace.member(Role.ADMIN)
    own = await Contact.create(tenant_id=workspace.tenant_id, name="Own", owner_id=bidi_id)
    theirs = await Contact.create(
        tenant_id=workspace.tenant_id, name="Theirs", owner_id=workspace.owner_id
    )
    unowned = await Contact.create(tenant_id=workspace.tenant_id, name="Nobody's")

    assert (await client.post(f"{API}/tags", json={"name": "v"}, headers=viewer)).status_code == 403
    tag = await _tag(client, bidi, "hot")
    r = await client.post(f"{API}/contacts/{own.id}/tags", json={"tags": ["hot"]}, headers=viewer)
    assert r.status_code == 403
    for contact in (own, unowned):
        r = await client.post(
            f"{API}/contacts/{contact.id}/tags", json={"tags": ["hot"]}, headers=bidi
        )
        assert r.status_code == 200
    r = await client.post(f"{API}/contacts/{theirs.id}/tags", json={"tags": ["hot"]}, headers=bidi)
    assert r.status_code == 403
    r = await client.post(
        f"{API}/contacts/{theirs.id}/tags", json={"tags": ["hot"]}, headers=workspace.headers
    )
    assert r.status_code == 200
    r = await client.delete(f"{API}/contacts/{theirs.id}/tags/{tag['id']}", headers=bidi)
    assert r.status_code == 403
    # renaming and deleting shared tags is for admins
    r = await client.patch(f"{API}/tags/{tag['id']}", json={"name": "warm"}, headers=bidi)
    assert r.status_code == 403
    assert (await client.delete(f"{API}/tags/{tag['id']}", headers=bidi)).status_code == 403
    r = await client.patch(f"{API}/tags/{tag['id']}", json={"name": "warm"}, headers=admin)
    assert r.status_code == 200 and r.json()["contact_count"] == 3
    assert await _contact_tag_names(theirs) == ["warm"]


async def test_bad_input(
    client: httpx.AsyncClient, workspace: Workspace, other_workspace: Workspace
) -> None:
    contact = await Contact.create(tenant_id=workspace.tenant_id, name="Ann")
    foreign_tag = await _tag(client, other_workspace.headers, "theirs")
    url = f"{API}/contacts/{contact.id}/tags"
    for body, field in (
        ({"tags": []}, "tags"),
        ({"tags": "vip"}, "tags"),
        ({"tags": [""]}, "tags.0"),
        ({"tags": ["ok", 5]}, "tags.1"),
        ({"tags": ["ok", "   "]}, "tags.1"),
        ({"tags": ["x" * 65]}, "tags.0"),
        ({"tags": ["x"], "labels": ["x"]}, "labels"),
        ({"tags": [f"t{i}" for i in range(101)]}, "tags"),
    ):
        r = await client.post(url, json=body, headers=workspace.headers)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"][0]["field"] == field, (body, r.json())
    r = await client.delete(f"{url}/{foreign_tag['id']}", headers=workspace.headers)
    assert r.status_code == 404
    r = await client.post(
        f"{API}/contacts/999999/tags", json={"tags": ["a"]}, headers=workspace.headers
    )
    assert r.status_code == 404
    # nothing was created along the way
    assert (await client.get(f"{API}/tags", headers=workspace.headers)).json()["items"] == []
    assert await _contact_tag_names(contact) == []
