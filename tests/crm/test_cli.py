"""The ``crm`` command, run as a separate process against its own SQLite file."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env["CRM_DATABASE_URL"] = f"sqlite://{tmp_path / 'cli.sqlite3'}"
    # This checkout's code, not whichever one the environment has installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run ``crm ARGS`` in ``tmp_path`` with a fresh database; returns the finished process."""
    env = _env(tmp_path)

    def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "crm.cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done

    return _run


def test_tenant_key_import_export_round_trip(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("migrate")
    created = json.loads(
        run(
            "tenants", "create", "Acme", "--owner-telegram-id", "42", "--region", "RU", "--json"
        ).stdout
    )
    assert set(created) == {"tenant_id", "api_key"}
    assert created["api_key"].startswith("crm_")
    tenant = str(created["tenant_id"])

    key = json.loads(
        run("apikeys", "create", "--tenant", tenant, "--scopes", "read", "--json").stdout
    )
    assert key["scopes"] == ["read"]
    assert "revoked" in run("apikeys", "revoke", str(key["api_key_id"]), "--tenant", tenant).stdout

    csv_path = tmp_path / "leads.csv"
    csv_path.write_text(
        "Имя;Фамилия;Телефон;Почта\nИван;Петров;8 912 345-67-89;ivan@example.com\n"
        "Анна;;;not-an-email\n"
        "Ольга;;12;olga@example.com\n",
        encoding="cp1251",
    )
    imported = run("import", "contacts", str(csv_path), "--tenant", tenant)
    result = json.loads(imported.stdout)
    assert result["created"] == 2
    assert result["errors"] == [
        {"row": 3, "field": "email", "reason": result["errors"][0]["reason"], "level": "error"},
        # A bad phone beside a good email: imported without the phone, said as a warning.
        {"row": 4, "field": "phone", "reason": result["errors"][1]["reason"], "level": "warning"},
    ]
    assert "imported" in imported.stderr  # progress is shown while importing

    out = tmp_path / "export.csv"
    run("export", "contacts", "--tenant", tenant, "-o", str(out))
    exported = out.read_text(encoding="utf-8-sig")
    assert "Иван Петров" in exported and "+79123456789" in exported


def test_errors_are_clear_and_exit_non_zero(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("migrate")
    missing = run("apikeys", "revoke", "5", "--tenant", "1", check=False)
    assert missing.returncode != 0 and "tenant 1 does not exist" in missing.stderr
    no_file = run("import", "contacts", str(tmp_path / "nope.csv"), "--tenant", "1", check=False)
    assert no_file.returncode != 0 and "is not a file" in no_file.stderr
    worker = run("worker", check=False)
    assert worker.returncode != 0 and "CRM_REDIS_URL" in worker.stderr


def test_channels_add_prints_the_connection_and_its_webhook_url(run) -> None:  # type: ignore[no-untyped-def]
    run("migrate")
    created = run("tenants", "create", "Acme", "--json")
    tenant = str(json.loads(created.stdout)["tenant_id"])
    assert "sandbox whatsapp connection" in created.stderr  # sandbox mode: ready to try
    added = json.loads(
        run(
            "channels",
            "add",
            "whatsapp",
            "--tenant",
            tenant,
            "--phone-id",
            "106540352242922",
            "--token",
            "EAAG-secret-token",
            "--app-secret",
            "app-secret-1",
            "--verify-token",
            "verify-1",
            "--json",
        ).stdout
    )
    assert set(added) == {"connection_id", "webhook_url"}
    assert added["webhook_url"].endswith(f"/webhooks/whatsapp/{added['connection_id']}")
    again = run(
        "channels",
        "add",
        "whatsapp",
        "--tenant",
        tenant,
        "--phone-id",
        "106540352242922",
        "--token",
        "x",
        "--app-secret",
        "y",
        "--verify-token",
        "z",
        check=False,
    )
    assert again.returncode == 2 and "phone_id" in again.stderr
    missing = run(
        "channels", "add", "whatsapp", "--tenant", tenant, "--phone-id", "1065403522", check=False
    )
    assert missing.returncode == 2 and "token" in missing.stderr
    sandbox = json.loads(
        run("channels", "add", "telegram", "--tenant", tenant, "--sandbox", "--json").stdout
    )
    assert sandbox["webhook_url"].endswith(f"/webhooks/telegram/{sandbox['connection_id']}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_up_port_moves_the_public_url_and_sandbox_leads_arrive(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("migrate")
    created = json.loads(run("tenants", "create", "Acme", "--json").stdout)
    port = _free_port()
    up = subprocess.Popen(
        [sys.executable, "-m", "crm.cli", "up", "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            deadline = time.monotonic() + 90
            while True:
                assert up.poll() is None, up.communicate()[1]
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "crm up did not start"
                time.sleep(0.2)
            # Webhooks, the operator bot and the page all use the port given on the command line.
            hooks = [c["webhook_url"] for c in http.get("/sandbox/whatsapp/connections").json()]
            assert hooks and all(h.startswith(f"{base}/webhooks/") for h in hooks), hooks
            operator = http.get("/sandbox/telegram/state", params={"connection_id": "operator"})
            assert operator.json()["webhook"]["url"].startswith(f"{base}/"), operator.text

            (whatsapp,) = [
                c
                for c in http.get(
                    "/api/v1/channels", headers={"Authorization": f"Bearer {created['api_key']}"}
                ).json()["items"]
                if c["kind"] == "whatsapp"
            ]
            sent = http.post(
                "/sandbox/whatsapp/inbound",
                json={"connection_id": str(whatsapp["id"]), "from": "4915112345678", "text": "hi"},
            )
            assert sent.status_code == 200, sent.text
            deadline = time.monotonic() + 30
            while True:  # the lead's message reaches the inbox instead of port 8000
                inbox = http.get(
                    "/api/v1/conversations",
                    headers={"Authorization": f"Bearer {created['api_key']}"},
                ).json()
                if inbox["items"]:
                    break
                assert time.monotonic() < deadline, "the lead's message never arrived"
                time.sleep(0.2)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
