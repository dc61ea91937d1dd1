"""Deals over HTTP: defaults, stage moves with history, filters, sorting, roles, bad input."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import httpx

from crm.models import Contact, Role
from tests.support.workspace import Workspace

API = "/api/v1"


async def _stages(client: httpx.AsyncClient, ws: Workspace) -> dict[str, dict]:
    """The default pipeline's stages by name."""
    r = await client.get(f"{API}/pipelines", headers=ws.headers)
    (pipeline,) = [p for p in r.json()["items"] if p["is_default"]]
    return {s["name"]: s for s in pipeline["stages"]}


async def _deal(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict:
    r = await client.post(f"{API}/deals", json={"title": "Deal", **body}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def _move(
    client: httpx.AsyncClient, headers: dict[str, str], deal_id: int, **body: Any
) -> httpx.Response:
    return await client.patch(f"{API}/deals/{deal_id}/stage", json=body, headers=headers)


async def test_create_with_defaults(client: httpx.AsyncClient, workspace: Workspace) -> None:
    stages = await _stages(client, workspace)
    deal = await _deal(client, workspace.headers, title="  Big one ")
    assert deal["title"] == "Big one"
    assert deal["stage_id"] == stages["Cold"]["id"]
    assert deal["pipeline_id"] == stages["Cold"]["pipeline_id"]
    assert deal["status"] == "open"
    assert deal["value"] == "0.00" and deal["currency"] == "USD"
    assert deal["owner_id"] == workspace.owner_id
    assert deal["closed_at"] is None and deal["stage_changed_at"] is not None

    # the organization's default currency applies to new deals
    r = await client.patch(
        f"{API}/organization", json={"default_currency": "eur"}, headers=workspace.headers
    )
    assert r.status_code == 200
    deal = await _deal(client, workspace.headers, value="1234.5")
    assert deal["currency"] == "EUR" and deal["value"] == "1234.50"
    deal = await _deal(client, workspace.headers, value=99.99, currency="gbp", owner_id=None)
    assert deal["currency"] == "GBP" and deal["value"] == "99.99" and deal["owner_id"] is None

    biggest = await _deal(client, workspace.headers, value="9999999999999999.99")
    r = await client.get(f"{API}/deals/{biggest['id']}", headers=workspace.headers)
    assert r.json()["value"] == "9999999999999999.99"

    # created straight into a won stage: closed at once
    won = await _deal(client, workspace.headers, stage_id=stages["Won"]["id"])
    assert won["status"] == "won" and won["closed_at"] is not None

    r = await client.get(f"{API}/deals/{won['id']}/history", headers=workspace.headers)
    (first,) = r.json()["items"]
    assert first["from_stage_id"] is None and first["to_stage_name"] == "Won"
    assert first["changed_by"] == workspace.owner_id


async def test_references_and_stage_in_pipeline(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    contact = await Contact.create(tenant_id=workspace.tenant_id, name="Ann")
    company = (
        await client.post(f"{API}/companies", json={"name": "Co"}, headers=workspace.headers)
    ).json()
    bidi_id, _ = await workspace.member(Role.BIDI)
    deal = await _deal(
        client,
        workspace.headers,
        contact_id=contact.id,
        company_id=company["id"],
        owner_id=bidi_id,
    )
    assert (deal["contact_id"], deal["company_id"], deal["owner_id"]) == (
        contact.id,
        company["id"],
        bidi_id,
    )

    r = await client.post(
        f"{API}/pipelines",
        json={"name": "Hiring", "stages": [{"name": "Applied"}, {"name": "Hired", "kind": "won"}]},
        headers=workspace.headers,
    )
    hiring = r.json()
    stages = await _stages(client, workspace)
    # the stage is inferred with its pipeline; a pipeline alone starts at its first open stage
    d = await _deal(client, workspace.headers, stage_id=hiring["stages"][1]["id"])
    assert d["pipeline_id"] == hiring["id"] and d["status"] == "won"
    d = await _deal(client, workspace.headers, pipeline_id=hiring["id"])
    assert d["stage_id"] == hiring["stages"][0]["id"]
    # a stage of another pipeline is refused
    r = await client.post(
        f"{API}/deals",
        json={"title": "x", "pipeline_id": hiring["id"], "stage_id": stages["Cold"]["id"]},
        headers=workspace.headers,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "stage_id"
    r = await _move(client, workspace.headers, deal["id"], stage_id=hiring["stages"][0]["id"])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "stage_id"
    # ... unless the move names the other pipeline
    r = await _move(
        client,
        workspace.headers,
        deal["id"],
        stage_id=hiring["stages"][0]["id"],
        pipeline_id=hiring["id"],
    )
    assert r.status_code == 200 and r.json()["pipeline_id"] == hiring["id"]


async def test_stage_move_history_and_closed_at(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    stages = await _stages(client, workspace)
    deal = await _deal(client, workspace.headers, value="500")
    created_changed_at = deal["stage_changed_at"]

    r = await _move(client, workspace.headers, deal["id"], stage_id=stages["Replied"]["id"])
    assert r.status_code == 200, r.text
    moved = r.json()
    assert moved["stage_id"] == stages["Replied"]["id"] and moved["closed_at"] is None
    assert moved["stage_changed_at"] > created_changed_at

    # moving to the current stage is a no-op: no history row, no event
    r = await _move(client, workspace.headers, deal["id"], stage_id=stages["Replied"]["id"])
    assert r.status_code == 200 and r.json()["stage_changed_at"] == moved["stage_changed_at"]

    r = await _move(client, workspace.headers, deal["id"], stage_id=stages["Won"]["id"])
    won = r.json()
    assert won["status"] == "won" and won["closed_at"] is not None
    r = await _move(client, workspace.headers, deal["id"], stage_id=stages["Meeting"]["id"])
    assert r.json()["status"] == "open" and r.json()["closed_at"] is None
    r = await _move(client, workspace.headers, deal["id"], stage_id=stages["Lost"]["id"])
    assert r.json()["status"] == "lost" and r.json()["closed_at"] is not None

    r = await client.get(f"{API}/deals/{deal['id']}/history", headers=workspace.headers)
    history = r.json()["items"]
    assert [(h["from_stage_name"], h["to_stage_name"]) for h in history] == [
        (None, "Cold"),
        ("Cold", "Replied"),
        ("Replied", "Won"),
        ("Won", "Meeting"),
        ("Meeting", "Lost"),
    ]
    assert all(h["changed_by"] == workspace.owner_id for h in history)
    r = await client.get(
        f"{API}/deals/{deal['id']}/history", params={"limit": 2}, headers=workspace.headers
    )
    assert len(r.json()["items"]) == 2 and r.json()["next_cursor"]

    r = await client.get(
        f"{API}/events",
        params={"type": "deal.stage_changed", "entity_id": deal["id"]},
        headers=workspace.headers,
    )
    events = r.json()["items"]
    assert len(events) == 4
    last = events[0]
    assert last["before"]["stage_id"] == stages["Meeting"]["id"]
    assert last["after"]["stage_id"] == stages["Lost"]["id"]
    assert last["before"]["closed_at"] is None and last["after"]["closed_at"] is not None


async def test_update_and_delete(client: httpx.AsyncClient, workspace: Workspace) -> None:
    deal = await _deal(client, workspace.headers, value="10")
    r = await client.patch(
        f"{API}/deals/{deal['id']}",
        json={"title": "Renamed", "value": "2500.75", "currency": "jpy", "owner_id": None},
        headers=workspace.headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["title"], body["value"], body["currency"], body["owner_id"]) == (
        "Renamed",
        "2500.75",
        "JPY",
        None,
    )
    assert body["stage_id"] == deal["stage_id"]
    r = await client.get(
        f"{API}/events", params={"type": "deal.updated"}, headers=workspace.headers
    )
    (event,) = r.json()["items"]
    assert event["before"]["value"] == "10.00" and event["after"]["value"] == "2500.75"
    assert event["before"]["title"] == "Deal" and event["after"]["title"] == "Renamed"

    # a stage cannot be changed through the plain PATCH
    r = await client.patch(
        f"{API}/deals/{deal['id']}", json={"stage_id": 1}, headers=workspace.headers
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "stage_id"

    assert (
        await client.delete(f"{API}/deals/{deal['id']}", headers=workspace.headers)
    ).status_code == 204
    assert (
        await client.get(f"{API}/deals/{deal['id']}", headers=workspace.headers)
    ).status_code == 404
    assert (
        await client.get(f"{API}/deals/{deal['id']}/history", headers=workspace.headers)
    ).status_code == 404
    r = await client.get(
        f"{API}/events", params={"type": "deal.deleted"}, headers=workspace.headers
    )
    (event,) = r.json()["items"]
    assert event["before"]["title"] == "Renamed" and event["after"] is None


async def test_filters(client: httpx.AsyncClient, workspace: Workspace) -> None:
    stages = await _stages(client, workspace)
    bidi_id, bidi = await workspace.member(Role.BIDI)
    contact = await Contact.create(tenant_id=workspace.tenant_id, name="C")
    company = (
        await client.post(f"{API}/companies", json={"name": "Co"}, headers=workspace.headers)
    ).json()
    a = await _deal(client, workspace.headers, title="a", contact_id=contact.id)
    b = await _deal(client, bidi, title="b", company_id=company["id"])
    c = await _deal(client, workspace.headers, title="c", stage_id=stages["Won"]["id"])
    d = await _deal(client, workspace.headers, title="d", stage_id=stages["Lost"]["id"])
    e = await _deal(client, workspace.headers, title="e", stage_id=stages["Meeting"]["id"])

    async def titles(**params: Any) -> list[str]:
        r = await client.get(f"{API}/deals", params=params, headers=workspace.headers)
        assert r.status_code == 200, r.text
        return [x["title"] for x in r.json()["items"]]

    assert await titles() == ["a", "b", "c", "d", "e"]
    assert await titles(status="open") == ["a", "b", "e"]
    assert await titles(status="won") == ["c"]
    assert await titles(status="lost") == ["d"]
    assert await titles(owner_id=bidi_id) == ["b"]
    assert await titles(contact_id=contact.id) == ["a"]
    assert await titles(company_id=company["id"]) == ["b"]
    assert await titles(stage_id=stages["Meeting"]["id"]) == ["e"]
    assert await titles(
        pipeline_id=a["pipeline_id"], status="open", owner_id=workspace.owner_id
    ) == [
        "a",
        "e",
    ]
    assert await titles(pipeline_id=999_999) == []
    for params, field in (
        ({"status": "maybe"}, "status"),
        ({"owner_id": "me"}, "owner_id"),
        ({"stage_id": 0}, "stage_id"),
        ({"sort": "title"}, "sort"),
        ({"cursor": "garbage!"}, "cursor"),
    ):
        r = await client.get(f"{API}/deals", params=params, headers=workspace.headers)
        assert r.status_code == 422, params
        assert r.json()["errors"][0]["field"] == field
    assert {b["id"], c["id"], d["id"], e["id"]}  # all created


async def test_sorting_by_value_is_numeric_across_pages(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    values = ["9", "100", "25.5", "1000000", "0.01", "9", "100.10", "2"]
    for i, value in enumerate(values):
        await _deal(client, workspace.headers, title=f"d{i}", value=value)

    async def walk(sort: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        params: dict[str, Any] = {"sort": sort, "limit": 3}
        while True:
            r = await client.get(f"{API}/deals", params=params, headers=workspace.headers)
            assert r.status_code == 200, r.text
            out += [(x["value"], x["title"]) for x in r.json()["items"]]
            if not r.json()["next_cursor"]:
                return out
            params["cursor"] = r.json()["next_cursor"]

    ascending = await walk("value")
    assert [Decimal(v) for v, _ in ascending] == sorted(Decimal(v) for v in values)
    assert [t for v, t in ascending if v == "9.00"] == ["d0", "d5"]  # ties by id
    descending = await walk("-value")
    assert descending == list(reversed(ascending))
    created = await walk("-created_at")
    assert [t for _, t in created] == [f"d{i}" for i in reversed(range(len(values)))]
    # touch one deal: it becomes the most recently updated
    first = (await client.get(f"{API}/deals", headers=workspace.headers)).json()["items"][0]
    await client.patch(
        f"{API}/deals/{first['id']}", json={"title": "touched"}, headers=workspace.headers
    )
    updated = await walk("-updated_at")
    assert updated[0][1] == "touched" and len(updated) == len(values)


async def test_roles(client: httpx.AsyncClient, workspace: Workspace) -> None:
    stages = await _stages(client, workspace)
    _, viewer = await workspace.member(Role.VIEWER)
    bidi_id, bidi = await workspace.member(Role.BIDI)
    other_id, other = await workspace.member(Role.BIDI)
    _, admin = await workspace.member(Role.ADMIN)

    r = await client.post(f"{API}/deals", json={"title": "v"}, headers=viewer)
    assert r.status_code == 403
    mine = await _deal(client, bidi, title="mine")
    assert mine["owner_id"] == bidi_id
    deal_url = f"{API}/deals/{mine['id']}"

    for headers in (viewer, other):
        assert (await client.get(deal_url, headers=headers)).status_code == 200
        r = await client.patch(deal_url, json={"title": "hijack"}, headers=headers)
        assert r.status_code == 403
        r = await _move(client, headers, mine["id"], stage_id=stages["Replied"]["id"])
        assert r.status_code == 403
        assert (await client.delete(deal_url, headers=headers)).status_code == 403
    assert (await client.get(deal_url, headers=bidi)).json()["title"] == "mine"

    # the owner bidi edits and moves their own deal
    r = await client.patch(deal_url, json={"value": "42"}, headers=bidi)
    assert r.status_code == 200 and r.json()["value"] == "42.00"
    r = await _move(client, bidi, mine["id"], stage_id=stages["Replied"]["id"])
    assert r.status_code == 200
    # ... but may not hand it to a colleague, while an admin may
    r = await client.patch(deal_url, json={"owner_id": other_id}, headers=bidi)
    assert r.status_code == 403 and r.json()["errors"][0]["field"] == "owner_id"
    r = await client.post(f"{API}/deals", json={"title": "x", "owner_id": other_id}, headers=bidi)
    assert r.status_code == 403 and r.json()["errors"][0]["field"] == "owner_id"
    r = await client.patch(deal_url, json={"owner_id": other_id}, headers=admin)
    assert r.status_code == 200
    # now the other bidi owns it
    r = await client.patch(deal_url, json={"title": "theirs"}, headers=other)
    assert r.status_code == 200
    assert (await client.patch(deal_url, json={"title": "no"}, headers=bidi)).status_code == 403
    # unowned deals are open to every bidi
    r = await client.patch(deal_url, json={"owner_id": None}, headers=admin)
    assert (await client.patch(deal_url, json={"title": "shared"}, headers=bidi)).status_code == 200
    assert (await client.delete(deal_url, headers=admin)).status_code == 204


async def test_bad_input_names_the_field(
    client: httpx.AsyncClient, workspace: Workspace, other_workspace: Workspace
) -> None:
    foreign_stage = (await _stages(client, other_workspace))["Cold"]["id"]
    foreign_contact = await Contact.create(tenant_id=other_workspace.tenant_id, name="X")
    r = await client.get(f"{API}/pipelines", headers=other_workspace.headers)
    foreign_pipeline = r.json()["items"][0]["id"]
    cases: list[tuple[dict, str]] = [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": ["x"]}, "title"),
        ({"title": "x", "value": "abc"}, "value"),
        ({"title": "x", "value": True}, "value"),
        ({"title": "x", "value": "-1"}, "value"),
        ({"title": "x", "value": "1.234"}, "value"),
        ({"title": "x", "value": "1e20"}, "value"),
        ({"title": "x", "value": "NaN"}, "value"),
        ({"title": "x", "currency": "US"}, "currency"),
        ({"title": "x", "currency": "ZZZ"}, "currency"),
        ({"title": "x", "currency": "12$"}, "currency"),
        ({"title": "x", "stage_id": foreign_stage}, "stage_id"),
        ({"title": "x", "stage_id": 999_999}, "stage_id"),
        ({"title": "x", "pipeline_id": foreign_pipeline}, "pipeline_id"),
        ({"title": "x", "contact_id": foreign_contact.id}, "contact_id"),
        ({"title": "x", "contact_id": 999_999}, "contact_id"),
        ({"title": "x", "company_id": 999_999}, "company_id"),
        ({"title": "x", "owner_id": other_workspace.owner_id}, "owner_id"),
        ({"title": "x", "owner_id": 2**40}, "owner_id"),
        ({"title": "x", "amount": 5}, "amount"),
    ]
    for body, field in cases:
        r = await client.post(f"{API}/deals", json=body, headers=workspace.headers)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"][0]["field"] == field, (body, r.json())
    # a foreign id and a missing one get the same answer apart from the id itself
    a = await client.post(
        f"{API}/deals",
        json={"title": "x", "contact_id": foreign_contact.id},
        headers=workspace.headers,
    )
    b = await client.post(
        f"{API}/deals", json={"title": "x", "contact_id": 999_999}, headers=workspace.headers
    )
    assert a.json()["errors"][0]["reason"].replace(str(foreign_contact.id), "N") == b.json()[
        "errors"
    ][0]["reason"].replace("999999", "N")

    deal = await _deal(client, workspace.headers)
    for body, field in (
        ({"title": None}, "title"),
        ({"value": None}, "value"),
        ({"currency": "EURO"}, "currency"),
        ({"contact_id": foreign_contact.id}, "contact_id"),
    ):
        r = await client.patch(f"{API}/deals/{deal['id']}", json=body, headers=workspace.headers)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"][0]["field"] == field
    for body, field in (
        ({}, "stage_id"),
        ({"stage_id": "next"}, "stage_id"),
        ({"stage_id": foreign_stage}, "stage_id"),
        ({"stage_id": foreign_stage, "pipeline_id": foreign_pipeline}, "pipeline_id"),
    ):
        r = await _move(client, workspace.headers, deal["id"], **body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"][0]["field"] == field
    r = await client.get(f"{API}/deals/x1", headers=workspace.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "deal_id"
    r = await client.post(
        f"{API}/deals",
        content=b'{"title": "x",',
        headers={**workspace.headers, "content-type": "application/json"},
    )
    assert r.status_code == 422
    # none of that wrote anything
    r = await client.get(f"{API}/deals", headers=workspace.headers)
    (only,) = r.json()["items"]
    assert only == (await client.get(f"{API}/deals/{deal['id']}", headers=workspace.headers)).json()
    assert only["title"] == "Deal" and only["value"] == "0.00"
    assert dt.datetime.fromisoformat(only["updated_at"]).tzinfo is not None
