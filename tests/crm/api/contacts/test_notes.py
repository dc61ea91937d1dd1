"""Notes over HTTP: one target each, filters, author-or-admin edits, bad input."""

from __future__ import annotations

import httpx

from crm.models import Contact, Role
from tests.support.workspace import Workspace

API = "/api/v1"


async def _targets(client: httpx.AsyncClient, ws: Workspace) -> dict[str, int]:
    contact = await Contact.create(tenant_id=ws.tenant_id, name="Ann")
    company = await client.post(f"{API}/companies", json={"name": "Co"}, headers=ws.headers)
    deal = await client.post(f"{API}/deals", json={"title": "D"}, headers=ws.headers)
    return {
        "contact_id": contact.id,
        "company_id": company.json()["id"],
        "deal_id": deal.json()["id"],
    }


async def test_notes_on_each_target_and_filters(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    targets = await _targets(client, workspace)
    made = {}
    for field, target_id in targets.items():
        r = await client.post(
            f"{API}/notes",
            json={"body": f"  about the {field} ", field: target_id},
            headers=workspace.headers,
        )
        assert r.status_code == 201, r.text
        note = r.json()
        assert note["body"] == f"about the {field}"
        assert note[field] == target_id and note["author_id"] == workspace.owner_id
        made[field] = note

    for field, target_id in targets.items():
        r = await client.get(f"{API}/notes", params={field: target_id}, headers=workspace.headers)
        assert [n["id"] for n in r.json()["items"]] == [made[field]["id"]]
    r = await client.get(f"{API}/notes", headers=workspace.headers)
    ids = [n["id"] for n in r.json()["items"]]
    assert ids == sorted(ids, reverse=True)  # newest first
    r = await client.get(
        f"{API}/notes", params={"sort": "created_at", "limit": 2}, headers=workspace.headers
    )
    assert [n["id"] for n in r.json()["items"]] == sorted(ids)[:2]
    r2 = await client.get(
        f"{API}/notes",
        params={"sort": "created_at", "limit": 2, "cursor": r.json()["next_cursor"]},
        headers=workspace.headers,
    )
    assert [n["id"] for n in r2.json()["items"]] == sorted(ids)[2:]

    note = made["deal_id"]
    r = await client.patch(
        f"{API}/notes/{note['id']}", json={"body": "edited"}, headers=workspace.headers
    )
    assert r.status_code == 200 and r.json()["body"] == "edited"
    assert (await client.get(f"{API}/notes/{note['id']}", headers=workspace.headers)).json()[
        "body"
    ] == "edited"
    r = await client.delete(f"{API}/notes/{note['id']}", headers=workspace.headers)
    assert r.status_code == 204
    r = await client.get(f"{API}/notes/{note['id']}", headers=workspace.headers)
    assert r.status_code == 404

    r = await client.get(f"{API}/events", params={"entity_type": "note"}, headers=workspace.headers)
    events = r.json()["items"]
    assert [e["type"] for e in events[:2]] == ["note.deleted", "note.updated"]
    assert events[1]["before"]["body"] == "about the deal_id"
    assert events[1]["after"]["body"] == "edited"
    assert events[0]["before"]["body"] == "edited"


async def test_deleting_the_deal_takes_its_notes(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    targets = await _targets(client, workspace)
    r = await client.post(
        f"{API}/notes", json={"body": "n", "deal_id": targets["deal_id"]}, headers=workspace.headers
    )
    note_id = r.json()["id"]
    await client.delete(f"{API}/deals/{targets['deal_id']}", headers=workspace.headers)
    assert (
        await client.get(f"{API}/notes/{note_id}", headers=workspace.headers)
    ).status_code == 404


async def test_exactly_one_target(
    client: httpx.AsyncClient, workspace: Workspace, other_workspace: Workspace
) -> None:
    targets = await _targets(client, workspace)
    foreign = await _targets(client, other_workspace)
    cases = [
        ({"body": "x"}, "contact_id"),
        ({"body": "x", **targets}, "company_id"),
        ({"body": "x", "deal_id": targets["deal_id"], "company_id": 1}, "deal_id"),
        ({"body": "x", "deal_id": foreign["deal_id"]}, "deal_id"),
        ({"body": "x", "contact_id": foreign["contact_id"]}, "contact_id"),
        ({"body": "x", "company_id": 999_999}, "company_id"),
        ({"body": "", "deal_id": targets["deal_id"]}, "body"),
        ({"body": "   ", "deal_id": targets["deal_id"]}, "body"),
        ({"body": 3, "deal_id": targets["deal_id"]}, "body"),
        ({"body": "x", "deal_id": "one"}, "deal_id"),
        ({"body": "x", "deal_id": targets["deal_id"], "pinned": True}, "pinned"),
        ({"deal_id": targets["deal_id"]}, "body"),
    ]
    for body, field in cases:
        r = await client.post(f"{API}/notes", json=body, headers=workspace.headers)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"][0]["field"] == field, (body, r.json())
    r = await client.get(f"{API}/notes", headers=workspace.headers)
    assert r.json()["items"] == []


async def test_only_author_or_admin_changes_a_note(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    targets = await _targets(client, workspace)
    _, viewer = await workspace.member(Role.VIEWER)
    bidi_id, bidi = await workspace.member(Role.BIDI)
    _, other = await workspace.member(Role.BIDI)
    _, admin = await workspace.member(Role.ADMIN)

    r = await client.post(
        f"{API}/notes", json={"body": "v", "deal_id": targets["deal_id"]}, headers=viewer
    )
    assert r.status_code == 403
    # a bidi may note a deal owned by someone else
    r = await client.post(
        f"{API}/notes", json={"body": "mine", "deal_id": targets["deal_id"]}, headers=bidi
    )
    assert r.status_code == 201 and r.json()["author_id"] == bidi_id
    url = f"{API}/notes/{r.json()['id']}"
    for headers in (viewer, other):
        assert (await client.get(url, headers=headers)).status_code == 200
        assert (await client.patch(url, json={"body": "x"}, headers=headers)).status_code == 403
        assert (await client.delete(url, headers=headers)).status_code == 403
    r = await client.patch(url, json={"body": "still mine"}, headers=bidi)
    assert r.status_code == 200
    r = await client.patch(url, json={"body": "moderated"}, headers=admin)
    assert r.status_code == 200 and r.json()["author_id"] == bidi_id
    # a note by the owner is not the bidi's to change
    r = await client.post(
        f"{API}/notes",
        json={"body": "owner's", "contact_id": targets["contact_id"]},
        headers=workspace.headers,
    )
    owner_note = f"{API}/notes/{r.json()['id']}"
    assert (await client.delete(owner_note, headers=bidi)).status_code == 403
    assert (await client.delete(url, headers=bidi)).status_code == 204
