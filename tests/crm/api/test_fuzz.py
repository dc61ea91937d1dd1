"""Schemathesis over every REST operation: whatever a client sends, the answer is never a 5xx.

The app is served by uvicorn on loopback in the test's event loop (where the database lives);
schemathesis runs in a worker thread and calls it over real HTTP with a valid API key of a
workspace holding a little of everything. Generation is derandomized, so a run is repeatable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from crm.app import create_app
from crm.settings import Settings
from tests.support.inbox import lead_message, telegram_connection, whatsapp_connection
from tests.support.servers import serve
from tests.support.workspace import Workspace

API = "/api/v1"
# Small enough for the whole run to stay around a minute on SQLite; derandomized, so the
# same examples every run. The assistant's operations embed text on every call: fewer there.
MAX_EXAMPLES = 6
SLOW_OPERATIONS = {"/ai/ask": 2, "/ai/classify": 2, "/drafts": 2}


async def _seed(http: httpx.AsyncClient, ws: Workspace) -> None:
    """A contact, company, deal, tag, note, knowledge doc, agent and two conversations."""

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = await http.post(f"{API}{path}", json=body, headers=ws.headers)
        assert reply.status_code in (200, 201), (path, reply.text)
        return dict(reply.json())

    company = await post("/companies", {"name": "Initech"})
    contact = await post(
        "/contacts", {"name": "Ann", "email": "ann@example.com", "company_id": company["id"]}
    )
    await post("/deals", {"title": "Pilot", "contact_id": contact["id"], "value": "100"})
    await post("/tags", {"name": "vip"})
    await post("/notes", {"body": "met at the fair", "contact_id": contact["id"]})
    await post("/knowledge", {"title": "Prices", "text": "The pilot costs 100 euros."})
    await post("/agents", {"name": "Sam", "kind": "sdr"})
    await lead_message(await whatsapp_connection(ws), "wamid.fuzz", "4915100000001", "Hello")
    await lead_message(await telegram_connection(ws), "77:1", "77", "How much is it?")


def _fuzz_operation(
    operation: Any, mode: GenerationMode, base_url: str, ws: Workspace, key_ids: set[int]
) -> None:
    """Up to MAX_EXAMPLES derandomized cases of one operation; raises on a 5xx."""
    revokes_key = operation.path.endswith("/api-keys/{api_key_id}")
    examples = min(
        [n for part, n in SLOW_OPERATIONS.items() if part in operation.path] or [MAX_EXAMPLES]
    )

    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis_settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    def run(case: Any) -> None:
        # Revoking the key the run uses would turn every later call into a 401.
        assume(not (revokes_key and (case.path_parameters or {}).get("api_key_id") in key_ids))
        case.call_and_validate(
            base_url=base_url, headers=ws.headers, checks=[not_a_server_error], timeout=60
        )

    run()


def _run_schemathesis(schema: Any, base_url: str, ws: Workspace, key_ids: set[int]) -> list[str]:
    """Every operation, positive and negative examples; the failures as readable lines."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith(API):
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz_operation(operation, mode, base_url, ws, key_ids)
            except Unsatisfiable:
                pass  # nothing to make invalid: an operation without parameters or body
            except Exception as exc:
                name = f"{operation.method.upper()} {operation.path} ({mode.value})"
                causes = [repr(e) for e in getattr(exc, "exceptions", ())]
                failures.append(f"{name}: {exc} {' '.join(causes)}")
    return failures


async def test_no_operation_answers_a_server_error(
    settings: Settings, workspace: Workspace
) -> None:
    app = create_app(settings, manage_db=False, run_backbone=False)
    async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        await _seed(http, workspace)
        # The embedding model loads once, here: not inside the first /ai/ask call's time limit.
        await app.state.assistant.warm_up()
        keys = await http.get(f"{API}/api-keys", headers=workspace.headers)
        key_ids = {k["id"] for k in keys.json()["items"]}
        schema = schemathesis.openapi.from_dict(app.openapi())
        started = dt.datetime.now(dt.UTC)
        failures = await asyncio.to_thread(_run_schemathesis, schema, base_url, workspace, key_ids)
        took = dt.datetime.now(dt.UTC) - started
    assert not failures, f"{len(failures)} operations answered 5xx ({took}):\n" + "\n\n".join(
        failures
    )
