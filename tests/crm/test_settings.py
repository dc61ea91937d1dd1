"""Settings: embedded defaults, and production refusing development secrets."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from crm.settings import InsecureSettingsError, Settings


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CRM_DATABASE_URL", "CRM_REDIS_URL", "CRM_ENVIRONMENT", "CRM_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url.startswith("sqlite://data/")
    assert settings.redis_url is None
    assert settings.uses_sqlite


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_DATABASE_URL", "postgres://u@db:5432/crm")
    monkeypatch.setenv("CRM_REDIS_URL", "redis://cache:6379/0")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == "postgres://u@db:5432/crm"
    assert settings.redis_url == "redis://cache:6379/0"
    assert not settings.uses_sqlite


def test_production_refuses_the_default_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_SECRET_KEY", raising=False)
    with pytest.raises(InsecureSettingsError, match="CRM_SECRET_KEY"):
        Settings(environment="production", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(InsecureSettingsError, match="32 characters"):
        Settings(
            environment="production",
            secret_key=SecretStr("short"),  # type: ignore[call-arg]
            _env_file=None,
        )
    ok = Settings(
        environment="production",
        secret_key=SecretStr("x" * 40),  # type: ignore[call-arg]
        _env_file=None,
    )
    assert "x" * 40 not in repr(ok)
