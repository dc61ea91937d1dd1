"""The inbox API: listing and filtering, the team's actions, roles, and bad input."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from crm.models import Role
from tests.support.inbox import lead_message, telegram_connection, whatsapp_connection
from tests.support.workspace import Workspace

API = "/api/v1"


async def listing(client: httpx.AsyncClient, ws: Workspace, query: str = "") -> list[Any]:
    reply = await client.get(f"{API}/conversations{query}", headers=ws.headers)
    assert reply.status_code == 200, reply.text
    return list(reply.json()["items"])


async def test_filters_and_order_of_the_inbox(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    wa = await whatsapp_connection(workspace)
    tg = await telegram_connection(workspace)
    first = await lead_message(wa, "wamid.1", "4915100000001")
    second = await lead_message(tg, "77:1", "77")
    items = await listing(client, workspace)
    assert [c["id"] for c in items] == [second, first]  # newest activity first
    assert {c["channel"] for c in items} == {"whatsapp", "telegram"}
    assert [c["id"] for c in await listing(client, workspace, "?channel=telegram")] == [second]
    read = await client.post(f"{API}/conversations/{first}/read", headers=workspace.headers)
    assert read.json()["unread_count"] == 0
    assert [c["id"] for c in await listing(client, workspace, "?unread=true")] == [second]
    await client.post(f"{API}/conversations/{second}/close", headers=workspace.headers)
    assert [c["id"] for c in await listing(client, workspace, "?status=open")] == [first]
    assert [c["id"] for c in await listing(client, workspace, "?status=closed")] == [second]
    page = await client.get(f"{API}/conversations?limit=1", headers=workspace.headers)
    follow = await client.get(
        f"{API}/conversations?limit=1&cursor={page.json()['next_cursor']}",
        headers=workspace.headers,
    )
    assert [page.json()["items"][0]["id"], follow.json()["items"][0]["id"]] == [second, first]


async def test_snooze_hides_until_the_lead_writes_again(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    wa = await whatsapp_connection(workspace)
    conversation_id = await lead_message(wa, "wamid.s1", "4915100000002")
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)).isoformat()
    snoozed = await client.post(
        f"{API}/conversations/{conversation_id}/snooze",
        json={"until": until},
        headers=workspace.headers,
    )
    assert snoozed.json()["status"] == "snoozed"
    assert await listing(client, workspace, "?status=open") == []
    await lead_message(wa, "wamid.s2", "4915100000002", "are you there?")
    (woken,) = await listing(client, workspace, "?status=open")
    assert woken["id"] == conversation_id and woken["snoozed_until"] is None


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"until": "2020-01-01T00:00:00Z"}, "until", "must be in the future"),
        ({"until": "2030-01-01T09:00:00"}, "until", "needs a timezone"),
        ({"until": "tomorrow"}, "until", ""),
        ({"until": "2030-01-01T09:00:00Z", "extra": 1}, "extra", ""),
    ],
)
async def test_bad_snooze_names_the_field(
    client: httpx.AsyncClient, workspace: Workspace, body: dict[str, Any], field: str, reason: str
) -> None:
    wa = await whatsapp_connection(workspace)
    conversation_id = await lead_message(wa, "wamid.b", "4915100000003")
    reply = await client.post(
        f"{API}/conversations/{conversation_id}/snooze", json=body, headers=workspace.headers
    )
    assert reply.status_code == 422
    errors = reply.json()["errors"]
    assert errors[0]["field"] == field
    assert reason in errors[0]["reason"]


async def test_roles_on_the_inbox(client: httpx.AsyncClient, workspace: Workspace) -> None:
    wa = await whatsapp_connection(workspace)
    conversation_id = await lead_message(wa, "wamid.r", "4915100000004")
    viewer_id, viewer = await workspace.member(Role.VIEWER)
    bidi_id, bidi = await workspace.member(Role.BIDI)
    other_bidi_id, other_bidi = await workspace.member(Role.BIDI)
    url = f"{API}/conversations/{conversation_id}"
    assert (await client.get(url, headers=viewer)).status_code == 200
    send = await client.post(f"{url}/messages", json={"text": "hi"}, headers=viewer)
    assert send.status_code == 403
    # A bidi takes the unassigned conversation; a colleague may then neither take nor answer it.
    taken = await client.post(f"{url}/assign", json={"assignee_id": bidi_id}, headers=bidi)
    assert taken.status_code == 200 and taken.json()["assignee_id"] == bidi_id
    stolen = await client.post(
        f"{url}/assign", json={"assignee_id": other_bidi_id}, headers=other_bidi
    )
    assert stolen.status_code == 403
    blocked = await client.post(f"{url}/messages", json={"text": "mine"}, headers=other_bidi)
    assert blocked.status_code == 403
    # ... but may leave a private note, which the lead never gets.
    note = await client.post(f"{url}/notes", json={"text": "call her"}, headers=other_bidi)
    assert note.status_code == 201 and note.json()["direction"] == "note"
    to_viewer = await client.post(
        f"{url}/assign", json={"assignee_id": viewer_id}, headers=workspace.headers
    )
    assert to_viewer.status_code == 422
    assert to_viewer.json()["errors"][0]["field"] == "assignee_id"


async def test_sending_answers_202_and_refusals_409_with_a_code(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    wa = await whatsapp_connection(workspace)
    conversation_id = await lead_message(wa, "wamid.x", "4915100000005", "STOP")
    url = f"{API}/conversations/{conversation_id}/messages"
    refused = await client.post(url, json={"text": "sorry"}, headers=workspace.headers)
    assert refused.status_code == 409
    assert refused.json()["code"] == "opted_out"
    assert refused.json()["errors"][0]["field"] == "contact"
    await lead_message(wa, "wamid.y", "4915100000005", "what about the invoice?")
    queued = await client.post(url, json={"text": "here it is"}, headers=workspace.headers)
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    bad_kind = await client.post(url, json={"kind": "fax"}, headers=workspace.headers)
    assert bad_kind.status_code == 422 and bad_kind.json()["errors"][0]["field"] == "kind"
    no_media = await client.post(url, json={"kind": "image"}, headers=workspace.headers)
    assert no_media.status_code == 422
    assert no_media.json()["errors"][0]["field"] == "media_key"
    foreign_media = await client.post(
        url, json={"kind": "image", "media_key": "t999/x.png"}, headers=workspace.headers
    )
    assert foreign_media.status_code == 422
    history = await client.get(f"{url}?order=oldest", headers=workspace.headers)
    assert [m["direction"] for m in history.json()["items"]] == ["in", "in", "out"]


async def test_upload_then_send_an_attachment(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    wa = await whatsapp_connection(workspace)
    conversation_id = await lead_message(wa, "wamid.m", "4915100000006")
    uploaded = await client.post(
        f"{API}/media",
        files={"file": ("offer.pdf", b"%PDF-1.4 offer", "application/pdf")},
        headers=workspace.headers,
    )
    assert uploaded.status_code == 201, uploaded.text
    sent = await client.post(
        f"{API}/conversations/{conversation_id}/messages",
        json={"kind": "document", "media_key": uploaded.json()["media_key"], "text": "Offer"},
        headers=workspace.headers,
    )
    assert sent.status_code == 202, sent.text
    assert sent.json()["media"]["filename"] == "offer.pdf"
    empty = await client.post(
        f"{API}/media", files={"file": ("e.txt", b"", "text/plain")}, headers=workspace.headers
    )
    assert empty.status_code == 422 and empty.json()["errors"][0]["field"] == "file"


async def test_message_search(client: httpx.AsyncClient, workspace: Workspace) -> None:
    wa = await whatsapp_connection(workspace)
    await lead_message(wa, "wamid.q1", "4915100000007", "Need the Pro plan invoice")
    await lead_message(wa, "wamid.q2", "4915100000008", "hello")
    found = await client.get(f"{API}/messages/search?q=INVOICE", headers=workspace.headers)
    assert [m["text"] for m in found.json()["items"]] == ["Need the Pro plan invoice"]
    empty = await client.get(f"{API}/messages/search?q=", headers=workspace.headers)
    assert empty.status_code == 422 and empty.json()["errors"][0]["field"] == "q"


async def test_channel_credentials_are_never_returned(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    added = await client.post(
        f"{API}/channels",
        json={
            "kind": "whatsapp",
            "phone_id": "106540352242922",
            "token": "EAAG-very-secret",
            "app_secret": "app-secret-value",
            "verify_token": "verify-value",
        },
        headers=workspace.headers,
    )
    assert added.status_code == 201, added.text
    listed = await client.get(f"{API}/channels", headers=workspace.headers)
    for text in (added.text, listed.text):
        for secret in ("EAAG-very-secret", "app-secret-value", "verify-value"):
            assert secret not in text
    events = await client.get(f"{API}/events", headers=workspace.headers)
    assert "EAAG-very-secret" not in events.text
    missing = await client.post(
        f"{API}/channels",
        json={"kind": "whatsapp", "phone_id": "1065403522"},
        headers=workspace.headers,
    )
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "token"
    bad_token = await client.post(
        f"{API}/channels", json={"kind": "telegram", "token": "nope"}, headers=workspace.headers
    )
    assert bad_token.status_code == 422 and bad_token.json()["errors"][0]["field"] == "token"
    _, bidi = await workspace.member(Role.BIDI)
    denied = await client.post(
        f"{API}/channels", json={"kind": "telegram", "sandbox": True}, headers=bidi
    )
    assert denied.status_code == 403


async def test_a_media_key_cannot_climb_into_another_workspace(
    client: httpx.AsyncClient, workspace: Workspace, other_workspace: Workspace
) -> None:
    uploaded = await client.post(
        f"{API}/media",
        files={"file": ("secret.pdf", b"%PDF-1.4 Acme only", "application/pdf")},
        headers=workspace.headers,
    )
    key = uploaded.json()["media_key"]
    wa = await whatsapp_connection(other_workspace)
    conversation_id = await lead_message(wa, "wamid.t", "4915100000007")
    url = f"{API}/conversations/{conversation_id}/messages"
    month_and_name = key.split("/", 1)[1]
    for bad in (
        f"t{other_workspace.tenant_id}/../{key}",
        f"t{other_workspace.tenant_id}/../t{workspace.tenant_id}/{month_and_name}",
        f"t{other_workspace.tenant_id}/./../../{key}",
        f"/t{other_workspace.tenant_id}/{month_and_name}",
        f"t{other_workspace.tenant_id}/x\x00.pdf",
        f"t{other_workspace.tenant_id}\\..\\{key}",
    ):
        sent = await client.post(
            url, json={"kind": "document", "media_key": bad}, headers=other_workspace.headers
        )
        assert sent.status_code == 422, (bad, sent.text)
        assert sent.json()["errors"][0]["field"] == "media_key"
    history = await client.get(url, headers=other_workspace.headers)
    assert [m["direction"] for m in history.json()["items"]] == ["in"]
