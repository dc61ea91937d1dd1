"""Pipelines and stages over HTTP: CRUD, reorder, the rules that protect deals, roles."""

from __future__ import annotations

from typing import Any

import httpx

from crm.models import Role
from tests.support.workspace import Workspace

API = "/api/v1"


async def _default(client: httpx.AsyncClient, ws: Workspace) -> dict:
    r = await client.get(f"{API}/pipelines", headers=ws.headers)
    assert r.status_code == 200, r.text
    (pipeline,) = [p for p in r.json()["items"] if p["is_default"]]
    return pipeline


async def _create(client: httpx.AsyncClient, ws: Workspace, **body: Any) -> dict:
    r = await client.post(f"{API}/pipelines", json=body, headers=ws.headers)
    assert r.status_code == 201, r.text
    return r.json()


async def test_default_pipeline_is_listed_with_ordered_stages(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    pipeline = await _default(client, workspace)
    assert [(s["name"], s["kind"], s["position"]) for s in pipeline["stages"]] == [
        ("Cold", "open", 0),
        ("Replied", "open", 1),
        ("Qualified", "open", 2),
        ("Meeting", "open", 3),
        ("Won", "won", 4),
        ("Lost", "lost", 5),
    ]
    r = await client.get(f"{API}/pipelines/{pipeline['id']}", headers=workspace.headers)
    assert r.json() == pipeline


async def test_create_rename_make_default_delete(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    default = await _default(client, workspace)
    hiring = await _create(
        client,
        workspace,
        name="Hiring",
        stages=[{"name": "Applied"}, {"name": "Hired", "kind": "won"}],
    )
    assert [(s["name"], s["kind"]) for s in hiring["stages"]] == [
        ("Applied", "open"),
        ("Hired", "won"),
    ]
    assert hiring["is_default"] is False
    partners = await _create(client, workspace, name="Partners")
    assert len(partners["stages"]) == 6  # the default set

    r = await client.patch(
        f"{API}/pipelines/{hiring['id']}",
        json={"name": "Recruiting", "is_default": True},
        headers=workspace.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Recruiting" and r.json()["is_default"] is True
    assert (await _default(client, workspace))["id"] == hiring["id"]

    # the default cannot be deleted or un-defaulted; the old default now can be deleted
    r = await client.delete(f"{API}/pipelines/{hiring['id']}", headers=workspace.headers)
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "pipeline_id"
    r = await client.patch(
        f"{API}/pipelines/{hiring['id']}", json={"is_default": False}, headers=workspace.headers
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "is_default"
    r = await client.delete(f"{API}/pipelines/{default['id']}", headers=workspace.headers)
    assert r.status_code == 204
    assert (
        await client.get(f"{API}/pipelines/{default['id']}", headers=workspace.headers)
    ).status_code == 404

    # names are unique ignoring case
    r = await client.post(f"{API}/pipelines", json={"name": "partners"}, headers=workspace.headers)
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "name"

    r = await client.get(
        f"{API}/events", params={"entity_type": "pipeline"}, headers=workspace.headers
    )
    types = [e["type"] for e in r.json()["items"]]
    assert types == ["pipeline.deleted", "pipeline.updated", "pipeline.created", "pipeline.created"]
    deleted = r.json()["items"][0]
    assert deleted["before"]["name"] == "Sales" and len(deleted["before"]["stages"]) == 6


async def test_pipeline_with_deals_cannot_be_deleted(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    other = await _create(client, workspace, name="Other")
    r = await client.post(
        f"{API}/deals", json={"title": "D", "pipeline_id": other["id"]}, headers=workspace.headers
    )
    assert r.status_code == 201
    r = await client.delete(f"{API}/pipelines/{other['id']}", headers=workspace.headers)
    assert r.status_code == 409
    assert r.json()["errors"][0] == {
        "field": "pipeline_id",
        "reason": "1 deal in this pipeline; move or delete them first",
    }


async def test_stage_add_rename_kind_delete(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    pipeline = await _default(client, workspace)
    pid = pipeline["id"]
    r = await client.post(
        f"{API}/pipelines/{pid}/stages",
        json={"name": "Proposal", "position": 4},
        headers=workspace.headers,
    )
    assert r.status_code == 201, r.text
    proposal = r.json()
    assert proposal["position"] == 4 and proposal["kind"] == "open"
    r = await client.post(
        f"{API}/pipelines/{pid}/stages",
        json={"name": "Churned", "kind": "lost"},
        headers=workspace.headers,
    )
    assert r.json()["position"] == 7
    stages = (await client.get(f"{API}/pipelines/{pid}", headers=workspace.headers)).json()[
        "stages"
    ]
    assert [s["name"] for s in stages] == [
        "Cold",
        "Replied",
        "Qualified",
        "Meeting",
        "Proposal",
        "Won",
        "Lost",
        "Churned",
    ]
    assert [s["position"] for s in stages] == list(range(8))

    r = await client.patch(
        f"{API}/pipelines/{pid}/stages/{proposal['id']}",
        json={"name": "Offer"},
        headers=workspace.headers,
    )
    assert r.status_code == 200 and r.json()["name"] == "Offer"
    r = await client.patch(
        f"{API}/pipelines/{pid}/stages/{proposal['id']}",
        json={"name": "cold"},
        headers=workspace.headers,
    )
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "name"

    r = await client.delete(
        f"{API}/pipelines/{pid}/stages/{proposal['id']}", headers=workspace.headers
    )
    assert r.status_code == 204
    stages = (await client.get(f"{API}/pipelines/{pid}", headers=workspace.headers)).json()[
        "stages"
    ]
    assert [s["position"] for s in stages] == list(range(7))
    assert "Offer" not in [s["name"] for s in stages]

    r = await client.post(
        f"{API}/pipelines/{pid}/stages",
        json={"name": "X", "position": 99},
        headers=workspace.headers,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "position"
    r = await client.post(
        f"{API}/pipelines/{pid}/stages",
        json={"name": "X", "kind": "maybe"},
        headers=workspace.headers,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "kind"


async def test_stage_with_deals_cannot_be_deleted_and_kind_change_closes_them(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    pipeline = await _default(client, workspace)
    pid = pipeline["id"]
    meeting = pipeline["stages"][3]
    for title in ("A", "B"):
        r = await client.post(
            f"{API}/deals",
            json={"title": title, "stage_id": meeting["id"]},
            headers=workspace.headers,
        )
        assert r.json()["closed_at"] is None
    r = await client.delete(
        f"{API}/pipelines/{pid}/stages/{meeting['id']}", headers=workspace.headers
    )
    assert r.status_code == 409
    assert r.json()["errors"][0] == {
        "field": "stage_id",
        "reason": "2 deals in this stage; move them to another first",
    }
    # Won and lost stages are optional: the last one of each may go.
    lost = pipeline["stages"][5]
    r = await client.delete(f"{API}/pipelines/{pid}/stages/{lost['id']}", headers=workspace.headers)
    assert r.status_code == 204

    # Turning the stage into a won stage closes its deals; back to open reopens them.
    r = await client.patch(
        f"{API}/pipelines/{pid}/stages/{meeting['id']}",
        json={"kind": "won"},
        headers=workspace.headers,
    )
    assert r.status_code == 200 and r.json()["kind"] == "won"
    r = await client.get(f"{API}/deals", params={"status": "won"}, headers=workspace.headers)
    assert len(r.json()["items"]) == 2
    assert all(d["closed_at"] for d in r.json()["items"])
    await client.patch(
        f"{API}/pipelines/{pid}/stages/{meeting['id']}",
        json={"kind": "open"},
        headers=workspace.headers,
    )
    r = await client.get(f"{API}/deals", params={"status": "open"}, headers=workspace.headers)
    assert [d["closed_at"] for d in r.json()["items"]] == [None, None]


async def test_last_open_stage_is_kept(client: httpx.AsyncClient, workspace: Workspace) -> None:
    p = await _create(
        client, workspace, name="Tiny", stages=[{"name": "Open"}, {"name": "Won", "kind": "won"}]
    )
    open_stage, _won = p["stages"]
    r = await client.delete(
        f"{API}/pipelines/{p['id']}/stages/{open_stage['id']}", headers=workspace.headers
    )
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "stage_id"
    r = await client.patch(
        f"{API}/pipelines/{p['id']}/stages/{open_stage['id']}",
        json={"kind": "lost"},
        headers=workspace.headers,
    )
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "kind"
    r = await client.post(
        f"{API}/pipelines",
        json={"name": "Closed", "stages": [{"name": "W", "kind": "won"}]},
        headers=workspace.headers,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "stages"
    r = await client.post(
        f"{API}/pipelines", json={"name": "Empty", "stages": []}, headers=workspace.headers
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "stages"


async def test_reorder(client: httpx.AsyncClient, workspace: Workspace) -> None:
    pipeline = await _default(client, workspace)
    pid = pipeline["id"]
    ids = [s["id"] for s in pipeline["stages"]]
    new_order = [ids[5], ids[4], *ids[:4]]
    r = await client.put(
        f"{API}/pipelines/{pid}/stages/order",
        json={"stage_ids": new_order},
        headers=workspace.headers,
    )
    assert r.status_code == 200, r.text
    assert [s["id"] for s in r.json()["stages"]] == new_order
    assert [s["position"] for s in r.json()["stages"]] == list(range(6))
    again = (await client.get(f"{API}/pipelines/{pid}", headers=workspace.headers)).json()
    assert [s["id"] for s in again["stages"]] == new_order

    other = await _create(client, workspace, name="Other")
    foreign = other["stages"][0]["id"]
    bad_orders = [
        new_order[:-1],  # one missing
        [*new_order, foreign],  # a stage of another pipeline
        [*new_order[:-1], new_order[0]],  # a repeat
        [],
        [*new_order[:-1], 999_999],
    ]
    for order in bad_orders:
        r = await client.put(
            f"{API}/pipelines/{pid}/stages/order",
            json={"stage_ids": order},
            headers=workspace.headers,
        )
        assert r.status_code == 422, order
        assert r.json()["errors"][0]["field"] == "stage_ids"
    for body, field in (({"stage_ids": ["a"]}, "stage_ids.0"), ({}, "stage_ids")):
        r = await client.put(
            f"{API}/pipelines/{pid}/stages/order", json=body, headers=workspace.headers
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field
    # nothing moved
    still = (await client.get(f"{API}/pipelines/{pid}", headers=workspace.headers)).json()
    assert [s["id"] for s in still["stages"]] == new_order

    r = await client.get(
        f"{API}/events", params={"type": "pipeline.stages_reordered"}, headers=workspace.headers
    )
    (event,) = r.json()["items"]
    assert event["before"] == {"stage_ids": ids} and event["after"] == {"stage_ids": new_order}


async def test_only_admins_change_pipelines(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    pipeline = await _default(client, workspace)
    pid = pipeline["id"]
    sid = pipeline["stages"][0]["id"]
    _, admin = await workspace.member(Role.ADMIN)
    for role in (Role.VIEWER, Role.BIDI):
        _, headers = await workspace.member(role)
        assert (await client.get(f"{API}/pipelines", headers=headers)).status_code == 200
        attempts = [
            client.post(f"{API}/pipelines", json={"name": "N"}, headers=headers),
            client.patch(f"{API}/pipelines/{pid}", json={"name": "N"}, headers=headers),
            client.delete(f"{API}/pipelines/{pid}", headers=headers),
            client.post(f"{API}/pipelines/{pid}/stages", json={"name": "N"}, headers=headers),
            client.patch(
                f"{API}/pipelines/{pid}/stages/{sid}", json={"name": "N"}, headers=headers
            ),
            client.delete(f"{API}/pipelines/{pid}/stages/{sid}", headers=headers),
            client.put(
                f"{API}/pipelines/{pid}/stages/order",
                json={"stage_ids": [s["id"] for s in pipeline["stages"]]},
                headers=headers,
            ),
        ]
        for attempt in attempts:
            r = await attempt
            assert r.status_code == 403, (role, r.request.method, r.request.url, r.text)
    r = await client.patch(f"{API}/pipelines/{pid}", json={"name": "Main"}, headers=admin)
    assert r.status_code == 200
    assert await _default(client, workspace) == {**pipeline, "name": "Main"}
