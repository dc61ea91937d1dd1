"""The ``crm`` command, run as a separate process against its own SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run ``crm ARGS`` in ``tmp_path`` with a fresh database; returns the finished process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env["CRM_DATABASE_URL"] = f"sqlite://{tmp_path / 'cli.sqlite3'}"
    # The code under test, not whichever checkout the shared venv's editable install names.
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])

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
