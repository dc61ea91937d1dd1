"""Tenant isolation: every route of the app, called by one tenant with another tenant's ids.

The routes are discovered from the app itself, so a new endpoint with an id in its path is
covered without touching this file, and the test fails when it meets a path parameter it cannot
fill. For every such route it checks that:

- with the other tenant's ids in the path (every mix of own and foreign ids), the answer is a
  404 identical, up to the id itself, to the answer for an id that does not exist;
- with the caller's own ids in the path and another tenant's id in a body or query reference
  (``contact_id``, ``stage_ids``, ...), the answer is the same as for an id that does not exist;
- nothing at all changed in the database.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from tortoise import Tortoise, connections

from crm.app import create_app
from crm.messaging import ChannelKind, ConnectionInfo, InboundMessage
from crm.models import Contact, Role
from crm.services.inbox.inbound_messages import receive_message
from crm.settings import Settings
from tests.support.workspace import Workspace

API = "/api/v1"
MISSING_ID = 999_999_999
PATH_PARAM = re.compile(r"\{(\w+)\}")
# Fields that hold the id of a record of a kind the seed knows under another name.
ALIASES = {
    "owner_id": "user_id",
    "actor_user_id": "user_id",
    "author_id": "user_id",
    "stage_ids": "stage_id",
    "assignee_id": "user_id",
    "reply_to_message_id": "message_id",
}
# Request bodies for routes whose schema-generated sample is refused before the id is looked up
# (a pattern, a cross-field rule); keyed by (method, path).
BODIES: dict[tuple[str, str], Any] = {
    ("POST", f"{API}/conversations/{{conversation_id}}/messages"): {"text": "leak?"},
    ("POST", f"{API}/conversations/{{conversation_id}}/snooze"): {
        "until": (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    },
    ("PUT", f"{API}/messages/{{message_id}}/intent"): {"intent": "question"},
    ("PUT", f"{API}/conversations/{{conversation_id}}/ai"): {"mode": "draft"},
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    operation: dict[str, Any] = field(hash=False, compare=False)

    @property
    def params(self) -> list[str]:
        return PATH_PARAM.findall(self.path)


async def _seed(client: httpx.AsyncClient, ws: Workspace) -> dict[str, int]:
    """One record of each kind, chosen so that a request that leaked across would succeed."""
    h = ws.headers

    async def post(path: str, body: dict[str, Any]) -> Any:
        r = await client.post(f"{API}{path}", json=body, headers=h)
        assert r.status_code in (200, 201), (path, r.text)
        return r.json()

    contact = await Contact.create(
        tenant_id=ws.tenant_id, name="Isolated", email=f"iso{ws.tenant_id}@example.com"
    )
    company = await post("/companies", {"name": "Isolated Inc"})
    # Not the default pipeline and without deals, so deleting it would work if reachable.
    pipeline = await post(
        "/pipelines",
        {"name": "Isolated", "stages": [{"name": "One"}, {"name": "Two"}, {"name": "Three"}]},
    )
    deal = await post(
        "/deals", {"title": "Isolated", "contact_id": contact.id, "company_id": company["id"]}
    )
    note = await post("/notes", {"body": "isolated", "deal_id": deal["id"]})
    tags = await post(f"/contacts/{contact.id}/tags", {"tags": ["isolated"]})
    member_id, _ = await ws.member(Role.BIDI)
    api_key = await post("/api-keys", {"name": "isolated"})
    channel = await post("/channels", {"kind": "whatsapp", "sandbox": True})
    lead = InboundMessage(
        external_id=f"wamid.iso{ws.tenant_id}",
        sender_id=f"49151000{ws.tenant_id:04d}",
        sent_at=dt.datetime.now(dt.UTC),
        text="isolated",
    )
    connection = ConnectionInfo(
        id=channel["id"],
        tenant_id=ws.tenant_id,
        kind=ChannelKind.WHATSAPP,
        settings={},
        credentials={},
    )
    received = await receive_message(connection, lead)
    doc = (
        await client.post(f"{API}/knowledge", json={"title": "FAQ", "text": "Prices"}, headers=h)
    ).json()
    draft = (
        await client.post(f"{API}/conversations/{received.conversation_id}/drafts", headers=h)
    ).json()
    agent = await post("/agents", {"name": "Isolated SDR", "kind": "sdr"})
    run = (
        await client.post(
            f"{API}/agents/{agent['id']}/execute",
            json={"conversation_id": received.conversation_id},
            headers=h,
        )
    ).json()
    return {
        "agent_id": agent["id"],
        "run_id": run["id"],
        "doc_id": doc["id"],
        "draft_id": draft["id"],
        "contact_id": contact.id,
        "company_id": company["id"],
        "pipeline_id": pipeline["id"],
        "stage_id": pipeline["stages"][1]["id"],
        "deal_id": deal["id"],
        "note_id": note["id"],
        "tag_id": tags["items"][0]["id"],
        "user_id": member_id,
        "api_key_id": api_key["id"],
        "connection_id": channel["id"],
        "conversation_id": received.conversation_id,
        "message_id": received.message.id,
    }


def _routes(app: FastAPI) -> list[Route]:
    """Every API route with its OpenAPI operation (empty when hidden from the schema)."""
    try:
        from fastapi.routing import iter_route_contexts

        contexts: Iterator[Any] = iter_route_contexts(app.routes)
    except ImportError:  # older FastAPI flattens included routers into app.routes
        contexts = iter(app.routes)
    paths = app.openapi()["paths"]
    routes = []
    for ctx in contexts:
        path = getattr(ctx, "path", "")
        if not path.startswith(API):
            continue
        for method in sorted(set(getattr(ctx, "methods", None) or ()) - {"HEAD", "OPTIONS"}):
            operation = paths.get(path, {}).get(method.lower(), {})
            routes.append(Route(method, path, operation))
    return routes


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _sample(schema: dict[str, Any], spec: dict[str, Any]) -> Any:
    """A value that passes the schema's type checks (not necessarily its meaning)."""
    schema = _resolve(schema, spec)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [_resolve(s, spec) for s in schema[key]]
            return _sample(next(s for s in options if s.get("type") != "null"), spec)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "string":
        if schema.get("format") == "date-time":
            return "2024-01-01T00:00:00Z"
        return "x" * max(1, schema.get("minLength", 1))
    if kind in ("integer", "number"):
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return False
    if kind == "array":
        return [_sample(schema.get("items", {}), spec)] * max(1, schema.get("minItems", 1))
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {name: _sample(props[name], spec) for name in schema.get("required", [])}
    return "x"


def _json_body_schema(route: Route, spec: dict[str, Any]) -> dict[str, Any] | None:
    content = route.operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    return _resolve(content["application/json"]["schema"], spec)


def _normalize(response: httpx.Response, ids: set[int]) -> tuple[int, Any]:
    """Status and body with the ids that differ between two calls blanked out."""
    pattern = re.compile(r"\b(" + "|".join(str(i) for i in sorted(ids, reverse=True)) + r")\b")

    def blank(value: Any) -> Any:
        if isinstance(value, str):
            return pattern.sub("<id>", value)
        if isinstance(value, list):
            return [blank(v) for v in value]
        if isinstance(value, dict):
            return {k: blank(v) for k, v in value.items()}
        return value

    try:
        body: Any = response.json()
    except json.JSONDecodeError:
        body = response.text
    return response.status_code, blank(body)


async def _state() -> dict[str, list[dict[str, Any]]]:
    """Every row of every table (API keys without their last-use time)."""
    out: dict[str, list[dict[str, Any]]] = {}
    through: set[str] = set()
    for model in Tortoise.apps["models"].values():
        rows = await model.all().order_by(model._meta.pk_attr).values()
        for row in rows:
            row.pop("last_used_at", None)
        out[model._meta.db_table] = rows
        for name in model._meta.m2m_fields:
            m2m = model._meta.fields_map[name]
            through.add(m2m.through)
    conn = connections.get("default")
    for table in sorted(through):
        _, rows = await conn.execute_query(f'SELECT * FROM "{table}"')
        out[table] = sorted((dict(r) for r in rows), key=lambda r: sorted(r.items()))
    return out


async def test_no_route_reaches_another_tenant(
    settings: Settings, workspace: Workspace, other_workspace: Workspace
) -> None:
    app = create_app(settings, manage_db=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as client:
        victim = await _seed(client, workspace)
        own = await _seed(client, other_workspace)
        caller = other_workspace.headers
        spec = app.openapi()
        routes = _routes(app)

        unknown = sorted(
            {f"{r.method} {r.path}: {{{p}}}" for r in routes for p in r.params if p not in own}
        )
        assert not unknown, (
            "path parameters this test cannot fill; add a record of that kind to _seed(): "
            f"{unknown}"
        )

        async def call(route: Route, ids: dict[str, int], body: Any, query: Any) -> httpx.Response:
            url = route.path.format(**ids)
            kwargs: dict[str, Any] = {"headers": caller, "params": query}
            if body is not None:
                kwargs["json"] = body
            return await client.request(route.method, url, **kwargs)

        before = await _state()
        exercised: set[tuple[str, str]] = set()
        checked = 0
        for route in routes:
            body_schema = _json_body_schema(route, spec)
            body = _sample(body_schema, spec) if body_schema else None
            body = BODIES.get((route.method, route.path), body)
            query_params = [p for p in route.operation.get("parameters", []) if p["in"] == "query"]
            query = {
                p["name"]: _sample(p.get("schema", {}), spec)
                for p in query_params
                if p.get("required")
            }

            # 1. Foreign ids in the path: every mix of own and foreign, at least one foreign.
            for picks in itertools.product((False, True), repeat=len(route.params)):
                if not any(picks):
                    continue
                foreign = {p for p, pick in zip(route.params, picks, strict=True) if pick}
                ids = {p: (victim[p] if p in foreign else own[p]) for p in route.params}
                missing = {p: (MISSING_ID if p in foreign else own[p]) for p in route.params}
                r = await call(route, ids, body, query)
                control = await call(route, missing, body, query)
                where = f"{route.method} {route.path} with foreign {sorted(foreign)}"
                assert control.status_code == 404, (
                    f"{where}: a missing id answered {control.status_code} {control.text}; "
                    "give this route a body it accepts in BODIES"
                )
                blanked = {victim[p] for p in foreign} | {MISSING_ID}
                assert _normalize(r, blanked) == _normalize(control, blanked), (
                    f"{where}: answered {r.status_code} {r.text}, a missing id {control.text}"
                )
                assert r.headers["content-type"] == "application/problem+json", where
                exercised.add((route.method, route.path))
                checked += 1

            # 2. Own ids in the path, a foreign id in one body or query reference.
            refs: list[tuple[str, str, bool]] = []  # (where, name, is a list)
            if body_schema is not None:
                for name, prop in body_schema.get("properties", {}).items():
                    if ALIASES.get(name, name) in own:
                        is_list = _resolve(prop, spec).get("type") == "array" or any(
                            _resolve(o, spec).get("type") == "array"
                            for o in _resolve(prop, spec).get("anyOf", [])
                        )
                        refs.append(("body", name, is_list))
            for p in query_params:
                if ALIASES.get(p["name"], p["name"]) in own:
                    refs.append(("query", p["name"], False))
            own_path = {p: own[p] for p in route.params}
            for where_kind, name, is_list in refs:
                kind = ALIASES.get(name, name)
                variants: list[tuple[Any, Any]] = []
                for value in (victim[kind], MISSING_ID):
                    ref: Any = [value] if is_list else value
                    if where_kind == "body":
                        variants.append(({**(body or {}), name: ref}, query))
                    else:
                        variants.append((body, {**query, name: ref}))
                r = await call(route, own_path, *variants[0])
                control = await call(route, own_path, *variants[1])
                where = f"{route.method} {route.path} with a foreign {where_kind} {name}"
                blanked = {victim[kind], MISSING_ID}
                assert _normalize(r, blanked) == _normalize(control, blanked), (
                    f"{where}: answered {r.status_code} {r.text}, a missing id {control.text}"
                )
                if route.method == "GET" and r.status_code == 200:
                    assert r.json().get("items") == [], f"{where}: listed {r.text}"
                else:
                    assert r.status_code in (404, 422), f"{where}: {r.status_code} {r.text}"
                checked += 1

        after = await _state()

    id_routes = {(r.method, r.path) for r in routes if r.params}
    assert exercised == id_routes, f"not exercised: {sorted(id_routes - exercised)}"
    assert len(id_routes) >= 25  # the routes of this issue, at least
    assert checked > len(id_routes)
    for table in before:
        assert after[table] == before[table], f"{table} changed"


async def test_lists_show_only_the_own_tenant(
    client: httpx.AsyncClient, workspace: Workspace, other_workspace: Workspace
) -> None:
    victim = await _seed(client, workspace)
    own = await _seed(client, other_workspace)
    for path, key in (
        ("/companies", "company_id"),
        ("/deals", "deal_id"),
        ("/notes", "note_id"),
        ("/tags", "tag_id"),
        ("/pipelines", "pipeline_id"),
    ):
        r = await client.get(f"{API}{path}", headers=other_workspace.headers)
        ids = [item["id"] for item in r.json()["items"]]
        assert own[key] in ids and victim[key] not in ids, path
    r = await client.get(f"{API}/deals/{own['deal_id']}/history", headers=other_workspace.headers)
    assert r.status_code == 200 and len(r.json()["items"]) == 1
