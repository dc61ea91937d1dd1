"""Settings of the CRM service, read from the environment (prefix ``CRM_``) and ``.env``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Development-only secret: good enough on a laptop, refused in production.
DEFAULT_SECRET_KEY = "dev-insecure-secret-key-change-me"


class Environment(StrEnum):
    """Where the service runs: development allows default secrets, production refuses them."""

    DEVELOPMENT = "development"
    PRODUCTION = "production"


class SandboxMode(StrEnum):
    """Whether the built-in messenger emulators run: ``auto`` means outside production."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


class InsecureSettingsError(RuntimeError):
    """Raised when production mode is started with development defaults."""


class Settings(BaseSettings):
    """Every knob of the service; only the composition root (app.py, cli.py) builds one."""

    model_config = SettingsConfigDict(
        env_prefix="CRM_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    environment: Environment = Environment.DEVELOPMENT
    database_url: str = Field(
        default_factory=lambda: f"sqlite://{Path('data') / 'crm.sqlite3'}",
        description="tortoise URL: sqlite://path or postgres://user:pass@host:port/db",
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL for the task broker; unset means in-process"
    )
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    host: str = "127.0.0.1"
    port: int = 8000
    max_request_bytes: int = Field(
        default=20 * 1024 * 1024, description="largest request body accepted, in bytes"
    )
    default_region: str = Field(
        default="US", description="region for phone numbers written without a country code"
    )
    public_base_url: str | None = Field(
        default=None,
        description="the URL providers reach this service at; default http://host:port",
    )
    media_dir: Path = Field(
        default=Path("data") / "media", description="where message attachments are stored"
    )
    sandbox: SandboxMode = Field(
        default=SandboxMode.AUTO,
        description="serve the WhatsApp and Telegram emulators and give new tenants sandbox "
        "connections (auto: outside production)",
    )
    sandbox_state_dir: Path = Field(
        default=Path("data") / "sandbox",
        description="where `crm up` keeps the emulators' bots, chats and message ids, so a "
        "restart loses neither the operators' chats nor the lead's history",
    )
    ai_index_dir: Path = Field(
        default=Path("data") / "ai-index",
        description="where each workspace's FAISS index file is kept (rebuilt from the database)",
    )
    embedded_worker: bool = Field(
        default=True,
        description="with Redis, `crm up` runs tasks too; off leaves them to `crm worker`",
    )
    operator_bot_token: SecretStr | None = Field(
        default=None,
        description="the operator bot's token from @BotFather; unset in sandbox mode runs a "
        "sandbox operator bot on the Telegram emulator",
    )
    operator_bot_mode: Literal["webhook", "polling"] = Field(
        default="webhook",
        description="webhook (served at /webhooks/operator) or polling (development)",
    )
    operator_bot_paid_broadcast: bool = Field(
        default=False,
        description="send operator notifications with allow_paid_broadcast: up to 1000 msg/s "
        "instead of about 30, charged by Telegram in Stars (for very busy installations)",
    )
    # How often the outbox relay looks for new events. Short on purpose: a longer pause hands
    # events on in bursts that delay the webhooks processed meanwhile (bench_webhooks: stored
    # p95 at 200 msg/s was 31 ms at 0.2 s and 10 ms at 0.05 s).
    relay_interval_seconds: float = 0.05
    scheduler_interval_seconds: float = 1.0

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> Settings:
        if self.environment is Environment.PRODUCTION:
            if self.secret_key.get_secret_value() == DEFAULT_SECRET_KEY:
                raise InsecureSettingsError(
                    "CRM_SECRET_KEY: the development default cannot be used in production; "
                    "set a long random value"
                )
            if len(self.secret_key.get_secret_value()) < 32:
                raise InsecureSettingsError(
                    "CRM_SECRET_KEY: must be at least 32 characters in production"
                )
        return self

    @property
    def sandbox_enabled(self) -> bool:
        """True when the emulators run in this service."""
        if self.sandbox is SandboxMode.AUTO:
            return self.environment is not Environment.PRODUCTION
        return self.sandbox is SandboxMode.ON

    @property
    def base_url(self) -> str:
        """The public URL of this service, without a trailing slash."""
        return (self.public_base_url or f"http://{self.host}:{self.port}").rstrip("/")

    def secret_values(self) -> list[str]:
        """The values of every secret setting (for the log scrubber), unset ones left out."""
        values = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                values.append(value.get_secret_value())
        return values

    @property
    def uses_sqlite(self) -> bool:
        """True when the database is an embedded SQLite file."""
        return self.database_url.startswith("sqlite")
