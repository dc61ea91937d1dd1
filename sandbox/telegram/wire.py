"""The Bot API's wire basics: paths, the error answer, and typed call parameters."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

PREFIX = "/sandbox/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

MEDIA_FIELDS = ("photo", "document", "voice", "audio", "video", "sticker")


class TelegramApiError(Exception):
    """A Bot API error answer: HTTP status, description and optional parameters."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None):
        self.status = status
        self.description = description
        self.parameters = parameters
        super().__init__(f"{status}: {description}")

    def body(self) -> dict[str, Any]:
        """The JSON body Telegram answers with."""
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(description: str) -> TelegramApiError:
    """A 400 answer whose description starts with Telegram's ``Bad Request:``."""
    return TelegramApiError(400, f"Bad Request: {description}")


def unix_now() -> int:
    """Now, in epoch seconds (Telegram's dates)."""
    return int(time.time())


# Request parameters: aiogram posts forms whose nested objects are JSON strings.


class Params:
    """Typed access to a Bot API call's parameters, whatever the encoding."""

    def __init__(self, raw: dict[str, Any], files: dict[str, UploadedFile]):
        self.raw = raw
        self.files = files

    def has(self, name: str) -> bool:
        return self.raw.get(name) not in (None, "")

    def string(self, name: str, *, required: bool = False) -> str | None:
        value = self.raw.get(name)
        if value is None or value == "":
            if required:
                raise bad_request(f"{name} is empty")
            return None
        return value if isinstance(value, str) else json.dumps(value)

    def integer(self, name: str, *, required: bool = False) -> int | None:
        value = self.raw.get(name)
        if value is None or value == "":
            if required:
                raise bad_request(f"{name} is empty")
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def flag(self, name: str) -> bool:
        value = self.raw.get(name)
        if isinstance(value, str):
            return value.lower() in ("true", "1")
        return bool(value)

    def value(self, name: str) -> Any:
        value = self.raw.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {name} JSON object") from None
        return value


@dataclass(frozen=True)
class UploadedFile:
    """A multipart upload of a Bot API call."""

    data: bytes
    filename: str | None
    content_type: str | None
