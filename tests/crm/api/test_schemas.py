"""The shared input types: one rule for text and integers on every router, on both databases.

A control character in any text (body or query) is a 422 naming the field, never a 500 on
PostgreSQL nor a NUL stored on SQLite; an integer beyond its column's range is a 422 naming the
field, never a database overflow.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from crm.models import AiSettings, Company, Contact, KnowledgeDoc, Tag
from tests.support.workspace import Workspace

API = "/api/v1"
INT_OVERFLOW = 2**31  # one past PostgreSQL's INT
BIG_OVERFLOW = 2**63  # one past BIGINT and SQLite's integers


def _field_of(reply: httpx.Response) -> str:
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    return str(reply.json()["errors"][0]["field"])


async def _contact(client: httpx.AsyncClient, ws: Workspace) -> int:
    reply = await client.post(f"{API}/contacts", json={"name": "Ann"}, headers=ws.headers)
    assert reply.status_code == 201, reply.text
    return int(reply.json()["id"])


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/contacts", {"name": "Ann\u0000"}, "name"),
        ("/contacts", {"name": "Ann", "title": "CEO\x1b[31m"}, "title"),
        ("/contacts", {"name": "Ann", "custom_fields": {"k": ["v\u0000"]}}, "custom_fields"),
        ("/contacts", {"name": "Ann", "tags": ["vip\u0000"]}, "tags"),
        ("/companies", {"name": "Initech\u0000"}, "name"),
        ("/companies", {"name": "Initech", "custom_fields": {"k\u0000": 1}}, "custom_fields"),
        ("/tags", {"name": "vip\u0000"}, "name"),
        ("/knowledge", {"title": "Prices", "text": "100\u0000 euros"}, "text"),
        ("/agents", {"name": "Sam\u0000", "kind": "sdr"}, "name"),
    ],
)
async def test_a_control_character_in_a_body_is_a_422_naming_the_field(
    client: httpx.AsyncClient, workspace: Workspace, path: str, body: dict[str, Any], field: str
) -> None:
    reply = await client.post(f"{API}{path}", json=body, headers=workspace.headers)
    assert _field_of(reply) == field
    assert "control characters (U+" in reply.json()["errors"][0]["reason"]
    for model in (Contact, Company, Tag, KnowledgeDoc):
        assert await model.filter(tenant_id=workspace.tenant_id).count() == 0


async def test_a_control_character_in_a_query_or_a_patch_is_a_422_naming_it(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    contact_id = await _contact(client, workspace)
    for url, field in [
        (f"{API}/contacts?q=Ann%00", "q"),
        (f"{API}/contacts?tag=vip%00", "tag"),
        (f"{API}/companies?q=%00", "q"),
        (f"{API}/tags?q=a%00", "q"),
        (f"{API}/messages/search?q=%00", "q"),
        (f"{API}/events?type=contact.%00", "type"),
    ]:
        assert _field_of(await client.get(url, headers=workspace.headers)) == field, url
    for body, field in [({"name": "B\u0000"}, "name"), ({"tags": ["a", "b\x00"]}, "tags")]:
        reply = await client.patch(
            f"{API}/contacts/{contact_id}", json=body, headers=workspace.headers
        )
        assert _field_of(reply) == field
    tagged = await client.post(
        f"{API}/contacts/{contact_id}/tags", json={"tags": ["x\u0000"]}, headers=workspace.headers
    )
    assert _field_of(tagged) == "tags"
    assert (await Contact.get(id=contact_id)).name == "Ann"


async def test_bidi_controls_are_removed_from_what_the_api_stores(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    # Not an error (a paste from an RTL editor carries them), but they would reverse the
    # text after them in notifications: the services store the text without them.
    reply = await client.post(
        f"{API}/contacts",
        json={"name": "Ann\u202eexe.pdf", "tags": ["\u2066vip\u2069"]},
        headers=workspace.headers,
    )
    assert reply.status_code == 201, reply.text
    assert (reply.json()["name"], reply.json()["tags"]) == ("Annexe.pdf", ["vip"])
    note = await client.post(
        f"{API}/notes",
        json={"body": "call \u202eback", "contact_id": reply.json()["id"]},
        headers=workspace.headers,
    )
    assert note.json()["body"] == "call back"


@pytest.mark.parametrize("too_big", [INT_OVERFLOW, BIG_OVERFLOW])
async def test_integers_beyond_their_column_are_a_422_naming_the_field(
    client: httpx.AsyncClient, workspace: Workspace, too_big: int
) -> None:
    contact_id = await _contact(client, workspace)
    h = workspace.headers
    cases: list[tuple[str, str, dict[str, Any] | None, str]] = [
        ("POST", "/contacts", {"name": "A", "company_id": too_big}, "company_id"),
        ("POST", "/contacts", {"name": "A", "owner_id": too_big}, "owner_id"),
        ("PATCH", f"/contacts/{contact_id}", {"company_id": too_big}, "company_id"),
        ("GET", f"/contacts?owner_id={too_big}", None, "owner_id"),
        ("GET", f"/contacts?company_id={too_big}", None, "company_id"),
        ("GET", f"/contacts?stage_id={too_big}", None, "stage_id"),
        ("GET", f"/contacts?limit={too_big}", None, "limit"),
        ("GET", f"/contacts/{too_big}", None, "contact_id"),
        ("POST", "/companies", {"name": "X", "owner_id": too_big}, "owner_id"),
        ("GET", f"/members/{too_big}", None, "user_id"),
        ("PATCH", f"/members/{too_big}", {"role": "viewer"}, "user_id"),
        ("DELETE", f"/members/{too_big}", None, "user_id"),
        ("DELETE", f"/api-keys/{too_big}", None, "api_key_id"),
        ("POST", "/api-keys", {"name": "k", "user_id": too_big}, "user_id"),
        ("GET", f"/agents/{too_big}", None, "agent_id"),
        ("GET", f"/conversations/{too_big}/ai", None, "conversation_id"),
        ("GET", f"/knowledge/{too_big}", None, "doc_id"),
        ("POST", "/pipelines/1/stages", {"name": "S", "position": too_big}, "position"),
    ]
    for method, path, body, field in cases:
        reply = await client.request(method, f"{API}{path}", json=body, headers=h)
        assert _field_of(reply) == field, (method, path, reply.text)


async def test_bigint_ids_take_64_bits_and_no_more(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    h = workspace.headers
    # A Telegram id past 2^31 is a real one (BIGINT column); past 2^63 it is bad input.
    ok = await client.post(f"{API}/contacts", json={"name": "A", "telegram_id": 2**40}, headers=h)
    assert ok.status_code == 201, ok.text
    for method, path, body, field in [
        ("POST", "/contacts", {"name": "B", "telegram_id": BIG_OVERFLOW}, "telegram_id"),
        ("POST", "/members", {"role": "viewer", "telegram_id": BIG_OVERFLOW}, "telegram_id"),
        ("GET", f"/agent-runs/{BIG_OVERFLOW}", None, "run_id"),
        ("GET", f"/drafts/{BIG_OVERFLOW}", None, "draft_id"),
        ("GET", f"/messages/{BIG_OVERFLOW}/intent", None, "message_id"),
        ("GET", f"/events?entity_id={BIG_OVERFLOW}", None, "entity_id"),
    ]:
        reply = await client.request(method, f"{API}{path}", json=body, headers=h)
        assert _field_of(reply) == field, (method, path, reply.text)
    # Message, draft and run ids are BIGINT: past 2^31 they are looked up, not refused.
    for path in ("/agent-runs", "/drafts"):
        reply = await client.get(f"{API}{path}/{INT_OVERFLOW}", headers=h)
        assert reply.status_code == 404, reply.text


@pytest.mark.parametrize(
    "field",
    [
        "timeout_seconds",
        "max_retries",
        "business_profile",
        "handoff_confidence",
        "quiet_start_hour",
        "quiet_end_hour",
        "default_ai_mode",
    ],
)
async def test_ai_settings_refuse_null_for_a_field_that_always_has_a_value(
    client: httpx.AsyncClient, workspace: Workspace, field: str
) -> None:
    reply = await client.patch(f"{API}/ai/settings", json={field: None}, headers=workspace.headers)
    assert _field_of(reply) == field
    assert reply.json()["errors"][0]["reason"] == (
        "must not be null (leave the field out to keep its value)"
    )
    shown = await client.get(f"{API}/ai/settings", headers=workspace.headers)
    assert shown.status_code == 200 and shown.json()[field] is not None


async def test_ai_settings_timeout_and_prices_are_bounded(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    h = workspace.headers | {"content-type": "application/json"}
    for raw in (
        '{"timeout_seconds": 5e-324}',
        '{"timeout_seconds": 0.5}',
        '{"timeout_seconds": 301}',
        '{"timeout_seconds": 1e400}',
    ):
        reply = await client.patch(f"{API}/ai/settings", content=raw, headers=h)
        assert _field_of(reply) == "timeout_seconds", raw
    reply = await client.patch(
        f"{API}/ai/settings", content='{"input_cost_per_million": 1e400}', headers=h
    )
    assert _field_of(reply) == "input_cost_per_million"
    assert await AiSettings.filter(tenant_id=workspace.tenant_id).count() == 0
    reply = await client.patch(
        f"{API}/ai/settings", content=json.dumps({"timeout_seconds": 1}), headers=h
    )
    assert reply.status_code == 200 and reply.json()["timeout_seconds"] == 1
